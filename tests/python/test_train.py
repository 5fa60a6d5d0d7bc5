"""Trainer, checkpoints, evaluation CLI and ASE calculator.

The smoke test trains the real ``deqformer.model`` (tiny settings); the stopping-rule tests use a small
pair-potential stand-in so they run in a fraction of a second.
"""
import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from deqformer import keys as K
from deqformer.cli import evaluate as evaluate_cli
from deqformer.cli import train as train_cli
from deqformer.config import ConfigError, load_config, parse_config
from deqformer.data import DataError
from deqformer.train import (CheckpointError, Trainer, TrainingError, load_checkpoint, load_model_from_checkpoint,
                             save_checkpoint)
from deqformer.train.checkpoint import decode_tree, encode_tree
from deqformer.train.trainer import csv_columns

DATA = Path(__file__).resolve().parents[1] / "data"
RMD17_MAP = {"nuclear_charges": "atomic_numbers", "coords": "pos", "energies": "total_energy", "forces": "forces"}
TINY_MODEL = {"irreps": "4x0e+2x1o+2x2e", "msg_channels": 4, "num_heads": 2, "attn_hidden": 4, "radial_hidden": 8,
              "type_embed_dim": 4, "readout_hidden": 8, "num_basis": 4, "solver_max_iter": 15}


def config_dict(tmp_path, **over):
    d = {
        "root": str(tmp_path / "runs"),
        "run_name": "smoke",
        "datasets": [
            {"name": "monomer", "dataset": "npz", "dataset_file_name": str(DATA / "aspirin_monomer_30.npz"),
             "n_train": 6, "n_val": 3},
            {"name": "dimer", "dataset": "npz", "dataset_file_name": str(DATA / "aspirin_dimer_10.npz"),
             "n_train": 2, "n_val": 1},
        ],
        "key_mapping": RMD17_MAP,
        "npz_fixed_field_keys": ["atomic_numbers"],
        "chemical_symbols": ["H", "C", "O"],
        "r_max": 3.5,
        "batch_size": 4,
        "validation_batch_size": 4,
        "learning_rate": 0.003,
        "max_epochs": 2,
        "seed": 5,
        "loss_coeffs": {"forces": 1.0, "total_energy": [1.0, "PerAtomMSELoss"]},
        "use_ema": True,
        "ema_decay": 0.9,
        "lr_scheduler_name": "ReduceLROnPlateau",
        "lr_scheduler_patience": 5,
        "model": dict(TINY_MODEL),
    }
    d.update(over)
    return d


def write_config(tmp_path, name="config.yaml", **over) -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(config_dict(tmp_path, **over)))
    return p


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------------------------------ stand-in model


class PairModel(torch.nn.Module):
    """E = sum_i shift[type_i] + k * sum_edges (d - d0)^2 ; forces by autograd."""

    def __init__(self, type_names, r_max, stats, dtype):
        super().__init__()
        self.shift = torch.nn.Parameter(torch.tensor(stats["energy_per_atom_shift"], dtype=dtype))
        self.k = torch.nn.Parameter(torch.tensor(0.1, dtype=dtype))
        self.d0 = torch.nn.Parameter(torch.tensor(1.5, dtype=dtype))

    def forward(self, batch, compute_forces=True):
        pos = batch[K.POSITIONS]
        if compute_forces:
            pos = pos.detach().requires_grad_(True)
        ei = batch[K.EDGE_INDEX]
        d = (pos[ei[1]] - pos[ei[0]] + batch[K.EDGE_SHIFT]).norm(dim=1)
        atomic = self.shift[batch[K.ATOM_TYPES]].index_add(0, ei[0], self.k * (d - self.d0) ** 2)
        energy = torch.zeros(int(batch[K.NUM_FRAMES]), dtype=pos.dtype).index_add(0, batch[K.BATCH], atomic)
        out = {"energy": energy, "atomic_energy": atomic, "solver_iters": torch.tensor(1.0),
               "solver_residual": torch.tensor(0.0)}
        if compute_forces:
            out[K.FORCES] = -torch.autograd.grad(energy.sum(), pos, create_graph=self.training)[0]
        return out

    def config_dict(self):
        return {"kind": "pair", "k": float(self.k)}


