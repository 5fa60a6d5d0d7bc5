"""Split the shipped aspirin trajectory in time: a training pool and an independent test trajectory.

Frames 10 fs apart are strongly correlated, so a random hold-out of the same trajectory flatters any
model. The pool is frames [0, 3900) (39 ps); the test set is frames [4000, 4900) (9 ps, 1 ps after the
pool ends), which no training or validation frame comes close to.

With a dimer file (960 frames: three 320-frame trajectories of H-bonded and stacked dimers) the same is
done per trajectory: frames [0, 260) of each go to dimer_pool.npz, frames [270, 320) of each (100 fs after
the pool's last frame) to dimer_test.npz.
usage: prepare_split.py SRC.npz OUT_DIR [DIMER.npz]
"""
import os
import sys

import numpy as np


def main() -> None:
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    d = np.load(src)
    for name, sl in (("aspirin_pool.npz", slice(0, 3900)), ("aspirin_test_md.npz", slice(4000, 4900))):
        _write(d, np.arange(d["energies"].shape[0])[sl], os.path.join(out, name))
    if len(sys.argv) > 3:
        dd = np.load(sys.argv[3])
        n = dd["energies"].shape[0]
        if n % 320:
            raise SystemExit(f"{sys.argv[3]}: {n} frames is not a whole number of 320-frame trajectories")
        starts = range(0, n, 320)
        _write(dd, np.concatenate([np.arange(s, s + 260) for s in starts]), os.path.join(out, "dimer_pool.npz"))
        _write(dd, np.concatenate([np.arange(s + 270, s + 320) for s in starts]), os.path.join(out, "dimer_test.npz"))


def _write(d, frames, path: str) -> None:
    nf = d["energies"].shape[0]
    part = {k: (d[k][frames] if d[k].ndim and d[k].shape[0] == nf else d[k]) for k in d.files}
    np.savez(path, **part)
    print(f"{os.path.basename(path)}: {part['energies'].shape[0]} frames")


if __name__ == "__main__":
    main()
