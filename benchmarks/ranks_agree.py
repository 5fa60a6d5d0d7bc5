#!/usr/bin/env python3
"""np=1 vs np=N with a trained model on a real system: the same short NVE run (from the same velocities) on
1, 2 and 4 MPI ranks, compared step by step (potential energy, kinetic energy, pressure, solver iterations)
and by the final forces. The ctest `lammps_parallel` asserts this for the small test model; this script
measures it for a model you trained, e.g. the condensed-phase one on the dense box.

    .venv/bin/python benchmarks/ranks_agree.py [--model examples/aspirin/out/aspirin_contact.pt]
        [--data examples/aspirin/data/aspirin_27.data] [--ranks 1 2 4] [--steps 10] [--tol 1e-8]
        [--out benchmarks/results/ranks_agree.json]

Not a test: it measures and writes numbers (largest differences against the first rank count, and wall
times). Use a float64 model and a tight tolerance; the iteration counts must then be identical.
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "aspirin"
sys.path.insert(0, str(EXAMPLE))
from compare import run_lammps  # noqa: E402

INPUT = """units metal
atom_style atomic
boundary p p p
read_data {data}
pair_style deqformer {model} tol {tol} threads 1
pair_coeff * * {elements}
compute solver all deqformer/solver
variable fwd equal c_solver[1]
variable adj equal c_solver[2]
velocity all create 500.0 4928459 loop geom
timestep 0.0005
fix 1 all nve
thermo_style custom step pe ke press v_fwd v_adj
thermo_modify format float %.15g
thermo 1
run {steps}
write_dump all custom {dump} id fx fy fz modify sort id format float %.15g
"""


def thermo_rows(log: str) -> np.ndarray:
    rows, on = [], False
    for line in log.splitlines():
        if line.strip().startswith("Step"):
            on = True
        elif line.startswith("Loop time"):
            on = False
        elif on and line.split():
            rows.append([float(v) for v in line.split()])
    return np.array(rows)


def dump_forces(path: Path) -> np.ndarray:
    lines = path.read_text().split("ITEM: ATOMS")[1].splitlines()[1:]
    return np.array([line.split() for line in lines if line.strip()], dtype=float)[:, 1:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=EXAMPLE / "out" / "aspirin_contact.pt")
    ap.add_argument("--data", type=Path, default=EXAMPLE / "data" / "aspirin_27.data")
    ap.add_argument("--elements", default="H C O")
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--tol", type=float, default=1e-8)
    ap.add_argument("--lmp", type=Path, default=ROOT / "build" / "bin" / "lmp")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ranks_agree.json")
    a = ap.parse_args()
    for path, fix in ((a.lmp, "./scripts/build.sh"), (a.model, "train and deploy a model"), (a.data, "")):
        if not path.exists():
            sys.exit(f"{path} not found{': ' + fix if fix else ''}")
    os.environ.update(OMP_NUM_THREADS="1")   # one thread per rank (also pair_style threads 1), as in the ctests
    result = {"model": str(a.model), "data": str(a.data), "steps": a.steps, "tol": a.tol, "runs": {}}
    ref = None
    with tempfile.TemporaryDirectory(prefix="ranks_agree_") as tmp:
        for n in a.ranks:
            dump = Path(tmp) / f"forces_{n}.dump"
            inp = Path(tmp) / "in.ranks"
            inp.write_text(INPUT.format(data=a.data.resolve(), model=a.model.resolve(), tol=a.tol,
                                        elements=a.elements, steps=a.steps, dump=dump))
            t0 = time.time()
            try:
                text = run_lammps(a.lmp, ["-in", str(inp)], Path(tmp) / f"log.{n}", ranks=n)
            except RuntimeError as e:
                sys.exit(f"{n} ranks failed: {e}")
            wall = time.time() - t0
            rows, forces = thermo_rows(text), dump_forces(dump)
            run = {"wall_s": round(wall, 1), "fwd_iters": rows[:, 4].tolist(), "adj_iters": rows[:, 5].tolist(),
                   "pe_first_eV": rows[0, 1], "pe_last_eV": rows[-1, 1]}
            if ref is None:
                ref = (rows, forces)
            else:
                r_rows, r_forces = ref
                run.update({
                    "max_abs_dpe_eV": float(np.abs(rows[:, 1] - r_rows[:, 1]).max()),
                    "max_rel_dpe": float((np.abs(rows[:, 1] - r_rows[:, 1]) / np.abs(r_rows[:, 1])).max()),
                    "max_abs_dke_eV": float(np.abs(rows[:, 2] - r_rows[:, 2]).max()),
                    "max_rel_dpress": float((np.abs(rows[:, 3] - r_rows[:, 3]) / np.abs(r_rows[:, 3])).max()),
                    "max_abs_dforce_eV_per_A": float(np.abs(forces - r_forces).max()),
                    "max_rel_dforce": float(np.abs(forces - r_forces).max() / np.abs(r_forces).max()),
                    "same_iterations": bool(np.array_equal(rows[:, 4:6], r_rows[:, 4:6])),
                })
            result["runs"][str(n)] = run
            print(f"{n} rank(s): {wall:.0f} s, " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                                         for k, v in run.items() if k.startswith(("max", "same"))),
                  flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = a.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(result, indent=1))
    os.replace(tmp_out, a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
