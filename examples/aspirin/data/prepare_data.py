#!/usr/bin/env python3
"""Copy the aspirin example data from the project's shared data folder into this folder.

The npz datasets are rewritten with ``np.savez_compressed`` (rMD17 keys, float64, nothing dropped);
if a compressed file were still over 5 MB only every 2nd frame would be kept (and this is printed).
"""
import shutil
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[3] / "shared" / "data" / "aspirin"
LIMIT = 5 * 1024 * 1024
COPY = ["aspirin_1.data", "aspirin_27.data", "aspirin_27_dilute.data", "aspirin_opt.xyz"]
NPZ = ["aspirin_xtb_train.npz", "aspirin_xtb_dimer_train.npz"]


def compress(src: Path, dst: Path) -> None:
    with np.load(src) as d:
        arrays = {k: d[k] for k in d.files}
    np.savez_compressed(dst, **arrays)
    if dst.stat().st_size > LIMIT:
        arrays = {k: (v if k == "nuclear_charges" else v[::2]) for k, v in arrays.items()}
        np.savez_compressed(dst, **arrays)
        print(f"{dst.name}: over 5 MB compressed, kept every 2nd frame")
    print(f"{dst.name}: {arrays['coords'].shape[0]} frames, {dst.stat().st_size / 1e6:.2f} MB")


def main() -> int:
    if not SHARED.is_dir():
        print(f"{SHARED} not found", file=sys.stderr)
        return 1
    for name in NPZ:
        compress(SHARED / name, HERE / name)
    for name in COPY:
        shutil.copyfile(SHARED / name, HERE / name)
        print(f"{name}: copied")
    return 0


if __name__ == "__main__":
    sys.exit(main())
