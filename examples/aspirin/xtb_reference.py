#!/usr/bin/env python3
"""GFN2-xTB reference for the MD checks: NVE from the same microstate as the LAMMPS NVE run.

The training data are a 500 K GFN2-xTB trajectory thermostatted by xtb's velocity rescaling, whose fast
modes do not keep their share of the energy: the carboxyl O-H bond's length spread falls from 0.044 Å
in the data's first 5 ps to 0.009 Å in the test frames (docs/design.md), far below the 0.033 Å that
equipartition at 500 K gives with GFN2-xTB's own O-H force constant. Bond spreads of an equilibrated
LAMMPS run cannot be compared with that. This script starts GFN2-xTB (Debian's xtb) from the positions
and velocities of the first frame of the LAMMPS NVE dump and integrates the same length with the same
0.5 fs step, so both trajectories share their initial condition; analysis.py compares bond lengths and
stretch frequencies between them.

    xtb_reference.py out/md_reuse.lammpstrj out/xtb_nve.npz [--time-ps 2.0] [--dump-fs 1.0]

Writes (atomically) an npz with z [N], pos [T, N, 3] (Å), vel [T, N, 3] (Å/ps), dt_fs, and the
settings. Masses: xtb's hmass=1 gives H 1.000 amu against the data file's 1.008, which raises X-H
stretch frequencies of the reference by 0.4 % at most.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from box_analysis import read_dump

BOHR_A = 0.529177210903
AU_TIME_PS = 2.4188843265857e-5
AU_VEL_A_PER_PS = BOHR_A / AU_TIME_PS          # 1 bohr per atomic time unit in Å/ps
SYMBOL = {1: "H", 6: "C", 8: "O"}
LAMMPS_TYPES = {1: 1, 2: 6, 3: 8}               # data files: 1=H 2=C 3=O


def fortran_d(x: float) -> str:
    """x in Fortran's D22.14 edit descriptor (0.ddddddddddddddD+ee), the layout xtb reads mdrestart with."""
    if x == 0.0:
        return f"{'0.00000000000000D+00':>22}"
    e = int(np.floor(np.log10(abs(x)))) + 1
    m = abs(x) / 10.0 ** e
    if round(m, 14) >= 1.0:
        m, e = m / 10.0, e + 1
    return f"{('-' if x < 0 else '') + f'{m:.14f}D{e:+03d}':>22}"


def write_start(work: Path, z, pos, vel) -> None:
    """start.xyz (Å) and xtb's mdrestart (bohr, bohr per atomic time unit)."""
    rows = "".join(f"{SYMBOL[int(k)]} {x:.10f} {y:.10f} {w:.10f}\n" for k, (x, y, w) in zip(z, pos))
    (work / "start.xyz").write_text(f"{len(z)}\n\n{rows}")
    p, v = pos / BOHR_A, vel / AU_VEL_A_PER_PS
    lines = [" -1.0"] + ["".join(fortran_d(c) for c in (*p[i], *v[i])) for i in range(len(z))]
    (work / "mdrestart").write_text("\n".join(lines) + "\n")


def read_trj(path: Path, n: int):
    """xtb.trj written with velo=true: per frame 2 header lines, n positions (Å), n velocities (a.u.)."""
    lines = path.read_text().splitlines()
    block = 2 + 2 * n
    nf = len(lines) // block
    if nf == 0:
        raise SystemExit(f"{path}: no complete frame")
    pos = np.empty((nf, n, 3))
    vel = np.empty((nf, n, 3))
    for f in range(nf):
        b = lines[f * block:(f + 1) * block]
        pos[f] = [[float(c) for c in ln.split()[1:4]] for ln in b[2:2 + n]]
        vel[f] = [[float(c) for c in ln.split()[:3]] for ln in b[2 + n:2 + 2 * n]]
    return pos, vel * AU_VEL_A_PER_PS


def run(dump: str, out: str, time_ps: float, step_fs: float, dump_fs: float, threads: int) -> None:
    if shutil.which("xtb") is None:
        raise SystemExit("xtb not found: apt-get install xtb (scripts/install-deps.sh installs it)")
    _, _, frames, types = read_dump(dump, ("x", "y", "z", "vx", "vy", "vz"))
    if len(frames) == 0:
        raise SystemExit(f"{dump}: no frame")
    z = np.array([LAMMPS_TYPES[t] for t in types])
    pos, vel = frames[0][:, :3], frames[0][:, 3:]
    with tempfile.TemporaryDirectory(prefix="xtb_nve_") as tmp:
        work = Path(tmp)
        write_start(work, z, pos, vel)
        md = [f"   time={time_ps}", f"   step={step_fs}", f"   dump={dump_fs}", "   hmass=1", "   shake=0",
              "   velo=true", "   nvt=false", "   restart=true"]
        (work / "md.inp").write_text("$md\n" + "\n".join(md) + "\n$end\n")
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_STACKSIZE="1G")
        p = subprocess.run(["xtb", "start.xyz", "--gfn", "2", "--md", "--input", "md.inp"], cwd=work, env=env,
                           capture_output=True, text=True)
        log = p.stdout + p.stderr
        if p.returncode != 0 or "normal termination" not in log:
            raise SystemExit(f"xtb MD failed:\n{log[-2000:]}")
        tpos, tvel = read_trj(work / "xtb.trj", len(z))
    # xtb dumps the start itself as its first frame: with the LAMMPS velocities only if it read mdrestart
    # (without it, it draws random velocities)
    dv = np.abs(tvel[0] - vel).max() / np.abs(vel).max()
    if np.abs(tpos[0] - pos).max() > 1e-6 or dv > 1e-6:
        raise SystemExit(f"xtb's first frame is not the LAMMPS microstate (relative velocity difference {dv:.2g}): "
                         "it did not start from the dump")
    tmp_out = out + ".tmp.npz"
    np.savez_compressed(tmp_out, z=z, pos=tpos, vel=tvel, dt_fs=dump_fs, step_fs=step_fs, time_ps=time_ps,
                        source=os.path.abspath(dump))
    os.replace(tmp_out, out)
    print(f"GFN2-xTB NVE from the first frame of {dump}: {len(tpos)} frames every {dump_fs} fs -> {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dump", help="LAMMPS dump with id type x y z vx vy vz (units metal); its first frame starts xtb")
    ap.add_argument("out", help="output npz")
    ap.add_argument("--time-ps", type=float, default=2.0)
    ap.add_argument("--step-fs", type=float, default=0.5)
    ap.add_argument("--dump-fs", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    run(a.dump, a.out, a.time_ps, a.step_fs, a.dump_fs, a.threads)


if __name__ == "__main__":
    sys.exit(main())
