#!/usr/bin/env python3
"""Cost of the two message operations ('cg' Clebsch-Gordan tensor product, 'so2' eSCN SO(2)
convolution) inside the deqformer model, on aspirin.

For each model size, dtype and message operation: a 20-frame aspirin batch (r_max 4.0), one CPU
thread, and

  step_ms      one ``step`` call (forward of the implicit layer, no grad)
  adjoint_ms   one ``adjoint_step`` call (vector-Jacobian product, what the adjoint solve iterates)
  train_ms     one training step: forward solve + adjoint solve (a fixed 10 + 10 solver iterations,
               so both operations do the same work) + Lagrangian backward (energy + force loss)
               + Adam step
  op_ms        the message operation alone (forward, no grad), on the same edges
  init_iters   forward solver iterations (Anderson, tol 1e-4, from z = 0) of the freshly initialised
               model: not a property of trained models, only a hint that the two layers contract differently

all per structure (batch time / frames), CPU time of the process (``time.process_time``, robust to
other jobs on the machine), best of several repeats, the two operations timed in alternating blocks so
that a busy machine slows both alike. Writes benchmarks/results/message_ops.csv.

    /usr/bin/python3 benchmarks/message_ops.py            # ~2-3 minutes on an idle core
"""
import argparse
import csv
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "models"))

from deqformer.data.batch import collate  # noqa: E402
from deqformer import keys as K  # noqa: E402
from deqformer.data.neighbors import build_graph  # noqa: E402
from deqformer.driver import fixed_point  # noqa: E402
from deqformer.model import build_model  # noqa: E402

DATA = os.path.join(ROOT, "examples", "aspirin", "data", "aspirin_xtb_train.npz")
SIZES = {
    "default": {"irreps": "32x0e+16x1o+8x2e", "msg_channels": 16},
    "large": {"irreps": "64x0e+32x1o+16x2e", "msg_channels": 32},
}
TYPE_OF_Z = {1: 0, 6: 1, 8: 2}


def load_batch(frames: int, r_max: float, dtype: torch.dtype):
    d = np.load(DATA)
    types = np.array([TYPE_OF_Z[int(z)] for z in d["nuclear_charges"]])
    idx = np.linspace(0, len(d["coords"]) - 1, frames).astype(int)
    fr = [{K.POSITIONS: d["coords"][i], K.ATOM_TYPES: types, K.FORCES: d["forces"][i],
           "total_energy": float(d["energies"][i])} for i in idx]
    graphs = [build_graph(f[K.POSITIONS], r_max) for f in fr]
    return collate(fr, graphs, dtype)


