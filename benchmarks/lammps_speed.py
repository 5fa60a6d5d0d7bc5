#!/usr/bin/env python3
"""Speed of pair_style deqformer in LAMMPS: timesteps/s and atom-steps/s from one aspirin molecule to
replicated boxes of > 20,000 atoms, on 1 and 2 MPI ranks, with fixed-point reuse on and off, and where
the time goes (graph building, forward solve, adjoint solve, state exchange, edge gradients).

Not a test: it measures and writes numbers.  Run after ./scripts/build.sh:

    .venv/bin/python benchmarks/lammps_speed.py [--model M.pt] [--quick] [--out CSV]

--model defaults to the aspirin example's model (examples/aspirin/out/aspirin.pt, made by the main
job), falling back to the test-fixture model of the ctest build.  Every case is NVE from the data
file's geometry with 500 K velocities, a few warm-up steps (not timed; reuse needs a previous step),
then the timed run.  Columns of the CSV (one row per case):

  case, atoms, ranks, reuse, steps, loop_s, timesteps_per_s, atom_steps_per_s,
  fwd_iters_mean, adj_iters_mean        solver iterations per step (compute deqformer/solver [5], [6])
  t_edge_s, t_forward_s, t_adjoint_s, t_comm_s, t_model_s    rank 0's seconds in the model (compute
                                        [13], [10], [11], [12], [14]; forward/adjoint include comm); they
                                        include the run's setup evaluation (steps + 1 evaluations)
  t_pair_s, t_neigh_s, t_comm_lammps_s  LAMMPS's own timing breakdown (average over ranks)
  t_graph_s                             t_pair - t_model * steps / (steps + 1): neighbor list -> edges,
                                        forces/virial scatter (approximate: the setup evaluation is removed
                                        pro rata)
  max_rss_mb                            largest resident set of one rank (GNU time)
  load1                                 1-minute load average before the case (other work on the machine)
  error                                 empty, or why the case failed (e.g. out of memory); the others still run
"""
import argparse
import csv
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "aspirin" / "data"
sys.path.insert(0, str(ROOT / "examples" / "aspirin"))
from lammps_runs import timed_run  # noqa: E402

# name, data file, replicate (nx, ny, nz), ranks, reuse, timed steps (full / --quick)
CASES = [
    ("molecule", "aspirin_1.data", (1, 1, 1), 1, "yes", 200, 40),
    ("molecule", "aspirin_1.data", (1, 1, 1), 1, "no", 200, 40),
    ("molecule", "aspirin_1.data", (1, 1, 1), 2, "yes", 200, 40),
    ("box27_dilute", "aspirin_27_dilute.data", (1, 1, 1), 1, "yes", 20, 5),
    ("box27_dilute", "aspirin_27_dilute.data", (1, 1, 1), 1, "no", 20, 5),
    ("box27_dilute", "aspirin_27_dilute.data", (1, 1, 1), 2, "yes", 20, 5),
    ("box27_dense", "aspirin_27.data", (1, 1, 1), 1, "yes", 20, 5),
    ("box27_dense", "aspirin_27.data", (1, 1, 1), 2, "yes", 20, 5),
    ("dense_x8", "aspirin_27.data", (2, 2, 2), 1, "yes", 5, 2),
    ("dense_x8", "aspirin_27.data", (2, 2, 2), 2, "yes", 5, 2),
    ("dense_x36", "aspirin_27.data", (3, 3, 4), 1, "yes", 3, 0),
    ("dense_x36", "aspirin_27.data", (3, 3, 4), 2, "yes", 3, 0),
]

COLUMNS = ["case", "atoms", "ranks", "reuse", "steps", "loop_s", "timesteps_per_s", "atom_steps_per_s",
           "fwd_iters_mean", "adj_iters_mean", "t_edge_s", "t_forward_s", "t_adjoint_s", "t_comm_s", "t_model_s",
           "t_pair_s", "t_neigh_s", "t_comm_lammps_s", "t_graph_s", "max_rss_mb", "load1", "error"]

INPUT = """units metal
atom_style atomic
boundary p p p
read_data {data}
replicate {rx} {ry} {rz}
pair_style deqformer {model} reuse {reuse} threads {threads}
pair_coeff * * H C O
neighbor 1.0 bin
neigh_modify every 1 delay 0 check yes
velocity all create 500.0 4928459 mom yes rot yes dist gaussian
fix nve all nve
timestep 0.0005
compute solver all deqformer/solver
thermo_style custom step temp pe c_solver[5] c_solver[6] c_solver[10] c_solver[11] c_solver[12] c_solver[13] c_solver[14]
thermo_modify norm no format float %.10g
thermo {steps}
run {warmup}
run {steps}
"""


def default_model() -> Path:
    for p in (ROOT / "examples/aspirin/out/aspirin.pt", ROOT / "build/tests/models/model_f64.pt"):
        if p.exists():
            return p
    sys.exit("no model: run the main job (examples/aspirin/run.sh) or the tests first, or pass --model")


