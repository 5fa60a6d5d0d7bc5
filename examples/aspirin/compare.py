#!/usr/bin/env python3
"""Side-by-side comparison of aspirin potentials in LAMMPS: deqformer (float64/float32, reuse of the
previous fixed point on/off) and, when given, Allegro.

Every variant is measured the same way, through LAMMPS, on the same frames and inputs:
  * held-out accuracy: `rerun` of frames of the unseen test trajectory -> energy and force MAE;
  * one molecule: NVT at 500 K then NVE (0.5 fs steps); speed from the NVE part (1 rank), NVE drift and
    largest deviation of the total energy, solver iterations, bond lengths against a reference NVE run
    (GFN2-xTB from the main job's microstate, out/xtb_nve.npz, when present);
  * the dense 27-molecule box (567 atoms) on 1 and 2 ranks: speed. A potential that blows the box up
    (a model trained on single molecules can) is timed with the atoms held in place, and the table says so;
    so is the molecule of a potential whose MD tears the molecule apart (fewer pairs would make it faster).
Every run uses one thread per MPI rank. Out: OUT/comparison.md, .csv, .json and comparison.png.

    .venv/bin/python compare.py                                   # deqformer variants only
    .venv/bin/python compare.py --allegro-dir ALLEGRO_VENV        # + Allegro (model: out/allegro/allegro.pth)
    .venv/bin/python compare.py --allegro-lmp LMP --allegro-plugin allegroplugin.so --allegro-model allegro.pth

ALLEGRO_VENV is a folder made by Allegro's setup (README, "Comparing with Allegro"); train_allegro.py
trains its model by the same rules as the main job's. Run lengths: --nvt/--nve/--box-steps/--frames.
"""
import argparse
import csv
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from analysis import LAMMPS_TYPES, geometry_samples, read_lammpstrj  # noqa: E402
from lammps_runs import FROZEN, last_loop, run_lammps  # noqa: E402

BOX_LENGTH = 30.0     # aspirin_1.data: one molecule in a 30 Å periodic box
MOLECULE = HERE / "data/aspirin_1.data"
DENSE_BOX = HERE / "data/aspirin_27.data"
ALLEGRO_ABSENT = ("Allegro: not compared (no Allegro given). To add it: set up Allegro "
                  "(README, 'Comparing with Allegro') and run compare.py --allegro-dir ALLEGRO_VENV, "
                  "or the main job with ALLEGRO_DIR=ALLEGRO_VENV.")

MD_INPUT = """units metal
atom_style atomic
boundary p p p
read_data {data}
{pair}
thermo_style custom step time temp pe ke etotal {iter_cols}
thermo_modify format float %.10g
thermo 100
timestep 0.0005
velocity all create 500.0 {seed} mom yes rot yes dist gaussian
fix thermostat all nvt temp 500.0 500.0 0.05
fix log all print 10 "$(step) $(time) $(temp) $(pe) $(ke) $(etotal) {iter_vars}" file {work}/md_{tag}_nvt.dat screen no title "# step time temp pe ke etotal fwd_iters adj_iters"
run {nvt}
unfix thermostat
unfix log
fix integrate all nve
fix log all print 10 "$(step) $(time) $(temp) $(pe) $(ke) $(etotal) {iter_vars}" file {work}/md_{tag}_nve.dat screen no title "# step time temp pe ke etotal fwd_iters adj_iters"
dump traj all custom 2 {work}/md_{tag}.lammpstrj id type x y z
dump_modify traj sort id
run {nve}
"""

BOX_INPUT = """units metal
atom_style atomic
boundary p p p
read_data {data}
{pair}
neighbor 1.0 bin
neigh_modify every 1 delay 0 check yes
{motion}
timestep 0.0005
thermo_style custom step temp pe
thermo_modify format float %.10g
thermo {steps}
run {warmup}
run {steps}
"""
MOVING = "velocity all create 500.0 87287 mom yes rot yes dist gaussian\nfix nve all nve"


