#!/usr/bin/env python3
"""Long LAMMPS runs with pair_style deqformer, watched: resident memory of every rank over time, NaN in
the thermo output, and the total-energy drift of the NVE part. Not a CI test (it runs for an hour).

  molecule  one aspirin (examples/aspirin/in.aspirin), NVT 1000 steps then NVE (default 100,000 steps)
  box       the dense 27-molecule box (in.aspirin_box, data/aspirin_27.data) on 2 MPI ranks, NVT then NVE
            (default 1,000 + 1,000 steps); give it a model trained on monomers + dimers

Writes under --out (default benchmarks/results): soak_CASE_rss.csv (time, rank, RSS MB), soak_CASE.png
(RSS per rank over time, and the NVE total energy), soak_CASE.json (RSS at start/end/max, its slope over
the second half in MB/hour, NaN lines, drift in meV/atom/ps, wall time).
usage: soak.py CASE [--model M] [--steps N] [--nvt N] [--ranks 2] [--sample-s 2] [--extra-var NAME VALUE]
"""
import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "aspirin"


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return math.nan


def lmp_pids(root_pid: int, exe_name: str):
    """PIDs of the LAMMPS processes under root_pid (mpirun's children, or root_pid itself)."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,comm="], capture_output=True, text=True).stdout
    children = {}
    names = {}
    for line in out.splitlines():
        pid, ppid, comm = line.split(None, 2)
        children.setdefault(int(ppid), []).append(int(pid))
        names[int(pid)] = comm.strip()
    found, stack = [], [root_pid]
    while stack:
        p = stack.pop()
        if names.get(p, "").startswith(exe_name[:15]):
            found.append(p)
        stack.extend(children.get(p, []))
    return sorted(found)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("case", choices=["molecule", "box"])
    ap.add_argument("--lmp", default=str(ROOT / "build" / "bin" / "lmp"))
    ap.add_argument("--model", default=None, help="deployed model (default: out/aspirin.pt, box: out/aspirin_contact_f32.pt)")
    ap.add_argument("--steps", type=int, default=None, help="NVE steps (molecule 100000, box 1000)")
    ap.add_argument("--nvt", type=int, default=None, help="NVT steps first (molecule 1000, box 1000)")
    ap.add_argument("--ranks", type=int, default=2, help="MPI ranks of the box case")
    ap.add_argument("--sample-s", type=float, default=2.0)
    ap.add_argument("--tag", default=None, help="name of the outputs (default soak_CASE)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--var", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="extra LAMMPS -var")
    a = ap.parse_args()
    tag = a.tag or f"soak_{a.case}"
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = EXAMPLE / "out" / tag
    work.mkdir(parents=True, exist_ok=True)
    lmp = os.path.realpath(a.lmp)
    if not os.path.exists(lmp):
        raise SystemExit(f"{a.lmp} not found: build first (scripts/build.sh)")
    if a.case == "molecule":
        model = a.model or str(EXAMPLE / "out" / "aspirin.pt")
        nvt, nve = a.nvt if a.nvt is not None else 1000, a.steps or 100000
        cmd = [lmp, "-in", "in.aspirin", "-var", "model", model, "-var", "nvt", str(nvt), "-var", "nve", str(nve),
               "-var", "tag", tag, "-var", "outdir", str(work)]
        natoms, nve_dat = 21, work / f"md_{tag}_nve.dat"
        ecol = 5
    else:
        model = a.model or str(EXAMPLE / "out" / "aspirin_contact_f32.pt")
        nvt, nve = a.nvt if a.nvt is not None else 1000, a.steps or 1000
        mpirun = shutil.which("mpirun") or "mpirun"
        cmd = [mpirun, "-np", str(a.ranks), "--oversubscribe", "--allow-run-as-root", lmp, "-in", "in.aspirin_box",
               "-var", "data", "data/aspirin_27.data", "-var", "model", model, "-var", "nvt", str(nvt),
               "-var", "nve", str(nve), "-var", "tag", tag, "-var", "outdir", str(work)]
        natoms, nve_dat = 567, work / f"{tag}_nve.dat"
        ecol = 4
    for name, value in a.var:
        cmd += ["-var", name, value]
    cmd += ["-log", str(work / "log.lammps"), "-screen", "none"]
    if not os.path.exists(model):
        raise SystemExit(f"model {model} not found (--model)")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    print(" ".join(cmd), flush=True)
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=EXAMPLE, env=env)
    samples = []
    exe = os.path.basename(lmp)
    while proc.poll() is None:
        t = time.time() - t0
        for rank, pid in enumerate(lmp_pids(proc.pid, exe)):
            samples.append((t, rank, rss_mb(pid)))
        time.sleep(a.sample_s)
    wall = time.time() - t0
    with open(out / f"{tag}_rss.csv", "w") as f:
        f.write("time_s,rank,rss_mb\n")
        for t, r, m in samples:
            f.write(f"{t:.1f},{r},{m:.1f}\n")

    log_text = (work / "log.lammps").read_text(errors="replace") if (work / "log.lammps").exists() else ""
    nan_lines = len(re.findall(r"(?im)^.*\b-?nan\b.*$", log_text))
    summary = {"case": a.case, "command": " ".join(cmd), "returncode": proc.returncode, "wall_s": round(wall, 1),
               "nvt_steps": nvt, "nve_steps": nve, "nan_lines_in_log": nan_lines,
               "errors": [line for line in log_text.splitlines() if line.startswith("ERROR")][:5]}
    s = np.array([(t, r, m) for t, r, m in samples if not math.isnan(m)]) if samples else np.zeros((0, 3))
    if len(s):
        ranks = sorted(set(s[:, 1].astype(int)))
        per = {}
        for r in ranks:
            x = s[s[:, 1] == r]
            second = x[x[:, 0] >= x[-1, 0] / 2]
            slope = float(np.polyfit(second[:, 0], second[:, 2], 1)[0]) * 3600 if len(second) > 2 else math.nan
            per[int(r)] = {"rss_first_mb": float(x[0, 2]), "rss_last_mb": float(x[-1, 2]),
                           "rss_max_mb": float(x[:, 2].max()), "rss_slope_second_half_mb_per_h": slope}
        summary["rss"] = per
    if nve_dat.exists():
        d = np.loadtxt(nve_dat, comments="#", ndmin=2)
        if len(d) > 2:
            tt = d[:, 1] - d[0, 1]
            e = (d[:, ecol] - d[0, ecol]) / natoms * 1000.0
            summary["nve_ps"] = float(tt[-1])
            summary["nve_drift_meV_per_atom_per_ps"] = float(np.polyfit(tt, e, 1)[0])
            summary["nve_max_deviation_meV_per_atom"] = float(np.abs(e).max())
            summary["nonfinite_energy_rows"] = int((~np.isfinite(d[:, ecol])).sum())
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(2 if nve_dat.exists() else 1, 1, figsize=(7, 5), squeeze=False)
        for r in sorted(set(s[:, 1].astype(int))) if len(s) else []:
            x = s[s[:, 1] == r]
            axes[0, 0].plot(x[:, 0] / 60.0, x[:, 2], label=f"rank {r}")
        axes[0, 0].set_xlabel("wall time (min)")
        axes[0, 0].set_ylabel("resident memory (MB)")
        axes[0, 0].set_title(f"{tag}: {nvt} NVT + {nve} NVE steps")
        axes[0, 0].legend()
        if nve_dat.exists() and "nve_ps" in summary:
            axes[1, 0].plot(tt, e, lw=0.5)
            axes[1, 0].set_xlabel("NVE time (ps)")
            axes[1, 0].set_ylabel("E - E(0) (meV/atom)")
        fig.tight_layout()
        fig.savefig(out / f"{tag}.png", dpi=110)
        plt.close(fig)
    except ImportError:
        pass
    with open(out / f"{tag}.json", "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary, indent=1))
    return 0 if proc.returncode == 0 and nan_lines == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