def pair_builder(model_cfg, type_names, r_max, stats, dtype):
    return PairModel(type_names, r_max, stats, dtype)


def quiet_trainer(cfg, **kw):
    kw.setdefault("model_builder", pair_builder)
    return Trainer(cfg, progress=False, log=lambda s: None, **kw)


# ------------------------------------------------------------------------------ checkpoints


def test_checkpoint_roundtrip_weights_only(tmp_path):
    t = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    payload = {"f": 1.5, "nan": math.nan, "inf": -math.inf, "i": 3, "s": "x", "none": None, "b": True,
               "tuple": (1, 2.5, "a"), "intkeys": {0: {"step": torch.tensor(3.0)}, 1: [t, t]},
               "nested": {"a": [1.0, {"b": t}]}, "np": np.arange(4, dtype=np.uint32), "dtype": torch.float32,
               "__dunder": 1}
    p = tmp_path / "c.pth"
    save_checkpoint(payload, p)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    raw = torch.load(p, weights_only=True)  # the file itself is weights_only-safe
    assert set(raw) == {"format", "format_version", "tensors", "meta_json"}
    back = load_checkpoint(p)
    assert back["f"] == 1.5 and math.isnan(back["nan"]) and back["inf"] == -math.inf
    assert back["tuple"] == (1, 2.5, "a") and back["dtype"] is torch.float32 and back["__dunder"] == 1
    assert torch.equal(back["intkeys"][0]["step"], torch.tensor(3.0))
    assert torch.equal(back["nested"]["a"][1]["b"], t) and back["nested"]["a"][0] == 1.0
    assert back["np"].dtype == np.uint32 and back["np"].tolist() == [0, 1, 2, 3]
    assert len(raw["tensors"]) == 2  # the same tensor object is stored once
    assert decode_tree(encode_tree({"x": 1})) == {"x": 1}


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="bad.pth"):
        load_checkpoint(bad)
    other = tmp_path / "other.pth"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(CheckpointError, match="not a deqformer checkpoint"):
        load_checkpoint(other)
    with pytest.raises(TypeError):
        encode_tree({"x": object()})


# ------------------------------------------------------------------------------ real model smoke test


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two epochs of the real model through the console entry point."""
    tmp = tmp_path_factory.mktemp("smoke")
    cfg_path = write_config(tmp)
    assert train_cli.main([str(cfg_path), "--no-progress"]) == 0
    return tmp, cfg_path, load_config(cfg_path).run_dir


def test_smoke_outputs(trained):
    tmp, cfg_path, run_dir = trained
    for name in ("last.pth", "best.pth", "metrics_epoch.csv", "config.yaml", "train.log"):
        assert (run_dir / name).is_file(), name
    rows = read_csv(run_dir / "metrics_epoch.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert list(rows[0]) == csv_columns(["monomer", "dimer"])
    for col in ("epoch", "wall_time_s", "lr", "train_loss", "train_e_mae", "train_f_mae", "val_loss", "val_e_mae",
                "val_f_mae", "val_e_rmse", "val_f_rmse", "mean_solver_iters", "val_f_mae_monomer", "val_f_mae_dimer"):
        assert math.isfinite(float(rows[-1][col])), col
    assert float(rows[0]["mean_solver_iters"]) >= 1
    ck = load_checkpoint(run_dir / "last.pth")
    assert ck["epoch"] == 2 and ck["type_names"] == ["H", "C", "O"] and ck["r_max"] == 3.5
    assert ck["energy_unit"] == "eV" and ck["length_unit"] == "Angstrom" and ck["model_dtype"] == "float64"
    assert set(ck["stats"]) >= {"energy_per_atom_shift", "force_rms"} and len(ck["stats"]["energy_per_atom_shift"]) == 3
    assert ck["model_cfg"] == TINY_MODEL and ck["model_config_dict"] is not None
    assert ck["config"]["datasets"][0]["dataset_file_name"] == str(DATA / "aspirin_monomer_30.npz")
    assert ck["ema_state"]["num_updates"] == 2 * 2  # 8 training frames / batch 4, two epochs
    assert any(not torch.equal(ck["deploy_state"][k], ck["model_state"][k]) for k in ck["model_state"])
    copied = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert copied["run_name"] == "smoke" and Path(copied["datasets"][1]["dataset_file_name"]).is_absolute()


def test_checkpoint_without_repulsion_walls_gets_them_from_its_data(trained):
    """Checkpoints written before the core repulsion existed: the walls are recomputed from the training
    split of the checkpoint's own config, and equal what training stored."""
    from deqformer.train.checkpoint import build_model_from_checkpoint, complete_statistics
    tmp, cfg_path, run_dir = trained
    ck = load_checkpoint(run_dir / "best.pth")
    walls = ck["stats"]["pair_min_dist"]
    assert len(walls) == 3 and all(len(row) == 3 for row in walls)
    assert 0.8 < walls[0][2] < 1.2 and walls[0][2] == walls[2][0]        # the O-H bond
    old = dict(ck, stats={k: v for k, v in ck["stats"].items() if k != "pair_min_dist"})
    with pytest.warns(RuntimeWarning, match="predates the core repulsion"):
        assert complete_statistics(old)["pair_min_dist"] == walls
    with pytest.warns(RuntimeWarning, match="predates"):
        m = build_model_from_checkpoint(old)
    assert torch.equal(m.repulsion.wall, load_model_from_checkpoint(run_dir / "best.pth").repulsion.wall)
    # data gone: built without the repulsion, and said so
    gone = dict(old, config=dict(old["config"], datasets=[dict(d, dataset_file_name=str(tmp / "gone.npz"))
                                                          for d in old["config"]["datasets"]]))
    with pytest.warns(RuntimeWarning, match="WITHOUT the repulsion"):
        assert "pair_min_dist" not in complete_statistics(gone)