@dataclass
class Variant:
    name: str
    lmp: Path
    pair_lines: List[str]
    model: Path
    dtype: str
    reuse: Optional[bool]            # None: no fixed point (Allegro)
    parameters: Optional[int] = None
    training_min: Optional[float] = None
    notes: List[str] = field(default_factory=list)

    @property
    def has_solver(self) -> bool:
        return self.reuse is not None


def load_trajectory(npz: Path):
    """(atomic numbers, positions[frames, atoms, 3], energies or None, forces or None) of an npz in the
    rMD17 layout (nuclear_charges/coords/energies/forces) or xtb_reference.py's (z/pos)."""
    d = np.load(npz)
    if "nuclear_charges" in d:
        return d["nuclear_charges"], d["coords"], d["energies"], d["forces"]
    if "z" in d and "pos" in d:
        return d["z"], d["pos"], None, None
    raise SystemExit(f"{npz}: expected keys nuclear_charges/coords/energies/forces or z/pos, got {list(d)}")


def write_test_dump(npz: Path, path: Path, frames: int):
    z, pos, energies, forces = load_trajectory(npz)
    if energies is None:
        raise SystemExit(f"{npz} has no energies/forces: --test-npz must be a labelled trajectory")
    sel = np.linspace(0, len(pos) - 1, min(frames, len(pos))).astype(int)
    inv = {v: k for k, v in LAMMPS_TYPES.items()}
    with open(path, "w") as f:
        for n, k in enumerate(sel):
            f.write(f"ITEM: TIMESTEP\n{n}\nITEM: NUMBER OF ATOMS\n{len(z)}\nITEM: BOX BOUNDS pp pp pp\n")
            f.write(f"0 {BOX_LENGTH}\n" * 3)
            f.write("ITEM: ATOMS id type x y z\n")
            for i, (zi, r) in enumerate(zip(z, pos[k])):
                f.write(f"{i + 1} {inv[int(zi)]} {r[0]:.10f} {r[1]:.10f} {r[2]:.10f}\n")
    return np.asarray(energies).reshape(-1)[sel], forces[sel]


def accuracy(v: Variant, work: Path, dump: Path, e_ref, f_ref) -> Dict[str, float]:
    inp = work / f"in.rerun_{v.name}"
    fdump = work / f"forces_{v.name}.dump"
    inp.write_text("\n".join([
        "units metal", "atom_style atomic", "boundary p p p", f"read_data {MOLECULE}", *v.pair_lines,
        "thermo_style custom step pe", "thermo_modify format float %.12g norm no", "thermo 1",
        f"dump f all custom 1 {fdump} id fx fy fz", "dump_modify f sort id format float %.12g",
        f"rerun {dump} dump x y z box no"]) + "\n")
    text = run_lammps(v.lmp, inp, work / f"log.rerun_{v.name}", cwd=inp.parent)
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
        blocks = fh.read().split("ITEM: ATOMS id fx fy fz\n")[1:]
    for block in blocks:
        rows = np.array([r.split() for r in block.strip().splitlines()[:n]], dtype=float)
        forces.append(rows[np.argsort(rows[:, 0])][:, 1:4])
    pe, forces = np.array(pe[-len(e_ref):]), np.array(forces)
    if len(pe) != len(e_ref) or forces.shape != f_ref.shape:
        raise RuntimeError(f"{v.name}: rerun gave {len(pe)} energies / forces {forces.shape}, expected "
                           f"{len(e_ref)} / {f_ref.shape}")
    return {"e_mae_meV": float(1e3 * np.abs(pe - e_ref).mean()),
            "f_mae_meV_A": float(1e3 * np.abs(forces - f_ref).mean()),
            "f_rmse_meV_A": float(1e3 * np.sqrt(((forces - f_ref) ** 2).mean()))}


