"""Split the shipped aspirin trajectory in time: a training pool and an independent test trajectory.

Frames 10 fs apart are strongly correlated, so a random hold-out of the same trajectory flatters any
model. The pool is frames [0, 3900) (39 ps); the test set is frames [4000, 4900) (9 ps, 1 ps after the
pool ends), which no training or validation frame comes close to.
usage: prepare_split.py SRC.npz OUT_DIR
"""
import os
import sys

import numpy as np


def main() -> None:
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    d = np.load(src)
    for name, sl in (("aspirin_pool.npz", slice(0, 3900)), ("aspirin_test_md.npz", slice(4000, 4900))):
        part = {k: (d[k][sl] if d[k].ndim and d[k].shape[0] == d["energies"].shape[0] else d[k]) for k in d.files}
        np.savez(os.path.join(out, name), **part)
        print(f"{name}: {part['energies'].shape[0]} frames")


if __name__ == "__main__":
    main()