def test_smoke_best_checkpoint_model(trained):
    tmp, cfg_path, run_dir = trained
    best = load_checkpoint(run_dir / "best.pth")
    rows = read_csv(run_dir / "metrics_epoch.csv")
    best_row = min(rows, key=lambda r: float(r["val_loss"]))
    assert best["best_epoch"] == int(best_row["epoch"])
    assert best["best_metric"] == pytest.approx(float(best_row["val_loss"]), rel=1e-8)
    model = load_model_from_checkpoint(run_dir / "best.pth")
    assert not model.training
    # the validation loss of best.pth is reproduced by re-evaluating its (EMA) weights
    tr = quiet_trainer(load_config(cfg_path), model_builder=None)
    from deqformer.data import load_datasets, make_loader
    cfg = load_config(cfg_path)
    val = make_loader(load_datasets(cfg), "val", cfg.r_max, 4)
    res = tr.validate(model, val, ["monomer", "dimer"])
    assert res["loss"] == pytest.approx(best["best_metric"], rel=1e-6)


def test_smoke_resume_is_exact_and_refuses_overwrite(trained, tmp_path):
    tmp, cfg_path, run_dir = trained
    # a second run into the same folder without --resume is refused
    assert train_cli.main([str(cfg_path), "--no-progress"]) == 1
    with pytest.raises(TrainingError, match="--resume"):
        Trainer(load_config(cfg_path), progress=False, log=lambda s: None).run()
    # resume for one more epoch ...
    assert train_cli.main([str(cfg_path), "--resume", "--max-epochs", "3", "--no-progress"]) == 0
    rows = read_csv(run_dir / "metrics_epoch.csv")
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    # ... equals three epochs without interruption
    straight = write_config(tmp_path, run_name="straight", max_epochs=3)
    assert train_cli.main([str(straight), "--no-progress"]) == 0
    rows2 = read_csv(load_config(straight).run_dir / "metrics_epoch.csv")
    for col in ("train_loss", "val_loss", "val_f_mae"):
        assert float(rows[2][col]) == pytest.approx(float(rows2[2][col]), rel=1e-9), col