def bond_statistics(md: Dict[str, np.ndarray], ref: Dict[str, np.ndarray]) -> Dict[str, object]:
    """Per bond type: spread (std) of the MD against the reference's, and the shift of the mean."""
    per = {}
    for k in md:
        if "angle" in k or len(md[k]) == 0 or len(ref.get(k, [])) == 0:
            continue
        per[k] = {"md_mean_A": float(md[k].mean()), "ref_mean_A": float(ref[k].mean()),
                  "md_std_A": float(md[k].std()), "ref_std_A": float(ref[k].std()),
                  "std_ratio": float(md[k].std() / ref[k].std()),
                  "mean_shift_A": float(md[k].mean() - ref[k].mean())}
    ratios = [b["std_ratio"] for b in per.values()]
    return {"bonds": per, "spread_ratio_min": float(min(ratios)), "spread_ratio_max": float(max(ratios)),
            "mean_shift_max_A": float(max(abs(b["mean_shift_A"]) for b in per.values())),
            "oh_spread_A": per.get("H-O", {}).get("md_std_A", float("nan")),
            "oh_spread_ref_A": per.get("H-O", {}).get("ref_std_A", float("nan"))}


def molecule_md(v: Variant, work: Path, nvt: int, nve: int, ref_z, ref_pos) -> Dict[str, object]:
    inp = work / f"in.md_{v.name}"
    iter_cols, iter_vars = ("c_solver[1] c_solver[2]", "$(c_solver[1]) $(c_solver[2])") if v.has_solver \
        else ("", "0 0")
    pair = "\n".join(v.pair_lines + (["compute solver all deqformer/solver"] if v.has_solver else []))
    inp.write_text(MD_INPUT.format(data=MOLECULE, pair=pair, iter_cols=iter_cols, iter_vars=iter_vars,
                                   seed=4928459, work=work, tag=v.name, nvt=nvt, nve=nve))
    text = run_lammps(v.lmp, inp, work / f"log.md_{v.name}", cwd=inp.parent)
    loop, steps, atoms = last_loop(text)
    nve_dat = np.loadtxt(work / f"md_{v.name}_nve.dat", comments="#", ndmin=2)
    nvt_dat = np.loadtxt(work / f"md_{v.name}_nvt.dat", comments="#", ndmin=2)
    t, et = nve_dat[:, 1], nve_dat[:, 5]
    slope = np.polyfit(t, et, 1)[0] if len(t) > 2 else float("nan")
    both = np.concatenate([nvt_dat[1:], nve_dat[1:]])
    res = {"molecule_atom_steps_per_s": atoms * steps / loop, "nve_ps": float(t[-1] - t[0]),
           "nve_drift_meV_atom_ps": float(1e3 * slope / atoms),
           "nve_max_dev_meV": float(1e3 * np.abs(et - et[0]).max()),
           "iters_fwd": float(both[:, 6].mean()) if v.has_solver else None,
           "iters_adj": float(both[:, 7].mean()) if v.has_solver else None}
    traj, types = read_lammpstrj(str(work / f"md_{v.name}.lammpstrj"))
    zl = np.array([LAMMPS_TYPES[int(x)] for x in types])
    res.update(bond_statistics(geometry_samples(zl, traj, ref_pos[0]), geometry_samples(ref_z, ref_pos, ref_pos[0])))
    why = molecule_blew_up(np.concatenate([nvt_dat[:, 2], nve_dat[:, 2]]), res["spread_ratio_max"])
    if why:
        # a molecule that flew apart has fewer pairs within the cutoff, and runs faster for it: time the
        # intact molecule held in place instead (the NVE and bond columns keep what the MD did)
        res["molecule_frozen"], res["molecule_frozen_because"] = True, why
        inp = work / f"in.molecule_held_{v.name}"
        inp.write_text(BOX_INPUT.format(data=MOLECULE, pair="\n".join(["newton on"] + v.pair_lines), motion=FROZEN,
                                        steps=max(nve, 100), warmup=20))
        loop, n, natoms = last_loop(run_lammps(v.lmp, inp, work / f"log.molecule_held_{v.name}", cwd=inp.parent))
        res["molecule_atom_steps_per_s"] = natoms * n / loop
    return res


