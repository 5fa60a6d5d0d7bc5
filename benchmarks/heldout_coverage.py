#!/usr/bin/env python3
"""How far a held-out trajectory lies from the training frames, and how the model's error grows with it.

For one molecule (every frame the same atoms in the same order) each frame is described by its
interatomic distances; a frame's distance to the training set is the root-mean-square difference of
those distances to its nearest training frame (Å). For the validation frames of the training config
(drawn from the same pool as the training frames) and for every frame of a held-out file, the script
records that distance with the deployed model's energy error and per-frame force MAE, bins the frames
by distance, and lists the interatomic distances whose mean moves furthest (in units of their spread
over the training frames) between the training and the held-out frames: the coordinates along which
the held-out data leave the training data (a torsion shows up as several distances across the group).

    .venv/bin/python benchmarks/heldout_coverage.py --model examples/aspirin/out/aspirin.pt \\
        --config examples/aspirin/out/train/config.yaml \\
        --test-file examples/aspirin/out/data/aspirin_test_md.npz \\
        --key-mapping nuclear_charges=atomic_numbers coords=pos energies=total_energy forces=forces \\
        --fixed-fields atomic_numbers --out heldout_coverage

Writes NAME.csv (one row per bin and set), NAME.json (summary, shifted coordinates) and NAME.png
(errors against the distance) into --out-dir (default benchmarks/results). Not a test: it measures.
"""
import argparse
import csv
import json
import sys
import warnings
from pathlib import Path
from typing import Dict, List

import numpy as np
from ase.data import chemical_symbols

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "models"))
from deqformer import keys as K  # noqa: E402
from deqformer.cli.evaluate import file_dataset_config  # noqa: E402
from deqformer.config import load_config  # noqa: E402
from deqformer.data import load_datasets, make_loader  # noqa: E402
from deqformer.inference import load_inference_model  # noqa: E402

BIN_EDGES = [0.0, 0.15, 0.20, 0.25, 0.30, np.inf]     # Å, distance to the nearest training frame


def distance_descriptor(frames: List[Dict], numbers: np.ndarray) -> np.ndarray:
    """[n_frames, n_pairs] interatomic distances (upper triangle) of frames of one molecule."""
    iu = np.triu_indices(len(numbers), 1)
    out = []
    for f in frames:
        z = np.asarray(f[K.ATOMIC_NUMBERS])
        if z.shape != numbers.shape or np.any(z != numbers):
            raise SystemExit("heldout_coverage: every frame must hold the same atoms in the same order as the "
                             "training frames (one molecule); this descriptor does not apply to other data")
        r = np.asarray(f[K.POSITIONS], dtype=np.float64)
        d = np.linalg.norm(r[:, None] - r[None], axis=-1)
        out.append(d[iu])
    return np.asarray(out)


def nearest_distance(query: np.ndarray, reference: np.ndarray, chunk: int = 64) -> np.ndarray:
    """RMS difference of the distance vectors to the nearest reference frame, per query frame."""
    best = np.empty(len(query))
    for a in range(0, len(query), chunk):
        q = query[a:a + chunk]
        d2 = (q ** 2).sum(1)[:, None] + (reference ** 2).sum(1)[None] - 2.0 * q @ reference.T
        best[a:a + chunk] = np.sqrt(np.maximum(d2.min(1), 0.0) / reference.shape[1])
    return best


def per_frame_errors(model, datasets, split: str, batch_size: int) -> Dict[str, np.ndarray]:
    """Energy error (eV) and mean absolute force error (eV/Å) of every frame of ``split``, in split order."""
    loader = make_loader(datasets, split, model.r_max, batch_size, model.dtype)
    n = len(loader.frames)
    e_err, f_mae = np.full(n, np.nan), np.full(n, np.nan)
    for batch in loader:
        out = model(batch)
        idx = batch[K.SAMPLE_INDEX].numpy()
        e_err[idx] = (out["energy"].reshape(-1) - batch[K.TOTAL_ENERGY].reshape(-1)).double().numpy()
        err = (out[K.FORCES] - batch[K.FORCES]).abs().mean(1).double().numpy()
        owner = batch[K.BATCH].numpy()
        f_mae[idx] = np.bincount(owner, err, minlength=len(idx)) / np.bincount(owner, minlength=len(idx))
    return {"e_err": e_err, "f_mae": f_mae, "frames": loader.frames}


def binned(dist: np.ndarray, err: Dict[str, np.ndarray]) -> List[Dict]:
    rows = []
    for lo, hi in zip(BIN_EDGES[:-1], BIN_EDGES[1:]):
        m = (dist >= lo) & (dist < hi)
        if not m.any():
            continue
        rows.append({"dist_lo": lo, "dist_hi": hi, "frames": int(m.sum()),
                     "f_mae_meV_A": 1e3 * float(err["f_mae"][m].mean()),
                     "e_mae_meV": 1e3 * float(np.abs(err["e_err"][m]).mean()),
                     "e_mean_error_meV": 1e3 * float(err["e_err"][m].mean())})
    return rows