def test_fine_tuning_starts_from_the_checkpoint(trained, tmp_path):
    """initial_model_state (nequip's key): a new run from a trained checkpoint's EMA weights and architecture.
    With a learning rate that cannot move the weights, its first validation loss is the checkpoint's."""
    tmp, cfg_path, run_dir = trained
    best = load_checkpoint(run_dir / "best.pth")
    still = dict(learning_rate=1e-14, max_epochs=1, lr_scheduler_name="none")
    tuned = write_config(tmp_path, run_name="tuned", initial_model_state=str(run_dir / "best.pth"),
                         model={"irreps": "8x0e"}, **still)   # a different model block: the checkpoint's is kept
    log = []
    Trainer(load_config(tuned), progress=False, log=log.append).run()
    assert any("initialised from" in line for line in log) and any("keeping the checkpoint's" in line for line in log)
    ck = load_checkpoint(load_config(tuned).run_dir / "last.pth")
    assert ck["model_cfg"] == TINY_MODEL and ck["config"]["initial_model_state"] == str(run_dir / "best.pth")
    assert ck["stats"]["pair_min_dist"] == best["stats"]["pair_min_dist"]       # same training split here
    first = float(read_csv(load_config(tuned).run_dir / "metrics_epoch.csv")[0]["val_loss"])
    assert first == pytest.approx(best["best_metric"], rel=1e-4)
    assert ck["best_metric"] == pytest.approx(best["best_metric"], rel=1e-4)
    def close(a, b):
        return all(torch.allclose(a[k], b[k], rtol=0, atol=1e-9) for k in b)
    assert close(ck["model_state"], best["deploy_state"])        # the EMA weights it started from, unmoved
    # the same run from scratch starts elsewhere
    scratch = write_config(tmp_path, name="scratch.yaml", run_name="scratch", **still)
    quiet_trainer(load_config(scratch), model_builder=None).run()
    assert not close(load_checkpoint(load_config(scratch).run_dir / "last.pth")["model_state"], best["deploy_state"])
    # other elements, or a missing file: refused with the reason
    other = write_config(tmp_path, name="other.yaml", run_name="other", initial_model_state=str(run_dir / "best.pth"),
                         chemical_symbols=["H", "O", "C"], **still)
    with pytest.raises(TrainingError, match="keeps the elements"):
        quiet_trainer(load_config(other), model_builder=None).run()
    with pytest.raises(ConfigError, match="initial_model_state"):
        load_config(write_config(tmp_path, name="gone.yaml", initial_model_state=str(tmp_path / "gone.pth")))