def molecule_blew_up(temperatures: np.ndarray, spread_ratio_max: float) -> Optional[str]:
    """Why the molecule's MD is not a molecule any more, or None."""
    if not np.isfinite(temperatures).all():
        return "non-finite temperature"
    if temperatures.max() > 5000.0:
        return f"temperature up to {temperatures.max():.0f} K"
    if spread_ratio_max > 5.0:
        return f"bond-length spreads up to {spread_ratio_max:.0f}x the reference's"
    return None


def blew_up(text: str) -> Optional[str]:
    if re.search(r"Lost atoms|Out of range atoms|ERROR", text):
        return "atoms lost"
    for line in text.splitlines():
        s = line.split()
        if len(s) == 3 and s[0].isdigit() and any(x.lower() in ("nan", "-nan", "inf", "-inf") for x in s[1:]):
            return "non-finite energy"
        if len(s) == 3 and s[0].isdigit():
            try:
                if float(s[1]) > 5000.0:        # K: the box has flown apart
                    return f"temperature {float(s[1]):.0f} K"
            except ValueError:
                pass
    return None


def box_speed(v: Variant, work: Path, ranks: int, steps: int, warmup: int) -> Dict[str, object]:
    """Atom-steps/s of the dense box; moving atoms, or held in place if the potential blows the box up."""
    key = f"box_r{ranks}"
    moving_failure = None
    for motion, frozen in ((MOVING, False), (FROZEN, True)):
        inp = work / f"in.{key}_{v.name}"
        inp.write_text(BOX_INPUT.format(data=DENSE_BOX, pair="\n".join(["newton on"] + v.pair_lines),
                                        motion=motion, steps=steps, warmup=warmup))
        why = None
        try:
            text = run_lammps(v.lmp, inp, work / f"log.{key}_{v.name}", ranks=ranks, cwd=inp.parent)
            why = blew_up(text)
        except RuntimeError as e:
            if frozen:
                raise
            why = "LAMMPS stopped: " + (str(e).strip().splitlines() or ["?"])[-1][:120]
        if why is None:
            loop, n, atoms = last_loop(text)
            res = {f"{key}_atom_steps_per_s": atoms * n / loop, f"{key}_frozen": frozen}
            if frozen:
                res[f"{key}_frozen_because"] = moving_failure
            return res
        if frozen:
            raise RuntimeError(f"{v.name}: the dense box fails even with atoms held in place: {why}")
        moving_failure = why
    raise AssertionError("unreachable")


def deqformer_facts(model: Path, train_dir: Path):
    """Parameter count of a deployed deqformer model and the wall time of its training run (minutes)."""
    params = None
    try:
        import torch
        params = int(sum(p.numel() for p in torch.jit.load(str(model), map_location="cpu").parameters()))
    except Exception:                       # noqa: BLE001 - a missing count is shown as '–'
        pass
    minutes = None
    metrics = train_dir / "metrics_epoch.csv"
    if metrics.exists():
        rows = list(csv.DictReader(open(metrics)))
        if rows and "wall_time_s" in rows[-1]:
            minutes = float(rows[-1]["wall_time_s"]) / 60
    return params, minutes


def allegro_variant(a, lmp_default: Path) -> Optional[Variant]:
    if not (a.allegro_dir or a.allegro_lmp or a.allegro_plugin or a.allegro_model):
        return None
    plugin = a.allegro_plugin or (a.allegro_dir / "allegroplugin.so" if a.allegro_dir else None)
    model = a.allegro_model or HERE / "out/allegro/allegro.pth"
    lmp = a.allegro_lmp or lmp_default
    for p, what in ((lmp, "--allegro-lmp: a LAMMPS 4Feb2025 with PLUGIN (build/bin/lmp-4Feb2025)"),
                    (model, "--allegro-model (train one: train_allegro.py --allegro-dir ALLEGRO_VENV)")):
        if not Path(p).exists():
            raise SystemExit(f"{p} not found: {what}")
    if plugin is not None and not Path(plugin).exists():
        raise SystemExit(f"{plugin} not found: build the plugin with Allegro's setup.sh VENV LAMMPS_SRC LAMMPS_BUILD")
    info_path = Path(model).parent / "train_info.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    style = a.allegro_style or ("allegro6464" if info.get("dtype") == "float64" else "allegro3232")
    lines = ([f"plugin load {Path(plugin).resolve()}"] if plugin else []) + \
        ["newton on", f"pair_style {style}", f"pair_coeff * * {Path(model).resolve()} H C O"]
    return Variant("allegro", Path(lmp), lines, Path(model), info.get("dtype", "float32"), None,
                   info.get("parameters"), info["training_wall_s"] / 60 if "training_wall_s" in info else None)


