"""examples/aspirin/compare.py end to end on a tiny budget (deqformer only, through LAMMPS), and its
pieces: the bond statistics, the blow-up detection, the Allegro options."""
import csv
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from deqformer.deploy import deploy
from modelkit import tiny_model

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
EXAMPLE = os.path.join(ROOT, "examples", "aspirin")
LMP = os.path.join(ROOT, "build", "bin", "lmp")
sys.path.insert(0, EXAMPLE)
import compare  # noqa: E402

HEADER = ["variant", "dtype", "reuse", "parameters", "training (min)", "E MAE (meV)", "F MAE (meV/Å)",
          "1 molecule (atom-steps/s)", "box 567, 1 rank", "box 567, 2 ranks", "NVE drift (meV/atom/ps)",
          "NVE max |ΔE| (meV)", "O–H spread (Å)", "bond spread / reference", "max |Δ mean bond| (Å)",
          "iterations fwd/adj"]


def test_header_is_the_documented_one():
    assert [c for c, _, _ in compare.COLUMNS] == HEADER


def test_bond_statistics_ratio_and_shift():
    rng = np.random.default_rng(0)
    ref = {"H-O": 0.97 + 0.04 * rng.standard_normal(20000), "C-C": 1.40 + 0.03 * rng.standard_normal(20000),
           "C-C-C angle": np.full(10, 120.0)}
    md = {"H-O": 0.975 + 0.02 * rng.standard_normal(20000), "C-C": 1.40 + 0.03 * rng.standard_normal(20000),
          "C-C-C angle": np.full(10, 119.0)}
    s = compare.bond_statistics(md, ref)
    assert set(s["bonds"]) == {"H-O", "C-C"}
    assert s["bonds"]["H-O"]["std_ratio"] == pytest.approx(0.5, rel=0.03)
    assert s["spread_ratio_min"] == pytest.approx(0.5, rel=0.03)
    assert s["spread_ratio_max"] == pytest.approx(1.0, rel=0.03)
    assert s["mean_shift_max_A"] == pytest.approx(0.005, abs=0.001)
    assert s["oh_spread_A"] == pytest.approx(0.02, rel=0.03) and s["oh_spread_ref_A"] == pytest.approx(0.04, rel=0.03)


def test_blow_up_detection():
    ok = "Step Temp PotEng\n0 500 -10.0\n10 480 -9.9\nLoop time of 1.0 on 1 procs for 10 steps with 567 atoms\n"
    assert compare.blew_up(ok) is None
    assert compare.blew_up(ok.replace("480", "90000")) == "temperature 90000 K"
    assert compare.blew_up(ok.replace("-9.9", "nan")) == "non-finite energy"
    assert compare.blew_up("ERROR: Lost atoms: original 567 current 560") == "atoms lost"


def test_molecule_blow_up_detection():
    assert compare.molecule_blew_up(np.array([480.0, 510.0, 530.0]), 1.2) is None
    assert compare.molecule_blew_up(np.array([480.0, 9000.0]), 1.2) == "temperature up to 9000 K"
    assert compare.molecule_blew_up(np.array([480.0, np.nan]), 1.2) == "non-finite temperature"
    assert "spreads up to 40x" in compare.molecule_blew_up(np.array([480.0, 600.0]), 40.0)


def test_missing_allegro_model_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["compare.py", "--out", str(tmp_path), "--allegro-dir", str(tmp_path),
                                      "--allegro-lmp", sys.executable,
                                      "--allegro-model", str(tmp_path / "none.pth")])
    with pytest.raises(SystemExit, match="none.pth not found.*train_allegro.py"):
        compare.main()


@pytest.mark.skipif(not os.path.exists(LMP), reason=f"{LMP} not built (./scripts/build.sh)")
def test_compare_end_to_end_without_allegro(tmp_path):
    model = tiny_model(deploy_tol=1e-6, solver_tol=1e-6, adjoint_tol=1e-6)
    deploy(model, str(tmp_path / "m64.pt"), torch.float64)
    deploy(model, str(tmp_path / "m32.pt"), torch.float32)
    src = np.load(os.path.join(ROOT, "tests", "data", "aspirin_5_rmd17.npz"))
    np.savez(tmp_path / "test.npz", **{k: src[k] for k in ("nuclear_charges", "coords", "energies", "forces")})
    out = tmp_path / "out"
    cmd = [sys.executable, os.path.join(EXAMPLE, "compare.py"), "--out", str(out), "--model", str(tmp_path / "m64.pt"),
           "--model-f32", str(tmp_path / "m32.pt"), "--train-dir", str(tmp_path / "no_training"),
           "--test-npz", str(tmp_path / "test.npz"), "--reference", str(tmp_path / "no_reference.npz"),
           "--frames", "3", "--nvt", "10", "--nve", "20", "--box-steps", "1", "--box-warmup", "1"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]

    md = (out / "comparison.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert [c.strip() for c in table[0].strip("|").split(" | ")] == HEADER
    names = [row.strip("|").split(" | ")[0].strip() for row in table[1:]]
    assert names == ["deqformer_f64_reuse", "deqformer_f64_cold", "deqformer_f32_reuse", "deqformer_f32_cold"]
    absent = [line for line in md.splitlines() if line.startswith("- Allegro: not compared")]
    assert len(absent) == 1 and "--allegro-dir" in absent[0] and "ALLEGRO_DIR" in absent[0]
    assert "Bond reference: the test trajectory" in md

    with open(out / "comparison.csv") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == HEADER and len(rows) == 5

    data = json.loads((out / "comparison.json").read_text())
    assert data["settings"]["frames"] == 3 and data["notes"][0].startswith("Allegro: not compared")
    for name, r in data["results"].items():
        for key in ("e_mae_meV", "f_mae_meV_A", "molecule_atom_steps_per_s", "box_r1_atom_steps_per_s",
                    "box_r2_atom_steps_per_s", "nve_max_dev_meV", "oh_spread_A", "iters_fwd", "iters_adj"):
            assert math.isfinite(r[key]) and r[key] >= 0, (name, key, r[key])
        assert r["parameters"] == sum(p.numel() for p in model.parameters())
        assert r["training_min"] is None
    # reuse of the previous fixed point never needs more forward iterations than a cold start
    res = data["results"]
    assert res["deqformer_f64_reuse"]["iters_fwd"] <= res["deqformer_f64_cold"]["iters_fwd"]
    # float64 and float32 rows of one model agree on the held-out errors to float32 accuracy
    assert res["deqformer_f32_reuse"]["f_mae_meV_A"] == pytest.approx(res["deqformer_f64_reuse"]["f_mae_meV_A"],
                                                                      rel=1e-3)
    assert (out / "comparison.png").stat().st_size > 10000