def test_evaluate_checkpoint_and_deployed(trained, tmp_path, capsys):
    tmp, cfg_path, run_dir = trained
    capsys.readouterr()
    assert evaluate_cli.main(["--model", str(run_dir / "best.pth"), "--dataset-config", str(cfg_path), "--json"]) == 0
    out = capsys.readouterr().out
    res = json.loads(out)  # exactly one JSON object on stdout
    assert res["units"]["energy"] == "eV" and res["units"]["forces"] == "eV/Angstrom"
    assert res["split"] == "test" and res["n_frames"] == (30 - 9) + (10 - 3)
    for k in ("e_mae", "e_rmse", "f_mae", "f_rmse", "e_per_atom_mae", "solver_iters_mean", "solver_iters_max"):
        assert res[k] is not None and res[k] >= 0, k
    assert set(res["per_dataset"]) == {"monomer", "dimer"}
    assert res["per_dataset"]["dimer"]["n_frames"] == 7
    # one dataset of the config: the same frames (its split does not depend on the others)
    assert evaluate_cli.main(["--model", str(run_dir / "best.pth"), "--dataset-config", str(cfg_path), "--json",
                              "--datasets", "dimer"]) == 0
    only = json.loads(capsys.readouterr().out)
    assert set(only["per_dataset"]) == {"dimer"} and only["n_frames"] == 7
    assert only["f_mae"] == pytest.approx(res["per_dataset"]["dimer"]["f_mae"], rel=1e-9)
    assert evaluate_cli.main(["--model", str(run_dir / "best.pth"), "--dataset-config", str(cfg_path),
                              "--datasets", "trimer"]) == 2
    assert "trimer not in" in capsys.readouterr().err

    # human table
    assert evaluate_cli.main(["--model", str(run_dir / "best.pth"), "--dataset-config", str(cfg_path),
                              "--split", "val"]) == 0
    table = capsys.readouterr().out
    assert "meV" in table and "monomer" in table and "all" in table

    # deployed TorchScript file gives the same numbers (on the small validation split)
    from deqformer.deploy import deploy
    pt = tmp_path / "model.pt"
    deploy(load_model_from_checkpoint(run_dir / "best.pth"), str(pt))
    results = {}
    for kind, path in (("checkpoint", run_dir / "best.pth"), ("deployed", pt)):
        assert evaluate_cli.main(["--model", str(path), "--dataset-config", str(cfg_path), "--json",
                                  "--split", "val"]) == 0
        results[kind] = json.loads(capsys.readouterr().out)
        assert results[kind]["model_kind"] == kind and results[kind]["n_frames"] == 4
    for k in ("e_mae", "f_mae", "f_rmse"):
        assert results["deployed"][k] == pytest.approx(results["checkpoint"][k], rel=1e-5, abs=1e-7), k
    for kind in ("deployed", "checkpoint"):
        assert results[kind]["solver_unconverged_batches"] == 0
        assert results[kind]["adjoint_unconverged_batches"] == 0
    # cold single-frame solves and the contraction of the fixed-point map: the same from both files, and
    # the plain iteration's rate (-> spectral radius) cannot exceed the largest singular value
    fp = {}
    for kind, path in (("checkpoint", run_dir / "best.pth"), ("deployed", pt)):
        assert evaluate_cli.main(["--model", str(path), "--dataset-config", str(cfg_path), "--json",
                                  "--split", "val", "--fixed-point-frames", "2"]) == 0
        fp[kind] = json.loads(capsys.readouterr().out)["fixed_point"]
        assert fp[kind]["frames"] == 2 and fp[kind]["cold_forward_iters_max"] >= 1
        assert 0 < fp[kind]["rate_max"] <= fp[kind]["sigma_max_max"] + 1e-9
    assert fp["deployed"]["sigma_max_mean"] == pytest.approx(fp["checkpoint"]["sigma_max_mean"], rel=1e-6)
    assert evaluate_cli.main(["--model", str(pt), "--dataset-config", str(cfg_path), "--split", "val",
                              "--fixed-point-frames", "1"]) == 0
    assert "contraction at z*" in capsys.readouterr().out
    # solves cut off at the iteration limit are reported (counts in the JSON, a warning on stderr)
    short = tmp_path / "short.pt"
    deploy(load_model_from_checkpoint(run_dir / "best.pth"), str(short), overrides={"solver_max_iter": "2"})
    assert evaluate_cli.main(["--model", str(short), "--dataset-config", str(cfg_path), "--json",
                              "--split", "val"]) == 0
    captured = capsys.readouterr()
    cut = json.loads(captured.out)
    assert cut["n_batches"] >= 1 and cut["solver_unconverged_batches"] == cut["n_batches"]
    assert cut["solver_unconverged_residual_max"] > 0
    assert "fixed-point solve stopped at its iteration limit" in captured.err and "--max-iter" in captured.err

    # a single file with key mapping instead of a config
    ckpt = str(run_dir / "best.pth")
    assert evaluate_cli.main(["--model", ckpt, "--dataset-file", str(DATA / "aspirin_5_md17.npz"), "--key-mapping",
                              "z=atomic_numbers", "R=pos", "E=total_energy", "F=forces", "--json"]) == 0
    res5 = json.loads(capsys.readouterr().out)
    assert res5["n_frames"] == 5 and res5["split"] == "all"
    assert evaluate_cli.main(["--model", ckpt, "--dataset-file", str(DATA / "aspirin_5.extxyz"), "--json"]) == 0
    res5x = json.loads(capsys.readouterr().out)
    assert res5x["f_mae"] == pytest.approx(res5["f_mae"], rel=1e-5)

    # bad input -> exit status 2 and a message on stderr
    assert evaluate_cli.main(["--model", str(pt), "--dataset-file", str(DATA / "aspirin_5_md17.npz"),
                              "--key-mapping", "nuclear_charges=atomic_numbers"]) == 2
    assert "nuclear_charges" in capsys.readouterr().err

    # ASE calculator on the deployed file: same energy as the evaluation path, periodic cells work
    import ase.io
    from deqformer.ase_calculator import DeqformerCalculator
    atoms = ase.io.read(DATA / "aspirin_5.extxyz", index=0)
    atoms.calc = DeqformerCalculator(str(pt))
    e = atoms.get_potential_energy()
    f = atoms.get_forces()
    assert f.shape == (21, 3) and np.isfinite(f).all()
    assert atoms.get_potential_energy(force_consistent=True) == e
    assert abs(f.sum(axis=0)).max() < 1e-6  # no net force
    ref = load_model_from_checkpoint(run_dir / "best.pth")
    from deqformer.data import build_graph, collate
    from deqformer.data.dataset import read_ase_frames
    frame = read_ase_frames(DATA / "aspirin_5.extxyz", ["H", "C", "O"])[0]
    out = ref(collate([frame], [build_graph(frame[K.POSITIONS], 3.5)]), compute_forces=True)
    assert e == pytest.approx(float(out["energy"][0]), abs=1e-6)
    np.testing.assert_allclose(f, out[K.FORCES].detach().numpy(), atol=1e-5)
    big = atoms.copy()
    big.calc = DeqformerCalculator(str(pt))
    big.set_cell([30.0, 30.0, 30.0])
    big.pbc = True
    assert big.get_potential_energy() == pytest.approx(e, abs=1e-6)  # isolated in a big box
    big.positions += 29.0  # wrapped across the boundary: same energy
    assert big.get_potential_energy() == pytest.approx(e, abs=1e-6)