def fmt(x, spec=".3g"):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return format(x, spec)


COLUMNS = [  # header, key in the results, format
    ("variant", "name", "s"), ("dtype", "dtype", "s"), ("reuse", "reuse", "s"), ("parameters", "parameters", "d"),
    ("training (min)", "training_min", ".1f"), ("E MAE (meV)", "e_mae_meV", ".1f"),
    ("F MAE (meV/Å)", "f_mae_meV_A", ".1f"), ("1 molecule (atom-steps/s)", "molecule_atom_steps_per_s", ".0f"),
    ("box 567, 1 rank", "box_r1_atom_steps_per_s", ".0f"), ("box 567, 2 ranks", "box_r2_atom_steps_per_s", ".0f"),
    ("NVE drift (meV/atom/ps)", "nve_drift_meV_atom_ps", ".2g"), ("NVE max |ΔE| (meV)", "nve_max_dev_meV", ".2g"),
    ("O–H spread (Å)", "oh_spread_A", ".3f"), ("bond spread / reference", "spread_range", "s"),
    ("max |Δ mean bond| (Å)", "mean_shift_max_A", ".3f"), ("iterations fwd/adj", "iterations", "s"),
]


def table_rows(results: Dict[str, dict]) -> List[List[str]]:
    rows = []
    for name, r in results.items():
        r = dict(r, name=name, reuse="–" if r["reuse"] is None else ("yes" if r["reuse"] else "no"),
                 spread_range=f"{r['spread_ratio_min']:.2f}–{r['spread_ratio_max']:.2f}",
                 iterations="–" if r["iters_fwd"] is None else f"{r['iters_fwd']:.1f}/{r['iters_adj']:.1f}")
        cells = []
        for _, key, spec in COLUMNS:
            val = r.get(key)
            cell = val if spec == "s" else fmt(val, spec)
            if key.endswith("atom_steps_per_s") and r.get(key.replace("atom_steps_per_s", "frozen")):
                cell += " (held in place)"
            cells.append(str(cell))
        rows.append(cells)
    return rows


