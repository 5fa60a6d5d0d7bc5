#!/usr/bin/env python3
"""Side-by-side comparison of aspirin potentials in LAMMPS: deqformer (reuse on/off, float64/float32)
and, where installed, Allegro. (deqformer's explicit unrolled mode is not deployable; it is compared in
Python by benchmarks/deq_vs_explicit.py.)

Every variant is measured the same way, through LAMMPS itself:
  * held-out accuracy: `rerun` of frames of the unseen test trajectory (out/data/aspirin_test_md.npz)
    -> energy and force MAE against GFN2-xTB;
  * speed: atom-steps/s of one molecule (in.aspirin / in.aspirin_allegro, NVE part) and of the
    27-molecule dilute box (567 atoms) on 2 MPI ranks;
  * NVE total-energy drift of the molecule (0.5 fs steps);
  * bond-length distributions of that MD against the reference trajectory (overlap of histograms).
One table comes out: out/compare/comparison.md (and .csv, and the raw numbers in comparison.json).

    .venv/bin/python compare.py                        # deqformer variants only
    .venv/bin/python compare.py --allegro-lmp /path/to/lmp_with_pair_allegro --allegro-model aspirin.pth

Options --nvt/--nve/--box-steps/--frames set the run lengths (defaults: 1000 NVT + 4000 NVE steps,
20 box steps, 300 test frames; about 5 minutes per variant on 2 cores).
"""
import argparse
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from analysis import geometry_samples, read_lammpstrj, LAMMPS_TYPES  # noqa: E402

BOX_LENGTH = 30.0     # aspirin_1.data: one molecule in a 30 A periodic box


def mpirun_prefix(n: int):
    if n <= 1:
        return []
    cmd = ["mpirun", "-np", str(n), "--oversubscribe", "-x", "OMP_NUM_THREADS=1"]
    if os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    return cmd


def run_lammps(lmp, args, log: Path, ranks: int = 1, cwd: Path = HERE):
    cmd = mpirun_prefix(ranks) + [str(lmp), "-nocite", "-log", str(log), "-screen", "none"] + args
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        tail = log.read_text()[-3000:] if log.exists() else ""
        raise RuntimeError(f"LAMMPS failed ({' '.join(cmd)}):\n{p.stderr[-2000:]}\n{tail}")
    return log.read_text()


def last_loop(text: str):
    m = list(re.finditer(r"^Loop time of ([\d.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms", text, re.M))
    if not m:
        raise RuntimeError("no 'Loop time' in the LAMMPS log")
    t, _, steps, atoms = m[-1].groups()
    return float(t), int(steps), int(atoms)


class Variant:
    def __init__(self, name, lmp, pair_lines, md_input, md_vars, model):
        self.name, self.lmp, self.pair_lines, self.md_input, self.md_vars, self.model = \
            name, lmp, pair_lines, md_input, md_vars, model


def write_test_dump(npz: Path, path: Path, frames: int):
    d = np.load(npz)
    z, pos = d["nuclear_charges"], d["coords"]
    sel = np.linspace(0, len(pos) - 1, min(frames, len(pos))).astype(int)
    inv = {v: k for k, v in LAMMPS_TYPES.items()}
    with open(path, "w") as f:
        for n, k in enumerate(sel):
            f.write(f"ITEM: TIMESTEP\n{n}\nITEM: NUMBER OF ATOMS\n{len(z)}\nITEM: BOX BOUNDS pp pp pp\n")
            f.write(f"0 {BOX_LENGTH}\n" * 3)
            f.write("ITEM: ATOMS id type x y z\n")
            for i, (zi, r) in enumerate(zip(z, pos[k])):
                f.write(f"{i + 1} {inv[int(zi)]} {r[0]:.10f} {r[1]:.10f} {r[2]:.10f}\n")
    return d["energies"][sel], d["forces"][sel]


def accuracy(v: Variant, work: Path, dump: Path, e_ref, f_ref):
    inp = work / f"in.rerun_{v.name}"
    fdump = work / f"forces_{v.name}.dump"
    inp.write_text("\n".join([
        "units metal", "atom_style atomic", "boundary p p p", f"read_data {HERE / 'data/aspirin_1.data'}",
        *v.pair_lines, "thermo_style custom step pe", "thermo_modify format float %.12g norm no", "thermo 1",
        f"dump f all custom 1 {fdump} id fx fy fz", "dump_modify f sort id format float %.12g",
        f"rerun {dump} dump x y z box no"]) + "\n")
    text = run_lammps(v.lmp, ["-in", str(inp)], work / f"log.rerun_{v.name}")
    pe = []
    for line in text.splitlines():
        s = line.split()
        if len(s) == 2 and s[0].isdigit():
            try:
                pe.append(float(s[1]))
            except ValueError:
                pass
    n = f_ref.shape[1]
    forces = []
    with open(fdump) as fh:
        lines = fh.read().split("ITEM: ATOMS id fx fy fz\n")[1:]
    for block in lines:
        rows = np.array([r.split() for r in block.strip().splitlines()[:n]], dtype=float)
        forces.append(rows[np.argsort(rows[:, 0])][:, 1:4])
    pe, forces = np.array(pe[-len(e_ref):]), np.array(forces)
    if len(pe) != len(e_ref) or forces.shape != f_ref.shape:
        raise RuntimeError(f"{v.name}: rerun gave {len(pe)} energies / forces {forces.shape}, expected "
                           f"{len(e_ref)} / {f_ref.shape}")
    return {"e_mae_meV": float(1e3 * np.abs(pe - e_ref).mean()),
            "f_mae_meV_A": float(1e3 * np.abs(forces - f_ref).mean()),
            "f_rmse_meV_A": float(1e3 * np.sqrt(((forces - f_ref) ** 2).mean()))}


