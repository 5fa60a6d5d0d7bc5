#!/usr/bin/env python3
"""What a solver tolerance costs in force accuracy and buys in iterations, measured in MD conditions.

A reference trajectory (NVE from 500 K, every step dumped) is made with the float64 model; LAMMPS
`rerun`s it with each deployed model (float64, float32) at each tolerance, `reuse yes` (so that every
solve starts as in MD: extrapolated from the two previous steps), and the forces are compared with
those of the float64 model at tolerance 1e-10 on the same configurations. For the molecule each model
and tolerance also runs 2 ps of NVE from the same start, and the drift of the total energy (slope of a
line fitted to it) and its largest deviation are recorded: a tolerance too loose for the adjoint makes
the forces deviate from the gradient of the energy, and NVE shows it.

The deployed default of each dtype is the loosest tolerance whose added force error stays below 1 % of
the model's own error (its held-out force MAE, --model-mae) and whose NVE drift differs from that of the
float64 model at the tightest tolerance (integration error only, the same start) by less than
--max-drift (meV/atom/ps).

    .venv/bin/python benchmarks/tolerance_scan.py --model-f64 examples/aspirin/out/aspirin.pt \\
        --model-f32 examples/aspirin/out/aspirin_f32.pt --model-mae 49.2 --out tolerance_scan

Cases: one aspirin molecule (400 steps) and the dense 27-molecule box (40 steps). Writes
benchmarks/results/NAME.csv and NAME.json. Not a test: it measures.
"""
import argparse
import csv
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples/aspirin/data"
sys.path.insert(0, str(ROOT / "examples/aspirin"))
from box_analysis import read_dump  # noqa: E402
from lammps_runs import run_lammps  # noqa: E402

CASES = [("molecule", "aspirin_1.data", 400), ("box27", "aspirin_27.data", 40)]
TOLS = {"float64": [1e-8, 1e-6, 1e-5, 3e-5, 1e-4], "float32": [1e-5, 3e-5, 1e-4, 3e-4, 1e-3]}
NVE_STEPS = 4000    # 2 ps of 0.5 fs
REFERENCE_TOL = 1e-10
HEAD = """units metal
atom_style atomic
boundary p p p
read_data {data}
pair_style deqformer {model} tol {tol} adjoint_tol {tol} max_iter 200 reuse yes threads 1
pair_coeff * * H C O
compute solver all deqformer/solver
"""
TRAJ = HEAD + """velocity all create 500.0 4928459 mom yes rot yes dist gaussian
fix nve all nve
timestep 0.0005
thermo 100
dump x all custom 1 {dump} id type x y z
dump_modify x sort id format float %.15g
run {steps}
"""
RERUN = HEAD + """thermo_style custom step pe c_solver[1] c_solver[2]
thermo_modify format float %.15g norm no
thermo 1
dump f all custom 1 {forces} id type fx fy fz
dump_modify f sort id format float %.15g
rerun {dump} dump x y z
"""
NVE = HEAD + """velocity all create 500.0 4928459 mom yes rot yes dist gaussian
fix nve all nve
timestep 0.0005
thermo_style custom step etotal c_solver[5] c_solver[6]
thermo_modify format float %.15g norm no
thermo 10
run {steps}
"""


def lammps(lmp: Path, text: str, work: Path, tag: str) -> str:
    inp, log = work / f"in.{tag}", work / f"log.{tag}"
    inp.write_text(text)
    return run_lammps(lmp, inp, log, cwd=work)


def rerun(lmp: Path, work: Path, data: Path, model: Path, tol: float, dump: Path, tag: str):
    forces = work / f"forces_{tag}.dump"
    t0 = time.time()
    text = lammps(lmp, RERUN.format(data=data, model=model, tol=tol, forces=forces, dump=dump), work, tag)
    wall = time.time() - t0
    rows = [line.split() for line in text.splitlines() if re.match(r"^\s*\d+\s+[-\d.eE+]+\s+\d+\s+\d+\s*$", line)]
    pe = np.array([float(r[1]) for r in rows])
    iters = np.array([[float(r[2]), float(r[3])] for r in rows])
    _, _, f, _ = read_dump(str(forces), columns=("fx", "fy", "fz"))
    return pe, np.asarray(f), iters, wall


def nve(lmp: Path, work: Path, data: Path, model: Path, tol: float, natoms: int, tag: str) -> dict:
    """Drift (meV/atom/ps, fitted slope) and largest deviation (meV) of the total energy over NVE_STEPS."""
    text = lammps(lmp, NVE.format(data=data, model=model, tol=tol, steps=NVE_STEPS), work, tag)
    rows = [line.split() for line in text.splitlines()
            if re.match(r"^\s*\d+\s+[-\d.eE+]+\s+[\d.eE+]+\s+[\d.eE+]+\s*$", line)]
    t_ps = np.array([float(r[0]) for r in rows]) * 0.0005
    etot = 1e3 * np.array([float(r[1]) for r in rows])
    slope = np.polyfit(t_ps, etot, 1)[0]
    return {"nve_drift_meV_atom_ps": float(slope / natoms), "nve_max_dev_meV": float(np.abs(etot - etot[0]).max()),
            "nve_fwd_iters": float(rows[-1][2]), "nve_adj_iters": float(rows[-1][3])}


