#!/usr/bin/env python3
"""Make (more) reference data with Debian's xtb (GFN2-xTB): molecular dynamics, then every kept frame
recomputed as a single point with gradient, written as rMD17 npz, MD17 npz and extxyz.

This is how the shipped aspirin data were made (500 K, 0.5 fs steps, hydrogen mass 1, a frame every
10 fs, the first 2 ps dropped). Install xtb with `apt-get install xtb`. xtb draws new random initial
velocities on every run (its $md block has no seed), so each run gives a new, independent trajectory.

    generate_xtb.py --start aspirin_opt.xyz --out new/ --time-ps 10
    generate_xtb.py --start dimer.xyz --out dimer/ --name dimer_xtb --temp 500 --time-ps 5

Writes OUT/NAME.npz (keys nuclear_charges, coords, energies, forces: the keys of rMD17, but energies
in eV and forces in eV/Angstrom), OUT/NAME_md17.npz (z, R, E [N,1], F) and OUT/NAME.extxyz (energy in
the frame info, per-atom forces), atomically (written under a temporary name, then renamed).
Use them with the nequip keys in data/README.md (`dataset_energy_unit: eV`, the default).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HARTREE_EV = 27.211386245988
BOHR_A = 0.529177210903
SYMBOLS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9, "S": 16, "Cl": 17}


def read_xyz_frames(path: Path):
    """All frames of a (multi-frame) xyz file: list of (symbols, positions [n, 3])."""
    lines = path.read_text().splitlines()
    frames, k = [], 0
    while k < len(lines) and lines[k].strip():
        n = int(lines[k].split()[0])
        rows = [ln.split() for ln in lines[k + 2:k + 2 + n]]
        if len(rows) != n:
            raise ValueError(f"{path}: frame at line {k + 1} is truncated")
        frames.append(([r[0].capitalize() for r in rows], np.array([[float(v) for v in r[1:4]] for r in rows])))
        k += 2 + n
    return frames


def write_xyz(path: Path, symbols, pos) -> None:
    body = "".join(f"{s} {x:.10f} {y:.10f} {z:.10f}\n" for s, (x, y, z) in zip(symbols, pos))
    path.write_text(f"{len(symbols)}\n\n{body}")


def run_xtb(args, cwd: Path, threads: int) -> str:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_STACKSIZE="1G")
    p = subprocess.run(["xtb"] + args, cwd=cwd, env=env, capture_output=True, text=True)
    if p.returncode != 0 or "normal termination" not in (p.stdout + p.stderr):
        raise RuntimeError(f"xtb {' '.join(args)} failed in {cwd}:\n{(p.stdout + p.stderr)[-2000:]}")
    return p.stdout


def read_gradient(path: Path, n: int):
    """Turbomole-format `gradient` file of xtb: (energy in Hartree, gradient [n, 3] in Hartree/Bohr)."""
    lines = path.read_text().splitlines()
    k = next(i for i, ln in enumerate(lines) if ln.strip().startswith("cycle"))
    energy = float(lines[k].split("=")[2].split()[0].replace("D", "E"))
    grad = np.array([[float(v.replace("D", "E")) for v in ln.split()] for ln in lines[k + 1 + n:k + 1 + 2 * n]])
    if grad.shape != (n, 3):
        raise ValueError(f"{path}: expected {n} gradient lines")
    return energy, grad


def single_point(symbols, pos, work: Path, threads: int):
    work.mkdir(parents=True, exist_ok=True)
    write_xyz(work / "frame.xyz", symbols, pos)
    run_xtb(["frame.xyz", "--gfn", "2", "--grad"], work, threads)
    e, g = read_gradient(work / "gradient", len(symbols))
    return e * HARTREE_EV, -g * HARTREE_EV / BOHR_A


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--start", type=Path, required=True, help="starting geometry (xyz), e.g. aspirin_opt.xyz")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--name", default="aspirin_xtb")
    ap.add_argument("--temp", type=float, default=500.0, help="MD temperature in K (default 500)")
    ap.add_argument("--time-ps", type=float, default=10.0, help="MD length in ps, including --skip-ps")
    ap.add_argument("--skip-ps", type=float, default=2.0, help="equilibration dropped from the start (ps)")
    ap.add_argument("--step-fs", type=float, default=0.5)
    ap.add_argument("--dump-fs", type=float, default=10.0, help="time between kept frames (fs)")
    ap.add_argument("--workers", type=int, default=2, help="single points run in parallel (default 2)")
    a = ap.parse_args()
    if shutil.which("xtb") is None:
        sys.exit("xtb not found: apt-get install xtb")
    if not a.skip_ps < a.time_ps:
        sys.exit("--skip-ps must be shorter than --time-ps")
    symbols, pos0 = read_xyz_frames(a.start)[0]
    unknown = sorted(set(symbols) - set(SYMBOLS))
    if unknown:
        sys.exit(f"{a.start}: elements {unknown} are not in this script's table; add them to SYMBOLS")
    z = np.array([SYMBOLS[s] for s in symbols], dtype=np.int64)
    a.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="xtb_md_") as tmp:
        work = Path(tmp)
        write_xyz(work / "start.xyz", symbols, pos0)
        md = [f"   temp={a.temp}", f"   time={a.time_ps}", f"   dump={a.dump_fs}", f"   step={a.step_fs}",
              "   hmass=1", "   shake=0", "   velo=false", "   nvt=true"]
        (work / "md.inp").write_text("$md\n" + "\n".join(md) + "\n$end\n")
        print(f"xtb MD: {a.time_ps} ps at {a.temp} K ...", flush=True)
        run_xtb(["start.xyz", "--gfn", "2", "--md", "--input", "md.inp"], work, a.workers)
        traj = read_xyz_frames(work / "xtb.trj")
        skip = int(round(a.skip_ps * 1000.0 / a.dump_fs))
        traj = traj[skip:]
        if not traj:
            sys.exit("no frames left after --skip-ps")
        print(f"{len(traj)} frames after dropping {skip}; single points ...", flush=True)

        def job(k):
            return single_point(symbols, traj[k][1], work / f"sp_{k}", 1)

        with ThreadPoolExecutor(max_workers=a.workers) as pool:
            results = list(pool.map(job, range(len(traj))))
    coords = np.stack([f[1] for f in traj])
    energies = np.array([r[0] for r in results])
    forces = np.stack([r[1] for r in results])
    write_dataset(a.out, a.name, z, coords, energies, forces)


def write_dataset(out: Path, name: str, z, coords, energies, forces) -> None:
    """OUT/NAME.npz (rMD17 keys, eV and eV/A), OUT/NAME_md17.npz and OUT/NAME.extxyz, each written atomically."""
    def atomic(path: Path, write) -> None:
        tmp = path.with_name(path.name + ".tmp")
        write(tmp)
        os.replace(tmp, path)

    def npz_writer(arrays):
        def write(tmp: Path):
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)
        return write

    atomic(out / f"{name}.npz", npz_writer({"nuclear_charges": z, "coords": coords, "energies": energies,
                                            "forces": forces}))
    atomic(out / f"{name}_md17.npz", npz_writer({"z": z, "R": coords, "E": energies[:, None], "F": forces}))

    def write_extxyz(tmp: Path):
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator
        from ase.io import write
        frames = []
        for r, e, f in zip(coords, energies, forces):
            at = Atoms(numbers=z, positions=r)
            at.calc = SinglePointCalculator(at, energy=float(e), forces=f)
            frames.append(at)
        write(str(tmp), frames, format="extxyz")

    atomic(out / f"{name}.extxyz", write_extxyz)
    print(f"wrote {out}/{name}.npz, {name}_md17.npz, {name}.extxyz: {len(energies)} frames, energy "
          f"{energies.mean():.3f} +- {energies.std():.3f} eV, RMS force {np.sqrt((forces ** 2).mean()):.3f} eV/A")


if __name__ == "__main__":
    main()