# ------------------------------------------------------------------------------ stopping rules (stand-in model)


def test_max_time_stops_after_first_epoch(tmp_path):
    cfg = parse_config(config_dict(tmp_path, max_epochs=50, max_time_minutes=1e-6), tmp_path)
    res = quiet_trainer(cfg).run()
    assert res["last_epoch"] == 1 and "time limit" in res["stop_reason"]
    assert (cfg.run_dir / "last.pth").exists() and (cfg.run_dir / "best.pth").exists()
    # the CLI flag overrides the config
    cfg2 = parse_config(config_dict(tmp_path, run_name="t2", max_epochs=3), tmp_path)
    res2 = quiet_trainer(cfg2, max_time_minutes=1e-6).run()
    assert res2["last_epoch"] == 1


def test_cosine_auto_fits_the_time_budget(tmp_path, monkeypatch):
    """lr_scheduler_T_max: auto spans the cosine over the epochs that fit max_time_minutes (re-fitted after
    every epoch from the mean epoch duration); the run stops before an epoch that would end past the limit,
    and the lr has then been annealed. Time is simulated: the first epoch 'takes' 20 s, the others 10 s,
    of a 1-minute budget."""
    from deqformer.train import trainer as trainer_mod
    clock = {"t": 1000.0, "n": 0}
    real_epoch = trainer_mod.Trainer.train_epoch

    def slow_epoch(self, *a, **kw):
        clock["t"] += 20.0 if clock["n"] == 0 else 10.0
        clock["n"] += 1
        return real_epoch(self, *a, **kw)

    monkeypatch.setattr(trainer_mod.time, "time", lambda: clock["t"])
    monkeypatch.setattr(trainer_mod.Trainer, "train_epoch", slow_epoch)
    cfg = parse_config(config_dict(tmp_path, max_epochs=100, max_time_minutes=1.0, learning_rate=0.01,
                                   lr_scheduler_name="CosineAnnealingLR", lr_scheduler_T_max="auto",
                                   lr_scheduler_eta_min=1e-4), tmp_path)
    res = quiet_trainer(cfg).run()
    # epochs end at 20, 30, 40, 50 s; a 5th (10 s, +10 % margin) would not fit in the 10 s left
    assert res["last_epoch"] == 4 and "time limit" in res["stop_reason"]
    ck = load_checkpoint(cfg.run_dir / "last.pth")
    # after epoch 3: mean 13.3 s, 20 s left -> 3 + int(0.95 * 20 / 13.3) = 4 epochs; the cosine ends with the run
    assert ck["scheduler"]["t_max"] == 4
    lrs = [float(r["lr"]) for r in read_csv(cfg.run_dir / "metrics_epoch.csv")]
    assert lrs[0] == pytest.approx(0.01) and lrs == sorted(lrs, reverse=True)
    assert 1e-4 < lrs[-1] < 0.002  # the last epoch runs at the end of the cosine, annealed
    with pytest.raises(ConfigError, match="lr_scheduler_T_max.*max_time_minutes"):
        parse_config(config_dict(tmp_path, lr_scheduler_name="CosineAnnealingLR", lr_scheduler_T_max="auto"),
                     tmp_path)


