#!/usr/bin/env python3
"""Train and deploy an Allegro model by the same rules as the main job's deqformer model.

Same rules means: the same training and validation frames (the deqformer config's pool file, n_train,
n_val and dataset_seed give the split; those frames are written train-first into one npz that nequip
reads with ``train_val_split: sequential``), the same wall-clock budget (the deqformer config's
``max_time_minutes``, given to nequip as ``early_stopping_upper_bounds: cumulative_wall``) on the same
cores, and nequip's own trainer and deploy tool. The network's hyper-parameters come from an Allegro
config you give (by default the one next to the Allegro setup script); only data, split, budget and
output paths are overridden.

    .venv/bin/python examples/aspirin/train_allegro.py --allegro-dir ALLEGRO_VENV

ALLEGRO_VENV is a folder made by Allegro's setup (``setup.sh ALLEGRO_VENV``; see the README section
"Comparing with Allegro"). Output (default examples/aspirin/out/allegro/): allegro.pth (deployed),
allegro.yaml (the config actually used), train.log, train_info.json (wall time, parameters, split).
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "models"))
from deqformer import keys as K  # noqa: E402
from deqformer.config import load_config  # noqa: E402
from deqformer.data.dataset import split_indices  # noqa: E402

DEFAULT_CONFIG = ROOT.parent / "shared/peers/allegro/aspirin_allegro.yaml"


def write_split(cfg, out: Path) -> dict:
    """The deqformer run's train then validation frames as one npz (keys z, R, E, F; eV, Å)."""
    if len(cfg.datasets) != 1:
        raise SystemExit(f"the deqformer config has {len(cfg.datasets)} datasets; this script handles one")
    ds = cfg.datasets[0]
    if ds.kind != "npz":
        raise SystemExit(f"{ds.file_name}: only npz datasets are supported here (got {ds.kind!r})")
    path = Path(ds.file_name)       # load_config resolved it against the config's folder
    if not path.exists():
        raise SystemExit(f"{path} not found: run the main job's data step first (prepare_split.py)")
    raw = np.load(path)
    field = {v: k for k, v in ds.key_mapping.items()}
    z = raw[field[K.ATOMIC_NUMBERS]]
    pos, energy, forces = raw[field[K.POSITIONS]], raw[field[K.TOTAL_ENERGY]], raw[field[K.FORCES]]
    split = split_indices(len(pos), ds.n_train, ds.n_val, cfg.dataset_seed, cfg.train_val_split)
    order = np.concatenate([split["train"], split["val"]])
    np.savez(out, z=np.asarray(z).reshape(-1), R=pos[order], E=np.asarray(energy)[order].reshape(-1, 1),
             F=forces[order])
    return {"pool": str(path), "n_train": int(ds.n_train), "n_val": int(ds.n_val),
            "dataset_seed": int(cfg.dataset_seed), "train_frames": split["train"].tolist(),
            "val_frames": split["val"].tolist()}


def allegro_config(base: Path, data: Path, out: Path, n_train: int, n_val: int, minutes: float) -> dict:
    conf = yaml.load(base.read_text(), Loader=yaml.Loader)   # nequip configs use !!python/tuple
    conf.update({
        "root": str(out), "run_name": "train", "append": False,
        "dataset": "npz", "dataset_file_name": str(data),
        "key_mapping": {"z": "atomic_numbers", "R": "pos", "E": "total_energy", "F": "forces"},
        "npz_fixed_field_keys": ["atomic_numbers"], "chemical_symbols": ["H", "C", "O"],
        "n_train": n_train, "n_val": n_val, "train_val_split": "sequential",
        "max_epochs": 100000, "wandb": False,
    })
    bounds = dict(conf.get("early_stopping_upper_bounds") or {})
    bounds["cumulative_wall"] = float(60 * minutes)
    conf["early_stopping_upper_bounds"] = bounds
    return conf


def count_parameters(python: Path, model: Path) -> int:
    code = ("import sys, torch; m = torch.jit.load(sys.argv[1]); "
            "print(sum(p.numel() for p in m.parameters()))")
    return int(subprocess.run([str(python), "-c", code, str(model)], check=True, capture_output=True,
                              text=True).stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--allegro-dir", type=Path, required=True, help="a venv made by Allegro's setup.sh")
    ap.add_argument("--deqformer-config", type=Path, default=HERE / "aspirin.yaml",
                    help="the deqformer training config whose split and budget are copied")
    ap.add_argument("--allegro-config", type=Path, default=DEFAULT_CONFIG,
                    help="an Allegro (nequip) config: network and optimiser settings")
    ap.add_argument("--minutes", type=float, default=None, help="wall-clock budget (default: the deqformer "
                    "config's max_time_minutes)")
    ap.add_argument("--out", type=Path, default=HERE / "out/allegro")
    a = ap.parse_args()

    bindir = a.allegro_dir / "bin"
    for tool in ("python", "nequip-train", "nequip-deploy"):
        if not (bindir / tool).exists():
            sys.exit(f"{bindir / tool} not found: --allegro-dir must be a venv made by Allegro's setup.sh")
    if not a.allegro_config.exists():
        sys.exit(f"{a.allegro_config} not found: give --allegro-config (an Allegro/nequip YAML)")
    cfg = load_config(a.deqformer_config)
    minutes = a.minutes if a.minutes is not None else cfg.max_time_minutes
    if not minutes:
        sys.exit("no budget: give --minutes or set max_time_minutes in the deqformer config")
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = out / "split.npz"
    info = write_split(cfg, data)
    conf = allegro_config(a.allegro_config, data, out, info["n_train"], info["n_val"], minutes)
    (out / "allegro.yaml").write_text(yaml.dump(conf))
    if (out / "train").exists():
        subprocess.run(["rm", "-rf", str(out / "train")], check=True)

    print(f"nequip-train: {info['n_train']} + {info['n_val']} frames of {info['pool']}, {minutes:g} min "
          f"(log: {out / 'train.log'})", flush=True)
    t0 = time.time()
    with open(out / "train.log", "w") as log:
        rc = subprocess.run([str(bindir / "nequip-train"), str(out / "allegro.yaml")], cwd=out,
                            stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.time() - t0
    if rc != 0:
        sys.exit(f"nequip-train failed (exit {rc}); see {out / 'train.log'}")
    tmp = out / "allegro.pth.tmp"
    with open(out / "deploy.log", "w") as log:
        rc = subprocess.run([str(bindir / "nequip-deploy"), "build", "--train-dir", str(out / "train"), str(tmp)],
                            cwd=out, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        sys.exit(f"nequip-deploy failed (exit {rc}); see {out / 'deploy.log'}")
    os.replace(tmp, out / "allegro.pth")
    epochs = sum(1 for _ in open(out / "train/metrics_epoch.csv")) - 1 if (out / "train/metrics_epoch.csv").exists() else None
    info.update({"training_wall_s": wall, "budget_min": minutes, "epochs": epochs,
                 "parameters": count_parameters(bindir / "python", out / "allegro.pth"),
                 "model": str(out / "allegro.pth"), "allegro_config": str(a.allegro_config),
                 "dtype": conf.get("default_dtype", "float32")})
    tmp = out / "train_info.json.tmp"
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, out / "train_info.json")
    print(f"Allegro: {info['parameters']} parameters, {epochs} epochs in {wall / 60:.1f} min -> {out / 'allegro.pth'}")


if __name__ == "__main__":
    main()
