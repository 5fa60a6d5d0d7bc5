#!/usr/bin/env python3
"""DEQ vs its explicit (unrolled) mode: accuracy per parameter and cost of a force evaluation along an
MD trajectory, for two training checkpoints of the same blocks.

The DEQ's claims are (1) better accuracy per parameter (one weight-tied block iterated to its fixed
point vs N separate blocks) and (2) cheaper MD through reuse (consecutive MD steps start from the
previous fixed point). Both checkpoints are evaluated the same way, in Python (explicit models are an
ablation and are not deployable): held-out energy/force MAE on the frames of an npz trajectory, and
milliseconds per energy+forces evaluation over consecutive frames (float64; the DEQ exactly as LAMMPS
drives it: deploy tolerance, adjoint forces, with and without reuse of the previous frame's z*, u*).

    .venv/bin/python benchmarks/deq_vs_explicit.py DEQ.pth EXPLICIT.pth --test-npz TEST.npz [--out CSV]

Writes one CSV row per model (benchmarks/results/deq_vs_explicit.csv by default).
"""
import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "models"))
from deqformer.data.batch import collate  # noqa: E402
from deqformer import keys as K  # noqa: E402
from deqformer.data.neighbors import build_graph  # noqa: E402
from deqformer.driver import Settings, solve_and_differentiate  # noqa: E402
from deqformer.train.checkpoint import load_checkpoint, load_model_from_checkpoint  # noqa: E402

SYMBOL = {1: "H", 6: "C", 8: "O"}


def frames_of(d, type_names, r_max: float, indices):
    """Single-frame float64 batches of the npz arrays d at the given frame indices."""
    types = np.array([type_names.index(SYMBOL[int(v)]) for v in d["nuclear_charges"]])
    out = []
    for k in indices:
        pos = d["coords"][k]
        frame = {K.POSITIONS: pos, K.ATOM_TYPES: types, K.TOTAL_ENERGY: float(d["energies"][k]), K.FORCES: d["forces"][k]}
        out.append(collate([frame], [build_graph(pos, r_max)], torch.float64))
    return out


def evaluate(path: Path, npz: Path, every: int, timing_frames: int):
    ck = load_checkpoint(path)
    model = load_model_from_checkpoint(path).to(torch.float64).eval()
    d = np.load(npz)
    frames = frames_of(d, model.type_names, model.r_max, range(0, len(d["energies"]), every))
    params = sum(p.numel() for p in model.parameters())
    c = model.cfg
    row = {"checkpoint": str(path), "mode": c["mode"], "blocks": model.n_blocks, "parameters": params,
           "epochs": int(ck["epoch"]), "train_wall_s": float(ck.get("wall_time_s", float("nan"))),
           "frames": len(frames)}
    settings = Settings(model.solver_code, float(c["deploy_tol"]), int(c["solver_max_iter"]), model.solver_memory,
                        model.solver_beta, model.solver_lam, float(c["deploy_tol"]))

    def force_eval(b, z0=None, u0=None):
        if model.explicit:
            with torch.enable_grad():
                o = model(b, compute_forces=True)
            return float(o["energy"][0]), o[K.FORCES].detach(), None, None, 0, 0
        ei, sh = b[K.EDGE_INDEX], b[K.EDGE_SHIFT]
        o = solve_and_differentiate(model, b[K.POSITIONS], b[K.ATOM_TYPES], ei, sh, settings, z0=z0, u0=u0)
        return (float(o["atomic_energy"].sum()), o[K.FORCES].detach(), o["z"], o["u"], int(o["solver_iters"]),
                int(o["adjoint_iters"]))

    e_err, f_err = [], []
    for b in frames:
        e, f, _, _, _, _ = force_eval(b)
        e_err.append(e - float(b[K.TOTAL_ENERGY][0]))
        f_err.append((f - b[K.FORCES]).numpy())
    f_err = np.concatenate(f_err)
    row.update({"e_mae_meV": 1e3 * float(np.abs(e_err).mean()), "f_mae_meV_A": 1e3 * float(np.abs(f_err).mean()),
                "f_rmse_meV_A": 1e3 * float(np.sqrt((f_err ** 2).mean()))})

    # cost along consecutive frames of the trajectory (10 fs apart): cold, and reusing the previous frame's state
    torch.set_num_threads(1)
    seq = frames_of(d, model.type_names, model.r_max, range(min(timing_frames, len(d["energies"]))))
    for label, reuse in (("cold", False), ("reuse", True)):
        if model.explicit and reuse:
            row["ms_per_eval_reuse"] = row["ms_per_eval_cold"]
            row["iters_reuse"] = "-"
            continue
        z0 = u0 = None
        times, iters = [], []
        for k, b in enumerate(seq):
            t0 = time.perf_counter()
            _, _, z, u, it_f, it_a = force_eval(b, z0, u0)
            if k > 0:
                times.append(time.perf_counter() - t0)
                iters.append((it_f, it_a))
            if reuse:
                z0, u0 = z, u
        row[f"ms_per_eval_{label}"] = 1e3 * float(np.median(times))
        if not model.explicit:
            row[f"iters_{label}"] = "%.1f/%.1f" % tuple(np.mean(iters, axis=0))
        else:
            row[f"iters_{label}"] = "-"
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--test-npz", type=Path, required=True)
    ap.add_argument("--every", type=int, default=3, help="use every k-th frame for the MAE (default 3)")
    ap.add_argument("--timing-frames", type=int, default=30)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/deq_vs_explicit.csv")
    a = ap.parse_args()
    rows = []
    for p in a.checkpoints:
        r = evaluate(p, a.test_npz, a.every, a.timing_frames)
        rows.append(r)
        print(r, flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    cols = list(rows[0])
    for r in rows[1:]:
        cols += [k for k in r if k not in cols]
    tmp = a.out.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.5g}" if isinstance(v, float) else v) for k, v in r.items()})
    os.replace(tmp, a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