def plot(results: Dict[str, dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(results)
    x = np.arange(len(names))
    colors = ["tab:red" if n == "allegro" else "tab:blue" for n in names]
    fig, ax = plt.subplots(2, 2, figsize=(11, 7.5))
    panels = [(ax[0, 0], (("f_mae_meV_A", "force (meV/Å)"), ("e_mae_meV", "energy (meV)")), "held-out MAE"),
              (ax[0, 1], (("molecule_atom_steps_per_s", "1 rank"),), "1 molecule (atom-steps/s)"),
              (ax[1, 0], (("box_r1_atom_steps_per_s", "1 rank"), ("box_r2_atom_steps_per_s", "2 ranks")),
               "dense box, 567 atoms (atom-steps/s)"),
              (ax[1, 1], (("oh_spread_A", "MD"),), "O–H length spread in NVE (Å)")]
    for a_, series, title in panels:
        width = 0.8 / len(series)
        for k, (key, label) in enumerate(series):
            xs = x - 0.4 + width * (k + 0.5)
            vals = [results[n].get(key) or 0.0 for n in names]
            a_.bar(xs, vals, width, color=colors, alpha=1.0 - 0.45 * k, label=label)
            for xi, v, n in zip(xs, vals, names):
                held = key.endswith("atom_steps_per_s") and results[n].get(key.replace("atom_steps_per_s", "frozen"))
                a_.annotate(f"{v:.3g}" + ("\nheld" if held else ""), (xi, v), ha="center", va="bottom", fontsize=7)
        a_.set_xticks(x, [n.replace("deqformer_", "") for n in names], rotation=20, fontsize=8)
        a_.set_title(title, fontsize=10)
        if len(series) > 1:
            a_.legend(fontsize=8)
    ref = next(iter(results.values())).get("oh_spread_ref_A")
    if ref:
        ax[1, 1].axhline(ref, color="k", ls="--", lw=1, label=f"reference {ref:.3f} Å")
        ax[1, 1].legend(fontsize=8)
    fig.suptitle("aspirin: deqformer (blue) vs Allegro (red), same frames and inputs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=HERE / "out")
    ap.add_argument("--lmp", type=Path, default=None, help="LAMMPS for the deqformer rows (default: the Allegro "
                    "LAMMPS when Allegro is compared, so that every row runs the same binary; else build/bin/lmp)")
    ap.add_argument("--model", type=Path, default=HERE / "out/aspirin.pt", help="deployed deqformer, float64")
    ap.add_argument("--model-f32", type=Path, default=HERE / "out/aspirin_f32.pt")
    ap.add_argument("--train-dir", type=Path, default=HERE / "out/train", help="the deqformer training run")
    ap.add_argument("--allegro-dir", type=Path, default=None, help="a venv made by Allegro's setup.sh "
                    "(its allegroplugin.so is loaded)")
    ap.add_argument("--allegro-lmp", type=Path, default=None, help="LAMMPS for Allegro (default build/bin/lmp-4Feb2025)")
    ap.add_argument("--allegro-plugin", type=Path, default=None, help="pair_allegro plugin (default ALLEGRO_DIR/allegroplugin.so)")
    ap.add_argument("--allegro-model", type=Path, default=None, help="deployed Allegro (default out/allegro/allegro.pth)")
    ap.add_argument("--allegro-style", default=None, help="allegro3232 (float32 model, default) or allegro6464")
    ap.add_argument("--test-npz", type=Path, default=HERE / "out/data/aspirin_test_md.npz")
    ap.add_argument("--reference", type=Path, default=HERE / "out/xtb_nve.npz",
                    help="reference NVE trajectory for the bonds (default the main job's GFN2-xTB run; "
                    "the test trajectory if absent)")
    ap.add_argument("--nvt", type=int, default=1000)
    ap.add_argument("--nve", type=int, default=4000)
    ap.add_argument("--box-steps", type=int, default=10)
    ap.add_argument("--box-warmup", type=int, default=3)
    ap.add_argument("--frames", type=int, default=300)
    a = ap.parse_args()

    allegro = allegro_variant(a, ROOT / "build/bin/lmp-4Feb2025")
    lmp = a.lmp or (allegro.lmp if allegro else ROOT / "build/bin/lmp")
    for p, what in ((lmp, "LAMMPS (./scripts/build.sh)"), (a.model, "the deployed model (run the main job)"),
                    (a.test_npz, "the test trajectory (run the main job)")):
        if not p.exists():
            raise SystemExit(f"{p} not found: it is made by {what}")
    out = a.out.resolve()
    work = out / "compare"
    work.mkdir(parents=True, exist_ok=True)

    params, minutes = deqformer_facts(a.model, a.train_dir)
    variants = []
    for dtype, model in (("float64", a.model), ("float32", a.model_f32)):
        if not model.exists():
            continue
        for reuse in (True, False):
            name = f"deqformer_f{dtype[-2:]}_{'reuse' if reuse else 'cold'}"
            lines = [f"pair_style deqformer {model.resolve()} reuse {'yes' if reuse else 'no'} threads 1",
                     "pair_coeff * * H C O"]
            variants.append(Variant(name, lmp, lines, model, dtype, reuse, params, minutes))
    notes = []
    if allegro:
        variants.append(allegro)
    else:
        notes.append(ALLEGRO_ABSENT)

    ref_path = a.reference if a.reference.exists() else a.test_npz
    ref_z, ref_pos, _, _ = load_trajectory(ref_path)
    if ref_path == a.test_npz:
        notes.append(f"Bond reference: the test trajectory ({a.reference} not found: the main job makes it with "
                     "xtb_reference.py); its O–H spread is narrowed by the data's thermostat (docs/design.md).")
    dump = work / "test_frames.lammpstrj"
    e_ref, f_ref = write_test_dump(a.test_npz, dump, a.frames)

    results = {}
    for v in variants:
        r = {"model": str(v.model), "dtype": v.dtype, "reuse": v.reuse, "parameters": v.parameters,
             "training_min": v.training_min}
        print(f"{v.name}: held-out accuracy ({len(e_ref)} frames)", flush=True)
        r.update(accuracy(v, work, dump, e_ref, f_ref))
        print(f"{v.name}: one molecule, {a.nvt} NVT + {a.nve} NVE steps", flush=True)
        r.update(molecule_md(v, work, a.nvt, a.nve, ref_z, ref_pos))
        for ranks in (1, 2):
            print(f"{v.name}: dense box, {ranks} rank(s), {a.box_steps} steps", flush=True)
            r.update(box_speed(v, work, ranks, a.box_steps, a.box_warmup))
        results[v.name] = r
        if r.get("molecule_frozen"):
            notes.append(f"{v.name}: the molecule flew apart in MD at 500 K ({r['molecule_frozen_because']}); its "
                         "speed is timed with the atoms held in place, its NVE and bond columns are those of "
                         "the MD.")
        for ranks in (1, 2):
            if r.get(f"box_r{ranks}_frozen"):
                notes.append(f"{v.name}: the dense box on {ranks} rank(s) is timed with the atoms held in place "
                             f"(moving, it blew up: {r[f'box_r{ranks}_frozen_because']}); its cost does not "
                             "depend on motion.")

    if allegro:
        al = results["allegro"]
        for name, r in results.items():
            if name != "allegro":
                r["speed_vs_allegro"] = {k: r[k] / al[k] for k in ("molecule_atom_steps_per_s",
                                         "box_r1_atom_steps_per_s", "box_r2_atom_steps_per_s")}
    header = [c for c, _, _ in COLUMNS]
    rows = table_rows(results)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(c) + " |" for c in rows]
    ratio_lines = [f"- {n}: speed / Allegro's = molecule {s['molecule_atom_steps_per_s']:.2f}×, box 1 rank "
                   f"{s['box_r1_atom_steps_per_s']:.2f}×, box 2 ranks {s['box_r2_atom_steps_per_s']:.2f}×\n"
                   for n, r in results.items() if (s := r.get("speed_vs_allegro"))]
    settings = {"frames": len(e_ref), "test_npz": str(a.test_npz), "reference": str(ref_path), "nvt": a.nvt,
                "nve": a.nve, "box_steps": a.box_steps, "lmp": str(lmp)}
    text = (f"# aspirin: deqformer and Allegro side by side\n\n"
            f"Held-out accuracy: LAMMPS `rerun` of {len(e_ref)} frames of the unseen test trajectory. One "
            f"molecule: {a.nvt} NVT (500 K) + {a.nve} NVE steps of 0.5 fs; speed from the NVE part on 1 rank, "
            f"NVE drift and largest |ΔE| over the NVE part. Bonds: spread (std) of each bond type's length in "
            f"the MD divided by the reference's ({ref_path.name}); O–H reference spread "
            f"{results[next(iter(results))]['oh_spread_ref_A']:.3f} Å. Dense box: 567 atoms, {a.box_steps} steps "
            f"on 1 and 2 MPI ranks. One thread per rank everywhere; speeds in atom-steps/s.\n\n"
            + "\n".join(lines) + "\n\n" + "".join(ratio_lines) + "".join(f"- {n}\n" for n in notes))
    write_atomic(out / "comparison.md", text)
    with open(out / "comparison.csv.tmp", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    os.replace(out / "comparison.csv.tmp", out / "comparison.csv")
    write_atomic(out / "comparison.json", json.dumps({"settings": settings, "notes": notes, "results": results},
                                                     indent=1))
    plot(results, out / "comparison.png")
    print(text)


if __name__ == "__main__":
    main()