def choose(rows: list, model_mae: float, max_drift: float) -> dict:
    """Per dtype, the loosest tolerance that passes both criteria (module docstring) in every case."""
    nve_rows = [r for r in rows if "nve_drift_meV_atom_ps" in r and r["dtype"] == "float64"]
    base = min(nve_rows, key=lambda r: r["tol"])["nve_drift_meV_atom_ps"] if nve_rows else 0.0
    choice = {}
    for dtype in sorted({r["dtype"] for r in rows}):
        mine = [r for r in rows if r["dtype"] == dtype]
        ok = [tol for tol in sorted({r["tol"] for r in mine})
              if all(r["f_err_mae_meV_A"] < 0.01 * model_mae
                     and abs(r.get("nve_drift_meV_atom_ps", base) - base) < max_drift
                     for r in mine if r["tol"] == tol)]
        choice[dtype] = max(ok) if ok else None
    return choice


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lmp", type=Path, default=ROOT / "build/bin/lmp")
    ap.add_argument("--model-f64", type=Path, required=True)
    ap.add_argument("--model-f32", type=Path, default=None)
    ap.add_argument("--model-mae", type=float, default=None, help="the model's held-out force MAE (meV/Å)")
    ap.add_argument("--max-drift", type=float, default=0.001,
                    help="largest acceptable NVE drift of the molecule beyond that of the float64 model at the "
                         "tightest tolerance (meV/atom/ps)")
    ap.add_argument("--tols-f64", default=None, help="comma-separated float64 tolerances (default: %s)" %
                    ",".join(f"{t:g}" for t in TOLS["float64"]))
    ap.add_argument("--tols-f32", default=None, help="comma-separated float32 tolerances (default: %s)" %
                    ",".join(f"{t:g}" for t in TOLS["float32"]))
    ap.add_argument("--cases", default=",".join(c[0] for c in CASES))
    ap.add_argument("--out", default="tolerance_scan")
    a = ap.parse_args()
    if a.tols_f64:
        TOLS["float64"] = [float(t) for t in a.tols_f64.split(",")]
    if a.tols_f32:
        TOLS["float32"] = [float(t) for t in a.tols_f32.split(",")]
    models = {"float64": a.model_f64.resolve()}
    if a.model_f32:
        models["float32"] = a.model_f32.resolve()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for case, data_file, steps in CASES:
            if case not in a.cases.split(","):
                continue
            data, dump = DATA / data_file, work / f"traj_{case}.lammpstrj"
            lammps(a.lmp, TRAJ.format(data=data, model=models["float64"], tol=1e-8, dump=dump, steps=steps), work,
                   f"traj_{case}")
            pe_ref, f_ref, _, _ = rerun(a.lmp, work, data, models["float64"], REFERENCE_TOL, dump, f"ref_{case}")
            natoms = f_ref.shape[1]
            for dtype, model in models.items():
                for tol in TOLS[dtype]:
                    pe, f, iters, wall = rerun(a.lmp, work, data, model, tol, dump, f"{case}_{dtype}_{tol:g}")
                    df = 1e3 * np.abs(f - f_ref)
                    row = {"case": case, "atoms": natoms, "frames": len(pe), "dtype": dtype, "tol": tol,
                           "f_err_mae_meV_A": float(df.mean()), "f_err_max_meV_A": float(df.max()),
                           "e_err_mae_meV_atom": float(1e3 * np.abs(pe - pe_ref).mean() / natoms),
                           "fwd_iters": float(iters[2:, 0].mean()), "adj_iters": float(iters[2:, 1].mean()),
                           "rerun_s": wall}
                    if a.model_mae:
                        row["f_err_over_model_mae"] = row["f_err_mae_meV_A"] / a.model_mae
                    if case == "molecule":
                        row.update(nve(a.lmp, work, data, model, tol, natoms, f"nve_{dtype}_{tol:g}"))
                    rows.append(row)
                    nve_text = (f", NVE drift {row['nve_drift_meV_atom_ps']:+.5f} meV/atom/ps max |dE| "
                                f"{row['nve_max_dev_meV']:.2f} meV" if "nve_drift_meV_atom_ps" in row else "")
                    print(f"{case:8s} {dtype} tol {tol:7.0e}: force error MAE {row['f_err_mae_meV_A']:.4f} max "
                          f"{row['f_err_max_meV_A']:.3f} meV/Å, energy {row['e_err_mae_meV_atom']:.2e} meV/atom, "
                          f"iterations {row['fwd_iters']:.2f}/{row['adj_iters']:.2f}{nve_text}", flush=True)
    choice = choose(rows, a.model_mae, a.max_drift) if a.model_mae else {}
    if choice:
        print(f"loosest tolerance with a force error below 1 % of the model's and an NVE drift within "
              f"{a.max_drift} meV/atom/ps of the tightest float64 run's:", choice)
    out = ROOT / "benchmarks/results" / a.out
    cols = ["case", "atoms", "frames", "dtype", "tol", "f_err_mae_meV_A", "f_err_max_meV_A", "e_err_mae_meV_atom",
            "fwd_iters", "adj_iters", "f_err_over_model_mae", "nve_drift_meV_atom_ps", "nve_max_dev_meV",
            "nve_fwd_iters", "nve_adj_iters", "rerun_s"]
    with open(f"{out}.csv.tmp", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    os.replace(f"{out}.csv.tmp", f"{out}.csv")
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "command": " ".join(sys.argv), "reference_tol": REFERENCE_TOL,
            "model_mae_meV_A": a.model_mae, "max_drift_meV_atom_ps": a.max_drift, "choice": choice, "rows": rows}
    Path(f"{out}.json.tmp").write_text(json.dumps(meta, indent=1))
    os.replace(f"{out}.json.tmp", f"{out}.json")
    print(f"wrote {out}.csv and {out}.json")


if __name__ == "__main__":
    main()
