#!/usr/bin/env python3
"""Regenerate the small test fixtures in this folder from the project's shared aspirin data.

Reads ../shared/data/aspirin (relative to the repository root) when present; the tests only use the
committed outputs:

    aspirin_monomer_30.npz   30 monomer frames spread over the trajectory (rMD17 keys, eV / Angstrom)
    aspirin_dimer_10.npz     10 dimer frames (rMD17 keys)
    aspirin_5_rmd17.npz      frames 0-4 of aspirin_xtb_train.npz        (nuclear_charges, coords, energies, forces)
    aspirin_5_md17.npz       frames 0-4 of aspirin_xtb_train_md17.npz   (z, R, E [N,1], F)
    aspirin_5.extxyz         frames 0-4 of aspirin_xtb_train.extxyz.gz  (text copied verbatim)
"""
import gzip
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[2] / "shared" / "data" / "aspirin"


def take(src: Path, dst: Path, idx: np.ndarray) -> None:
    with np.load(src) as d:
        # per-atom constants (atomic numbers) are kept whole, everything else is per frame
        out = {k: (d[k] if k in ("z", "nuclear_charges") else d[k][idx]) for k in d.files}
    np.savez_compressed(dst, **out)
    print(f"{dst.name}: {dst.stat().st_size} bytes, " + ", ".join(f"{k} {v.shape}" for k, v in out.items()))


def extxyz_head(src: Path, dst: Path, n_frames: int) -> None:
    lines = []
    with gzip.open(src, "rt") as f:
        for _ in range(n_frames):
            n = f.readline()
            lines.append(n)
            lines.extend(f.readline() for _ in range(int(n) + 1))
    dst.write_text("".join(lines))
    print(f"{dst.name}: {dst.stat().st_size} bytes, {n_frames} frames")


def main() -> int:
    if not SHARED.is_dir():
        print(f"{SHARED} not found; keeping the committed fixtures", file=sys.stderr)
        return 1
    with np.load(SHARED / "aspirin_xtb_train.npz") as d:
        n_mono = d["coords"].shape[0]
    with np.load(SHARED / "aspirin_xtb_dimer_train.npz") as d:
        n_dimer = d["coords"].shape[0]
    take(SHARED / "aspirin_xtb_train.npz", HERE / "aspirin_monomer_30.npz", np.linspace(0, n_mono - 1, 30).astype(int))
    take(SHARED / "aspirin_xtb_dimer_train.npz", HERE / "aspirin_dimer_10.npz",
         np.linspace(0, n_dimer - 1, 10).astype(int))
    first5 = np.arange(5)
    take(SHARED / "aspirin_xtb_train.npz", HERE / "aspirin_5_rmd17.npz", first5)
    take(SHARED / "aspirin_xtb_train_md17.npz", HERE / "aspirin_5_md17.npz", first5)
    extxyz_head(SHARED / "aspirin_xtb_train.extxyz.gz", HERE / "aspirin_5.extxyz", 5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