def test_early_stopping_and_lr_bound(tmp_path):
    # lr so small that the weights cannot change: the validation loss never improves after epoch 1
    cfg = parse_config(config_dict(tmp_path, max_epochs=20, learning_rate=1e-300,
                                   early_stopping_patiences={"validation_loss": 2}), tmp_path)
    res = quiet_trainer(cfg).run()
    assert res["last_epoch"] == 3 and res["best_epoch"] == 1 and "early stopping" in res["stop_reason"]
    # ReduceLROnPlateau (relative threshold 1e-4) cuts 1e-6 -> 1e-7 -> 1e-8 < bound after epoch 3
    cfg = parse_config(config_dict(tmp_path, run_name="lr", max_epochs=20, learning_rate=1e-6,
                                   lr_scheduler_patience=0, lr_scheduler_factor=0.1,
                                   early_stopping_lower_bounds={"LR": 5e-8}), tmp_path)
    res = quiet_trainer(cfg).run()
    assert res["last_epoch"] == 3 and "learning rate" in res["stop_reason"]
    lrs = [float(r["lr"]) for r in read_csv(cfg.run_dir / "metrics_epoch.csv")]
    assert lrs == pytest.approx([1e-6, 1e-6, 1e-7])  # the lr used during each epoch


def test_stand_in_learns_energy_only_float32_cosine(tmp_path):
    """Energy-only data (forces dropped), float32, CosineAnnealingLR, no EMA, one dataset."""
    d = dict(np.load(DATA / "aspirin_monomer_30.npz"))
    del d["forces"]
    p = tmp_path / "e_only.npz"
    np.savez(p, **d)
    over = {"datasets": None, "dataset": "npz", "dataset_file_name": str(p), "n_train": 20, "n_val": 5,
            "model_dtype": "float32", "use_ema": False, "lr_scheduler_name": "CosineAnnealingLR",
            "max_epochs": 4, "learning_rate": 0.01,
            "key_mapping": {k: v for k, v in RMD17_MAP.items() if v != "forces"}}
    raw = config_dict(tmp_path, **over)
    del raw["datasets"]
    cfg = parse_config(raw, tmp_path)
    tr = quiet_trainer(cfg)
    res = tr.run()
    assert res["last_epoch"] == 4
    rows = read_csv(cfg.run_dir / "metrics_epoch.csv")
    assert all(r["val_f_mae"] == "nan" for r in rows) and math.isfinite(float(rows[-1]["val_e_mae"]))
    assert list(rows[0]) == csv_columns(["e_only"])  # no per-dataset columns for one dataset
    assert float(rows[-1]["lr"]) < 0.01  # cosine schedule
    ck = load_checkpoint(cfg.run_dir / "last.pth")
    assert ck["ema_state"] is None and ck["model_dtype"] == "float32"
    assert next(iter(ck["model_state"].values())).dtype == torch.float32
    model = load_model_from_checkpoint(cfg.run_dir / "last.pth", model_builder=pair_builder)
    assert torch.equal(model.k.detach(), ck["model_state"]["k"])


def test_trainer_reports_bad_model_block_and_data(tmp_path):
    cfg = parse_config(config_dict(tmp_path, model={"no_such_option": 1}), tmp_path)
    with pytest.raises(ConfigError, match="model"):
        Trainer(cfg, progress=False, log=lambda s: None).run()
    cfg = parse_config(config_dict(tmp_path, run_name="x", datasets=[
        {"dataset": "npz", "dataset_file_name": str(DATA / "aspirin_dimer_10.npz"), "n_train": 8, "n_val": 5}]),
        tmp_path)
    with pytest.raises(DataError, match="fewer than n_train"):
        quiet_trainer(cfg).run()
    bad = write_config(tmp_path, "bad.yaml", r_max="five")
    assert train_cli.main([str(bad)]) == 2