def molecule_md(v: Variant, work: Path, nvt: int, nve: int, ref_npz: Path):
    args = ["-in", str(HERE / v.md_input), "-var", "model", str(v.model), "-var", "nvt", str(nvt), "-var", "nve",
            str(nve), "-var", "tag", v.name, "-var", "outdir", str(work)] + v.md_vars
    text = run_lammps(v.lmp, args, work / f"log.md_{v.name}")
    loop, steps, atoms = last_loop(text)
    nve_dat = np.loadtxt(work / f"md_{v.name}_nve.dat", comments="#", ndmin=2)
    nvt_dat = np.loadtxt(work / f"md_{v.name}_nvt.dat", comments="#", ndmin=2)
    t, et = nve_dat[:, 1], nve_dat[:, 5]
    slope = np.polyfit(t, et, 1)[0] if len(t) > 2 else float("nan")
    res = {"molecule_atom_steps_per_s": atoms * steps / loop, "molecule_steps_per_s": steps / loop,
           "nve_ps": float(t[-1] - t[0]), "nve_drift_meV_atom_ps": float(1e3 * slope / atoms),
           "nve_max_dev_meV": float(1e3 * np.abs(et - et[0]).max()),
           "iters_fwd": float(nvt_dat[1:, 6].mean()), "iters_adj": float(nvt_dat[1:, 7].mean())}
    traj, types = read_lammpstrj(str(work / f"md_{v.name}.lammpstrj"))
    d = np.load(ref_npz)
    zl = np.array([LAMMPS_TYPES[int(x)] for x in types])
    md = geometry_samples(zl, traj, d["coords"][0])
    rf = geometry_samples(d["nuclear_charges"], d["coords"], d["coords"][0])
    overlaps, shifts = {}, {}
    for k in md:
        lo, hi = np.percentile(np.concatenate([md[k], rf[k]]), [0.5, 99.5])
        bins = np.linspace(lo, hi, 41)
        p = np.histogram(md[k], bins)[0] / max(len(md[k]), 1)
        q = np.histogram(rf[k], bins)[0] / max(len(rf[k]), 1)
        overlaps[k] = float(np.minimum(p, q).sum())
        shifts[k] = float(md[k].mean() - rf[k].mean())
    res["bond_overlap_mean"] = float(np.mean([overlaps[k] for k in overlaps if "angle" not in k]))
    res["bond_overlap"] = overlaps
    res["bond_mean_shift"] = shifts
    return res


