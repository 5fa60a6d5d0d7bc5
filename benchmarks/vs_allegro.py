#!/usr/bin/env python3
"""deqformer against Allegro in LAMMPS, side by side: the same LAMMPS binary, data files, integrator and
rank counts, the variants interleaved case by case in one run (so that a change in the machine's load
hits all of them alike).

    .venv/bin/python benchmarks/vs_allegro.py --model-f32 M32.pt --model-f64 M64.pt \\
        --allegro-dir ALLEGRO_VENV --allegro-model allegro.pth [--cases molecule,box27] [--out NAME]

ALLEGRO_VENV is a folder made by ../shared/peers/allegro/setup.sh (its allegroplugin.so is loaded with
`plugin load`); without --allegro-dir the Allegro rows are left out and the table says so.
Variants: deqformer float32 with the native backend and with TorchScript, deqformer float64 native
(each model only if given), Allegro (pair_style allegro3232, or allegro6464 with --allegro-f64).

Cases (atoms: 21, 567, 4,536, 20,412):
  molecule     aspirin_1.data, 1 rank, NVE from 500 K velocities
  box27_r1/r2  the dense 27-molecule box (1.20 g/cm3), 1 and 2 ranks
  x8_r1/r2     that box replicated 2x2x2, 1 and 2 ranks
  x36_r1       replicated 3x3x4, 1 rank
deqformer always runs NVE (its fixed point moves with the atoms, which is what reuse is measured on).
A monomer-trained Allegro blows a dense box up within tens of steps; its cost does not depend on the
motion, so in the boxes it is timed with the atoms held in place (no velocities, `fix setforce 0 0 0`),
and the table says so.

--max-iter N pins deqformer's solves to exactly N forward and N adjoint iterations per step (tolerance
1e-14 with max_iter N; non-convergence is reported by the pair style and expected): the cost of a
trained model that needs N iterations, measured with any model of the same size. Without it each
model's own tolerance decides.

--repeats R runs every case R times, the variants interleaved within each round, and reports the
median speed of each variant (all rounds' figures are kept in the JSON): short cases such as the
molecule vary by 10-20 % from one run to the next on a shared machine.

Writes benchmarks/results/NAME.csv and NAME.json: per case and variant atom-steps/s, solver
iterations, the largest resident set of one rank (MB) and per atom (KB), and the ratio to Allegro.
Not a test: it measures.
"""
import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "aspirin" / "data"
sys.path.insert(0, str(ROOT / "examples" / "aspirin"))
from lammps_runs import FROZEN, timed_run  # noqa: E402

# name, data file, replicate, ranks, timed steps, warm-up steps
CASES = [
    ("molecule", "aspirin_1.data", (1, 1, 1), 1, 200, 20),
    ("box27_r1", "aspirin_27.data", (1, 1, 1), 1, 10, 5),
    ("box27_r2", "aspirin_27.data", (1, 1, 1), 2, 10, 5),
    ("x8_r1", "aspirin_27.data", (2, 2, 2), 1, 3, 2),
    ("x8_r2", "aspirin_27.data", (2, 2, 2), 2, 3, 2),
    ("x36_r1", "aspirin_27.data", (3, 3, 4), 1, 2, 1),
]

HEAD = """units metal
atom_style atomic
boundary p p p
atom_modify map array
read_data {data}
replicate {rx} {ry} {rz}
"""

DEQ = HEAD + """pair_style deqformer {model} backend {backend} threads 1 {solver}
pair_coeff * * H C O
neighbor 1.0 bin
neigh_modify every 1 delay 0 check yes
velocity all create 500.0 4928459 mom yes rot yes dist gaussian
fix nve all nve
timestep 0.0005
compute solver all deqformer/solver
thermo_style custom step temp pe c_solver[5] c_solver[6]
thermo_modify norm no
thermo {steps}
run {warmup}
run {steps}
"""

ALLEGRO = HEAD + """plugin load {plugin}
pair_style {style}
pair_coeff * * {model} H C O
neighbor 1.0 bin
neigh_modify every 1 delay 0 check yes
{motion}
timestep 0.0005
thermo_style custom step temp pe
thermo {steps}
run {warmup}
run {steps}
"""
MOVING = "velocity all create 500.0 4928459 mom yes rot yes dist gaussian\nfix nve all nve"

COLUMNS = ["case", "variant", "atoms", "ranks", "steps", "loop_s", "atom_steps_per_s", "fwd_iters", "adj_iters",
           "max_rss_mb", "kb_per_atom", "frozen", "ratio_to_allegro", "load1", "error"]


def run_variant(a, work: Path, name, data, rep, ranks, steps, warmup, vname, kind, model, extra, solver) -> dict:
    inp, log = work / "in.bench", work / "log.lammps"
    frozen = kind == "allegro" and name != "molecule"
    fmt = dict(data=DATA / data, rx=rep[0], ry=rep[1], rz=rep[2], model=model, steps=steps, warmup=warmup)
    if kind == "deq":
        inp.write_text(DEQ.format(backend=extra, solver=solver, **fmt))
    else:
        style = "allegro6464" if a.allegro_f64 else "allegro3232"
        inp.write_text(ALLEGRO.format(plugin=extra, style=style, motion=FROZEN if frozen else MOVING, **fmt))
    row = {"case": name, "variant": vname, "ranks": ranks, "steps": steps, "frozen": frozen,
           "load1": float(Path("/proc/loadavg").read_text().split()[0])}
    t0 = time.time()
    try:
        r = timed_run(a.lmp, inp, log, ranks, work)
        row.update({k: r[k] for k in ("loop_s", "atoms", "max_rss_mb")})
        row["atom_steps_per_s"] = r["atoms"] * r["steps"] / r["loop_s"]
        row["kb_per_atom"] = r["max_rss_mb"] * 1024 * ranks / r["atoms"]
        if kind == "deq":
            row["fwd_iters"], row["adj_iters"] = float(r["thermo"][3]), float(r["thermo"][4])
    except RuntimeError as e:
        row["error"] = " ".join(str(e).split())[-300:]
    print(f"{name:9s} {vname:26s} " + (f"{row['atom_steps_per_s']:10.1f} atom-steps/s  "
          f"iters {row.get('fwd_iters', float('nan')):.1f}/{row.get('adj_iters', float('nan')):.1f}  "
          f"{row['max_rss_mb']:.0f} MB/rank" if "error" not in row else "FAILED " + row["error"]) +
          f"  ({time.time() - t0:.0f} s)", flush=True)
    return row