# ------------------------------------------------------------------------------ data-parallel training


@pytest.mark.parametrize("processes,batch_size", [(2, 4), (3, 3)])
def test_data_parallel_training_equals_one_process(tmp_path, processes, batch_size):
    """train_processes splits each batch over forked processes and sums their gradients: the run equals a
    one-process run up to floating-point summation order and the solver tolerance (float64), with a part left empty when a batch
    has fewer frames than processes (8 frames in batches of 3 on 3 processes), and resumes exactly."""
    common = dict(batch_size=batch_size, validation_batch_size=batch_size, max_epochs=3)
    one = write_config(tmp_path, name="one.yaml", run_name="one", **common)
    many = write_config(tmp_path, name="many.yaml", run_name="many", train_processes=processes,
                        **dict(common, max_epochs=2))
    assert train_cli.main([str(one), "--no-progress"]) == 0
    assert train_cli.main([str(many), "--no-progress"]) == 0
    assert train_cli.main([str(many), "--no-progress", "--resume", "--max-epochs", "3"]) == 0
    rows1 = read_csv(load_config(one).run_dir / "metrics_epoch.csv")
    rows2 = read_csv(load_config(many).run_dir / "metrics_epoch.csv")
    assert len(rows1) == len(rows2) == 3
    for r1, r2 in zip(rows1, rows2):
        for col in ("train_loss", "train_f_mae", "val_loss", "val_e_mae", "val_f_mae", "val_f_mae_dimer", "lr"):
            assert float(r2[col]) == pytest.approx(float(r1[col]), rel=1e-6, abs=1e-6), (r1["epoch"], col)
        # each part is solved on its own (to the same tolerance), so iteration counts differ a little
        assert abs(float(r2["mean_solver_iters"]) - float(r1["mean_solver_iters"])) < 2.0
    c1 = load_checkpoint(load_config(one).run_dir / "last.pth")
    c2 = load_checkpoint(load_config(many).run_dir / "last.pth")
    for k, v in c1["model_state"].items():
        torch.testing.assert_close(c2["model_state"][k], v, rtol=1e-4, atol=1e-5)  # Adam steps are ~3e-3
    # every frame's warm start reached process 0's checkpoint, whichever process solved it
    assert c2["fixed_point_cache"]["train"]["keys"] == c1["fixed_point_cache"]["train"]["keys"] == list(range(8))
    z1, z2 = c1["fixed_point_cache"]["train"]["z"], c2["fixed_point_cache"]["train"]["z"]
    assert float((z2 - z1).norm() / z1.norm()) < 1e-3       # equal to the training solver tolerance


def test_data_parallel_refuses_gpu_and_bad_counts(tmp_path):
    with pytest.raises(ConfigError, match="train_processes"):
        load_config(write_config(tmp_path, train_processes=0))
    cfg = load_config(write_config(tmp_path, name="gpu.yaml", train_processes=2))
    with pytest.raises(TrainingError, match="train_processes: 1"):
        Trainer(cfg, device="meta", progress=False, log=lambda s: None).run()


class FailingInWorker(PairModel):
    """The stand-in, failing in the forked worker (not in the trainer's own process) in epoch 2 (at its
    fourth training batch: 2 batches per epoch)."""

    parent = os.getpid()
    calls = 0

    def forward(self, batch, compute_forces=True):
        if os.getpid() != FailingInWorker.parent and self.training:
            FailingInWorker.calls += 1
            if FailingInWorker.calls > 3:
                raise RuntimeError("injected failure in a worker")
        return super().forward(batch, compute_forces)


def test_data_parallel_worker_failure_is_reported(tmp_path):
    FailingInWorker.parent = os.getpid()
    cfg = load_config(write_config(tmp_path, train_processes=2, max_epochs=3))
    trainer = quiet_trainer(cfg, model_builder=lambda model_cfg, *a: FailingInWorker(*a))
    with pytest.raises(TrainingError, match="training process 1 failed"):
        trainer.run()
    assert trainer.parallel is None