def steady_state_malloc() -> None:
    """glibc returns big freed blocks to the OS (and page-faults them back on the next call) until a
    large enough block has been freed once; a no-grad step is then ~5x slower than after the first
    backward pass. Training and MD run past that point; fix glibc's thresholds there from the start
    so the first configuration measured is not penalised. No-op elsewhere."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)        # M_MMAP_THRESHOLD: blocks below 32 MiB come from the heap
        libc.mallopt(-1, 512 << 20)       # M_TRIM_THRESHOLD: keep up to 512 MiB of free heap
    except (OSError, AttributeError):
        pass


def cpu_ms(fn) -> float:
    t = time.process_time()
    fn()
    return (time.process_time() - t) * 1e3


def setup(size: str, message: str, dtype: torch.dtype, batch, iters: int):
    """The model and closures timing one step / adjoint_step / message op / training step."""
    n = batch[K.POSITIONS].shape[0]
    ei = batch[K.EDGE_INDEX]
    cfg = dict(SIZES[size], message=message, solver_tol=0.0, adjoint_tol=0.0, solver_max_iter=iters)
    stats = {"avg_num_neighbors": ei.shape[1] / n, "energy_per_atom_shift": [0.0] * 3, "force_rms": 1.0}
    torch.manual_seed(0)
    model = build_model(cfg, ["H", "C", "O"], 4.0, stats, dtype).eval()
    types = batch[K.ATOM_TYPES]
    vec = batch[K.POSITIONS].index_select(0, ei[1]) - batch[K.POSITIONS].index_select(0, ei[0]) + batch[K.EDGE_SHIFT]
    with torch.no_grad():
        attr = model.edge_features(vec, types, ei)
        x = model.inject(types, ei, attr, n)
        z = x
        for _ in range(3):                       # a state like the solver's, not zeros
            z = model.step(z, x, ei, attr, n)
        # forward solver iterations at initialisation (default Anderson, the training tolerance 1e-4)
        solve = fixed_point(model, lambda zz: model.step(zz, x, ei, attr, n), torch.zeros_like(x), 0, 1e-4, 100,
                            5, 1.0, 1e-6)
    u = torch.randn_like(z)
    op = model.block.attn.tp
    feat = torch.randn(ei.shape[1], model.cm, 9, dtype=dtype)
    geom, w = attr[:, :model.geom_dim], model._block_weight(attr, 0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        with torch.no_grad():
            model.step(z, x, ei, attr, n)

    def adjoint():
        model.adjoint_step(z, x, ei, attr, u, n)

    def message_op():
        with torch.no_grad():
            op(feat, geom, w)

    def train():
        model.train()
        opt.zero_grad(set_to_none=True)
        out = model(batch)
        loss = (out["energy"] - batch[K.TOTAL_ENERGY]).pow(2).mean() + (out[K.FORCES] - batch[K.FORCES]).pow(2).mean()
        loss.backward()
        opt.step()
        model.eval()

    info = {
        "size": size, "irreps": SIZES[size]["irreps"], "msg_channels": SIZES[size]["msg_channels"],
        "message": message, "dtype": str(dtype).replace("torch.", ""), "frames": int(batch[K.NUM_FRAMES]),
        "atoms": n, "edges": ei.shape[1], "train_iters": f"{iters}+{iters}", "init_iters_1e-4": solve.iters,
        "params": sum(p.numel() for p in model.parameters()),
        "params_message_op": sum(p.numel() for p in op.parameters()),
        "params_radial_mlp": sum(p.numel() for p in model.radial.parameters()),
        "edge_attr_dim": model.edge_attr_dim,
    }
    return info, {"step": step, "adjoint": adjoint, "op": message_op, "train": train}


def bench_pair(size: str, dtype: torch.dtype, batch, reps: int, train_reps: int, iters: int, rounds: int):
    """cg and so2 timed in alternating blocks (a busy machine slows both alike); best of all repeats.
    Within a block the same call repeats, as in a solver loop or MD (the first calls after switching
    pay for fresh memory pages and are warm-up)."""
    runs = [setup(size, m, dtype, batch, iters) for m in ("cg", "so2")]
    best = [dict.fromkeys(("step", "adjoint", "op", "train"), float("inf")) for _ in runs]
    for _, fns in runs:                          # warm-up
        for what in ("step", "adjoint", "op"):
            fns[what]()
    for what, count, warm in (("step", reps, 2), ("adjoint", reps, 2), ("op", reps, 2), ("train", train_reps, 0)):
        for _ in range(rounds):
            for (_, fns), b in zip(runs, best):
                for k in range(warm + count):
                    t = cpu_ms(fns[what])
                    if k >= warm:
                        b[what] = min(b[what], t)
    rows = []
    for (info, _), b in zip(runs, best):
        nf = info["frames"]
        row = dict(info)
        for key in ("step", "adjoint", "train", "op"):
            row[f"{key}_ms"] = b[key] / nf
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--reps", type=int, default=4, help="timed step / adjoint_step / op calls per block")
    ap.add_argument("--train-reps", type=int, default=1, help="timed training steps per block")
    ap.add_argument("--rounds", type=int, default=2, help="blocks per operation (alternating cg, so2)")
    ap.add_argument("--iters", type=int, default=10, help="forward and adjoint solver iterations per training step")
    ap.add_argument("--sizes", default="default,large")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "message_ops.csv"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    steady_state_malloc()
    rows = []
    t0 = time.time()
    for dt_name in args.dtypes.split(","):
        dtype = getattr(torch, dt_name)
        batch = load_batch(args.frames, 4.0, dtype)
        for size in args.sizes.split(","):
            for r in bench_pair(size, dtype, batch, args.reps, args.train_reps, args.iters, args.rounds):
                rows.append(r)
                print(f"  {size:8s} {r['dtype']:8s} {r['message']:4s} step {r['step_ms']:6.3f}  "
                      f"adjoint {r['adjoint_ms']:6.3f}"
                      f"  train {r['train_ms']:7.2f}  op {r['op_ms']:6.3f} ms/structure   ({time.time() - t0:.0f} s)",
                      flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})

    print(f"\naspirin, {rows[0]['frames']} frames batched ({rows[0]['atoms']} atoms, {rows[0]['edges']} edges, "
          f"r_max 4.0), 1 thread, CPU ms per structure (best of repeats); so2/cg = ratio.\n"
          f"train: {rows[0]['train_iters']} solver iterations + backward + Adam; op: the message operation alone; "
          f"iters@init: forward Anderson iterations to 1e-4 from z = 0 at initialisation")
    hdr = (f"{'size':8s} {'dtype':8s} {'message':7s} {'step':>7s} {'adjoint':>8s} {'train':>8s} {'op':>7s} "
           f"{'params':>8s} {'iters@init':>10s}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['size']:8s} {r['dtype']:8s} {r['message']:7s} {r['step_ms']:7.3f} {r['adjoint_ms']:8.3f} "
              f"{r['train_ms']:8.2f} {r['op_ms']:7.3f} {r['params']:8d} {r['init_iters_1e-4']:10d}")
        if r["message"] == "so2":
            c = next(q for q in rows if q["size"] == r["size"] and q["dtype"] == r["dtype"] and q["message"] == "cg")
            ratio = {k: r[k] / c[k] for k in ("step_ms", "adjoint_ms", "train_ms", "op_ms", "params")}
            print(f"{'':8s} {'':8s} {'so2/cg':7s} {ratio['step_ms']:7.2f} {ratio['adjoint_ms']:8.2f} "
                  f"{ratio['train_ms']:8.2f} {ratio['op_ms']:7.2f} {ratio['params']:8.2f}")
    print(f"\nwrote {args.out} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