def median_row(rows: list) -> dict:
    """The round with the median speed (an error if any round failed); every round's speed kept."""
    failed = [r for r in rows if "error" in r]
    if failed:
        return failed[0]
    ranked = sorted(rows, key=lambda r: r["atom_steps_per_s"])
    out = dict(ranked[(len(ranked) - 1) // 2])
    out["rounds_atom_steps_per_s"] = [r["atom_steps_per_s"] for r in rows]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lmp", type=Path, default=ROOT / "build/bin/lmp-4Feb2025",
                    help="one LAMMPS for every variant (default: the project's 4Feb2025 build, which pair_allegro "
                         "needs)")
    ap.add_argument("--model-f32", type=Path, default=None)
    ap.add_argument("--model-f64", type=Path, default=None)
    ap.add_argument("--backends", default="native,torchscript", help="deqformer float32 backends to run")
    ap.add_argument("--max-iter", type=int, default=None, help="pin deqformer to N forward + N adjoint iterations")
    ap.add_argument("--allegro-dir", type=Path, default=None, help="a venv made by shared/peers/allegro/setup.sh")
    ap.add_argument("--allegro-model", type=Path, default=None)
    ap.add_argument("--allegro-f64", action="store_true", help="the Allegro model is float64 (allegro6464)")
    ap.add_argument("--cases", default=",".join(c[0] for c in CASES))
    ap.add_argument("--steps-scale", type=float, default=1.0, help="multiply every case's timed steps")
    ap.add_argument("--repeats", type=int, default=1, help="rounds per case (median reported)")
    ap.add_argument("--out", default="vs_allegro")
    a = ap.parse_args()
    if not a.lmp.exists():
        sys.exit(f"{a.lmp} not found: run ./scripts/build.sh first")
    variants = []
    solver = "" if a.max_iter is None else f"tol 1e-14 adjoint_tol 1e-14 max_iter {a.max_iter} nonconvergence warn"
    if a.model_f32:
        for b in a.backends.split(","):
            variants.append((f"deqformer_f32_{b}", "deq", a.model_f32.resolve(), b))
    if a.model_f64:
        variants.append(("deqformer_f64_native", "deq", a.model_f64.resolve(), "native"))
    allegro_note = ""
    if a.allegro_dir:
        plugin = (a.allegro_dir / "allegroplugin.so").resolve()
        if not plugin.exists() or not a.allegro_model or not a.allegro_model.exists():
            sys.exit(f"--allegro-dir needs {plugin} (setup.sh VENV LAMMPS_SRC LAMMPS_BUILD) and --allegro-model")
        variants.append(("allegro", "allegro", a.allegro_model.resolve(), plugin))
    else:
        allegro_note = ("no Allegro given: add --allegro-dir VENV --allegro-model M.pth "
                        "(VENV from ../shared/peers/allegro/setup.sh)")
    if not variants:
        sys.exit("nothing to run: give --model-f32 / --model-f64 and/or --allegro-dir")
    wanted = a.cases.split(",")
    rows = []
    out_csv = ROOT / "benchmarks/results" / f"{a.out}.csv"
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, data, rep, ranks, steps, warmup in CASES:
            if name not in wanted:
                continue
            steps = max(1, int(round(steps * a.steps_scale)))
            rounds = {vname: [] for vname, _, _, _ in variants}
            for _ in range(max(1, a.repeats)):
                for vname, kind, model, extra in variants:
                    rounds[vname].append(run_variant(a, work, name, data, rep, ranks, steps, warmup, vname, kind,
                                                     model, extra, solver))
            case_rows = [median_row(rounds[vname]) for vname, _, _, _ in variants]
            ref = next((r for r in case_rows if r["variant"] == "allegro" and "error" not in r), None)
            for r in case_rows:
                if ref and "atom_steps_per_s" in r:
                    r["ratio_to_allegro"] = r["atom_steps_per_s"] / ref["atom_steps_per_s"]
            rows.extend(case_rows)
    with open(out_csv.with_suffix(".csv.tmp"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    os.replace(out_csv.with_suffix(".csv.tmp"), out_csv)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "command": " ".join(sys.argv), "lmp": str(a.lmp),
            "max_iter": a.max_iter, "repeats": a.repeats, "allegro": allegro_note or str(a.allegro_model), "rows": rows}
    tmp_json = out_csv.with_suffix(".json.tmp")
    tmp_json.write_text(json.dumps(meta, indent=1))
    os.replace(tmp_json, out_csv.with_suffix(".json"))
    if allegro_note:
        print(allegro_note)
    print(f"wrote {out_csv} and {out_csv.with_suffix('.json')}")


if __name__ == "__main__":
    main()