def speed_row(r: dict) -> dict:
    """The solver statistics of the timed run's last thermo line and LAMMPS's timing breakdown."""
    thermo = r["thermo"]

    def section(name):
        m = re.search(rf"^{name}\s*\|\s*([\d.eE+-]+)\s*\|\s*([\d.eE+-]+)", r["after"], re.M)
        return float(m.group(2)) if m else float("nan")

    return {"loop_s": r["loop_s"], "ranks": r["ranks"], "steps": r["steps"], "atoms": r["atoms"],
            "fwd_iters_mean": float(thermo[3]), "adj_iters_mean": float(thermo[4]),
            "t_forward_s": float(thermo[5]), "t_adjoint_s": float(thermo[6]), "t_comm_s": float(thermo[7]),
            "t_edge_s": float(thermo[8]), "t_model_s": float(thermo[9]), "t_pair_s": section("Pair"),
            "t_neigh_s": section("Neigh"), "t_comm_lammps_s": section("Comm"), "max_rss_mb": r["max_rss_mb"]}


def run_case(lmp: Path, model: Path, case, steps: int, work: Path, threads: int, warmup=None) -> dict:
    name, data, rep, ranks, reuse, _, _ = case
    inp = work / "in.speed"
    if warmup is None:
        warmup = 2 if steps < 10 else 5
    inp.write_text(INPUT.format(data=DATA / data, rx=rep[0], ry=rep[1], rz=rep[2], model=model, reuse=reuse,
                                threads=threads, steps=steps, warmup=warmup))
    load1 = float(Path("/proc/loadavg").read_text().split()[0])
    try:
        r = speed_row(timed_run(lmp, inp, work / "log.lammps", ranks, work, omp_threads=threads))
    except RuntimeError as e:
        raise RuntimeError(f"case {name} ({ranks} ranks) failed: {e}") from None
    r.update({"case": name, "reuse": reuse, "load1": load1})
    r["timesteps_per_s"] = r["steps"] / r["loop_s"]
    r["atom_steps_per_s"] = r["atoms"] * r["steps"] / r["loop_s"]
    r["t_graph_s"] = r["t_pair_s"] - r["t_model_s"] * r["steps"] / (r["steps"] + 1)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--lmp", type=Path, default=ROOT / "build/bin/lmp")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/lammps_speed.csv")
    ap.add_argument("--quick", action="store_true", help="fewer steps, no 20,000-atom box (minutes, not an hour)")
    ap.add_argument("--only", default=None, help="run only the cases whose name contains this")
    ap.add_argument("--threads", type=int, default=1, help="OpenMP/LibTorch threads per rank (default 1)")
    ap.add_argument("--ranks", type=int, default=None, help="run only the cases on this many MPI ranks")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed steps before each timed run (default 2, or 5 for runs of >= 10 steps); from a data "
                         "file's unrelaxed geometry the fixed point moves fast at first, so a model whose reuse "
                         "settles slowly needs more to time the steady state")
    a = ap.parse_args()
    model = (a.model or default_model()).resolve()
    if not a.lmp.exists():
        sys.exit(f"{a.lmp} not found: run ./scripts/build.sh first")
    if shutil.which("mpirun") is None:
        sys.exit("mpirun not found: install openmpi-bin (./scripts/install-deps.sh)")
    # LibTorch's threads: the pair_style keyword threads; OMP_NUM_THREADS for OpenMP and OpenBLAS
    os.environ.update({"OMP_NUM_THREADS": str(a.threads), "OMP_WAIT_POLICY": "PASSIVE", "OMP_PROC_BIND": "false"})
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = a.out.with_suffix(".csv.tmp")
    rows = []
    with tempfile.TemporaryDirectory() as tmp, open(tmp_out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for case in CASES:
            steps = case[6] if a.quick else case[5]
            if steps == 0 or (a.only and a.only not in case[0]) or (a.ranks and a.ranks != case[3]):
                continue
            t0 = time.time()
            try:
                r = run_case(a.lmp, model, case, steps, Path(tmp), a.threads, a.warmup)
            except RuntimeError as e:
                msg = " ".join(str(e).split())[-300:]
                print(f"{case[0]} ({case[3]} ranks): FAILED: {msg}", flush=True)
                w.writerow({"case": case[0], "ranks": case[3], "reuse": case[4], "steps": steps, "error": msg})
                f.flush()
                continue
            rows.append(r)
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
            f.flush()
            print(f"{r['case']:13s} {r['atoms']:6d} atoms  {r['ranks']} rank(s)  reuse {r['reuse']:3s}  "
                  f"{r['timesteps_per_s']:8.3f} steps/s  {r['atom_steps_per_s']:9.1f} atom-steps/s  "
                  f"iters {r['fwd_iters_mean']:.1f}/{r['adj_iters_mean']:.1f}  "
                  f"(model {r['t_model_s']:.1f} s of pair {r['t_pair_s']:.1f} s; wall {time.time() - t0:.0f} s)",
                  flush=True)
    os.replace(tmp_out, a.out)
    print(f"model {model}\nwrote {a.out}")


if __name__ == "__main__":
    main()