def shifted_coordinates(train: np.ndarray, test: np.ndarray, numbers: np.ndarray, symbols: Dict[int, str],
                        top: int = 6) -> List[Dict]:
    iu = np.triu_indices(len(numbers), 1)
    shift = (test.mean(0) - train.mean(0)) / np.maximum(train.std(0), 1e-12)
    rows = []
    for k in np.argsort(-np.abs(shift))[:top]:
        i, j = int(iu[0][k]), int(iu[1][k])
        rows.append({"atoms": f"{symbols[int(numbers[i])]}{i}-{symbols[int(numbers[j])]}{j}",
                     "train_mean_A": float(train[:, k].mean()), "train_std_A": float(train[:, k].std()),
                     "test_mean_A": float(test[:, k].mean()), "test_std_A": float(test[:, k].std()),
                     "shift_in_train_std": float(shift[k])})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="deployed model (.pt) or checkpoint (.pth)")
    ap.add_argument("--config", required=True, help="the training run's config.yaml (train and val splits)")
    ap.add_argument("--test-file", required=True, help="held-out frames (npz or anything ASE reads)")
    ap.add_argument("--key-mapping", nargs="+", default=None, metavar="KEY=FIELD")
    ap.add_argument("--fixed-fields", nargs="+", default=None, metavar="FIELD")
    ap.add_argument("--energy-unit", default="eV", help="of the test file: eV | meV | kcal/mol | Hartree")
    ap.add_argument("--length-unit", default="Angstrom", help="of the test file: Angstrom | Bohr")
    ap.add_argument("--batch-size", type=int, default=25)
    ap.add_argument("--out", required=True, help="name of the result files")
    ap.add_argument("--out-dir", default=str(ROOT / "benchmarks/results"), help="folder of the result files")
    args = ap.parse_args(argv)

    model = load_inference_model(args.model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = load_config(args.config)
    pool = load_datasets(cfg, type_names=model.type_names, require=("train", "val"))
    if len(pool) != 1:
        raise SystemExit("heldout_coverage: the config must have exactly one dataset")
    path = Path(args.test_file).resolve()
    test_cfg = file_dataset_config(path, model.type_names, model.r_max, args.key_mapping, args.fixed_fields,
                                   args.energy_unit, args.length_unit)
    test = load_datasets(test_cfg, type_names=model.type_names, require=("all",))

    train_frames = pool[0].split_frames("train")
    numbers = np.asarray(train_frames[0][K.ATOMIC_NUMBERS])
    d_train = distance_descriptor(train_frames, numbers)
    sets = {"val": per_frame_errors(model, pool, "val", args.batch_size),
            "test": per_frame_errors(model, test, "all", args.batch_size)}
    rows, summary = [], {"model": args.model, "config": args.config, "test_file": str(path),
                         "train_frames": len(train_frames), "descriptor": "interatomic distances, RMS difference (A)"}
    dist = {}
    for name, err in sets.items():
        dist[name] = nearest_distance(distance_descriptor(err["frames"], numbers), d_train)
        for r in binned(dist[name], err):
            rows.append({"set": name, **r})
        summary[name] = {"frames": len(dist[name]), "dist_median_A": float(np.median(dist[name])),
                         "dist_p90_A": float(np.percentile(dist[name], 90)),
                         "f_mae_meV_A": 1e3 * float(err["f_mae"].mean()),
                         "e_mae_meV": 1e3 * float(np.abs(err["e_err"]).mean()),
                         "e_mean_error_meV": 1e3 * float(err["e_err"].mean())}
    # held-out frames as close to the training frames as the validation frames are, and the rest
    limit = summary["val"]["dist_p90_A"]
    near = dist["test"] <= limit
    for label, m in (("test_within_val_p90", near), ("test_beyond_val_p90", ~near)):
        summary[label] = {"frames": int(m.sum()),
                          "f_mae_meV_A": 1e3 * float(sets["test"]["f_mae"][m].mean()) if m.any() else None,
                          "e_mae_meV": 1e3 * float(np.abs(sets["test"]["e_err"][m]).mean()) if m.any() else None}
    summary["shifted_coordinates"] = shifted_coordinates(
        d_train, distance_descriptor(sets["test"]["frames"], numbers), numbers,
        {z: chemical_symbols[z] for z in set(numbers.tolist())})

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{args.out}.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / f"{args.out}.json").write_text(json.dumps(summary, indent=1) + "\n")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for name, c in (("val", "C0"), ("test", "C3")):
        ax[0].scatter(dist[name], 1e3 * sets[name]["f_mae"], s=6, c=c, alpha=0.6, label=name)
        ax[1].scatter(dist[name], 1e3 * sets[name]["e_err"], s=6, c=c, alpha=0.6, label=name)
    for a, lab in zip(ax, ("force MAE of the frame (meV/Å)", "energy error (meV)")):
        a.axvline(limit, color="grey", lw=0.8, ls="--")
        a.set_xlabel("distance to the nearest training frame (Å)")
        a.set_ylabel(lab)
        a.legend()
    ax[1].axhline(0.0, color="k", lw=0.5)
    fig.suptitle("Errors against distance from the training frames (dashed: 90th percentile of val)")
    fig.tight_layout()
    fig.savefig(out / f"{args.out}.png", dpi=120)
    print(json.dumps({k: summary[k] for k in ("val", "test", "test_within_val_p90", "test_beyond_val_p90")},
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