def box_speed(v: Variant, work: Path, steps: int):
    inp = work / f"in.box_{v.name}"
    inp.write_text("\n".join([
        "units metal", "atom_style atomic", "boundary p p p", "newton on",
        f"read_data {HERE / 'data/aspirin_27_dilute.data'}", *v.pair_lines,
        "velocity all create 500.0 87287 mom yes rot yes dist gaussian", "fix nve all nve", "timestep 0.0005",
        "thermo 10", "run 3", f"run {steps}"]) + "\n")
    text = run_lammps(v.lmp, ["-in", str(inp)], work / f"log.box_{v.name}", ranks=2)
    loop, steps, atoms = last_loop(text)
    return {"box_atom_steps_per_s": atoms * steps / loop}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE / "out/compare")
    ap.add_argument("--lmp", type=Path, default=ROOT / "build/bin/lmp")
    ap.add_argument("--model", type=Path, default=HERE / "out/aspirin.pt", help="deployed deqformer, float64")
    ap.add_argument("--model-f32", type=Path, default=HERE / "out/aspirin_f32.pt")
    ap.add_argument("--allegro-lmp", type=Path, default=None, help="a LAMMPS executable with pair_style allegro")
    ap.add_argument("--allegro-model", type=Path, default=None, help="an Allegro model from nequip-deploy")
    ap.add_argument("--test-npz", type=Path, default=HERE / "out/data/aspirin_test_md.npz")
    ap.add_argument("--nvt", type=int, default=1000)
    ap.add_argument("--nve", type=int, default=4000)
    ap.add_argument("--box-steps", type=int, default=20)
    ap.add_argument("--frames", type=int, default=300)
    a = ap.parse_args()
    for p, what in ((a.lmp, "LAMMPS (./scripts/build.sh)"), (a.model, "the deployed model (run the main job)"),
                    (a.test_npz, "the test trajectory (run the main job)")):
        if not p.exists():
            sys.exit(f"{p} not found: it is made by {what}")
    a.out.mkdir(parents=True, exist_ok=True)

    dq = ["pair_style deqformer {m} reuse {r}", "pair_coeff * * H C O"]
    variants = [Variant("deqformer_f64_reuse", a.lmp, [dq[0].format(m=a.model, r="yes"), dq[1]], "in.aspirin",
                        ["-var", "reuse", "yes"], a.model),
                Variant("deqformer_f64_cold", a.lmp, [dq[0].format(m=a.model, r="no"), dq[1]], "in.aspirin",
                        ["-var", "reuse", "no"], a.model)]
    if a.model_f32.exists():
        variants.append(Variant("deqformer_f32_reuse", a.lmp, [dq[0].format(m=a.model_f32, r="yes"), dq[1]],
                                "in.aspirin", ["-var", "reuse", "yes"], a.model_f32))
    notes = []
    if a.allegro_lmp and a.allegro_model:
        if not (a.allegro_lmp.exists() and a.allegro_model.exists()):
            sys.exit(f"--allegro-lmp {a.allegro_lmp} / --allegro-model {a.allegro_model}: not found")
        variants.append(Variant("allegro", a.allegro_lmp, ["newton on", "pair_style allegro",
                                                          f"pair_coeff * * {a.allegro_model} H C O"],
                                "in.aspirin_allegro", [], a.allegro_model))
    else:
        notes.append("Allegro: not compared (no --allegro-lmp / --allegro-model given: this machine has no "
                     "LAMMPS with pair_allegro); see the README section 'Comparing with Allegro'.")

    dump = a.out / "test_frames.lammpstrj"
    e_ref, f_ref = write_test_dump(a.test_npz, dump, a.frames)
    results = {}
    for v in variants:
        print(f"{v.name}: held-out accuracy ({len(e_ref)} frames)...", flush=True)
        r = {"model": str(v.model)}
        r.update(accuracy(v, a.out, dump, e_ref, f_ref))
        print(f"{v.name}: molecule MD ({a.nvt} NVT + {a.nve} NVE steps)...", flush=True)
        r.update(molecule_md(v, a.out, a.nvt, a.nve, a.test_npz))
        print(f"{v.name}: 27-molecule box on 2 ranks ({a.box_steps} steps)...", flush=True)
        r.update(box_speed(v, a.out, a.box_steps))
        results[v.name] = r
        print(json.dumps({k: x for k, x in r.items() if not isinstance(x, dict)}), flush=True)

    cols = [("variant", None), ("E MAE (meV)", "e_mae_meV"), ("F MAE (meV/Å)", "f_mae_meV_A"),
            ("F RMSE (meV/Å)", "f_rmse_meV_A"), ("1 molecule atom-steps/s", "molecule_atom_steps_per_s"),
            ("box (567 atoms, 2 ranks) atom-steps/s", "box_atom_steps_per_s"),
            ("NVE drift (meV/atom/ps)", "nve_drift_meV_atom_ps"), ("NVE max |ΔE| (meV)", "nve_max_dev_meV"),
            ("bond-length overlap with reference", "bond_overlap_mean"), ("iterations fwd/adj", None)]
    lines = ["| " + " | ".join(c for c, _ in cols) + " |", "|" + "---|" * len(cols)]
    with open(a.out / "comparison.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["variant"] + [k for _, k in cols[1:-1]] + ["iters_fwd", "iters_adj"])
        for name, r in results.items():
            cells = [name] + [f"{r[k]:.4g}" for _, k in cols[1:-1]]
            it = "–" if name == "allegro" else f"{r['iters_fwd']:.1f}/{r['iters_adj']:.1f}"
            lines.append("| " + " | ".join(cells + [it]) + " |")
            w.writerow([name] + [r[k] for _, k in cols[1:-1]] + [r["iters_fwd"], r["iters_adj"]])
    table = "\n".join(lines)
    text = (f"# aspirin: deqformer vs the rest\n\n{len(e_ref)} frames of the unseen test trajectory (rerun in "
            f"LAMMPS); molecule: {a.nvt} NVT + {a.nve} NVE steps of 0.5 fs, speed from the NVE part (1 rank); "
            f"box: {a.box_steps} NVE steps on 2 ranks. Bond-length overlap: mean over bond types of the "
            f"overlap of the MD and reference histograms (1 = identical).\n\n{table}\n\n" +
            "".join(f"- {n}\n" for n in notes))
    (a.out / "comparison.md").write_text(text)
    (a.out / "comparison.json").write_text(json.dumps(results, indent=1))
    print(text)


if __name__ == "__main__":
    main()
