"""Small helpers shared by the model tests: a tiny float64 model and aspirin-like graphs."""
import os

import numpy as np
import torch

from deqformer import keys as K
from deqformer.data.neighbors import build_graph
from deqformer.model import build_model

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")
TYPES = {1: 0, 6: 1, 8: 2}

# aspirin (GFN2-xTB optimised), atom order O O O O C x9 H x8
ASPIRIN_Z = [8] * 4 + [6] * 9 + [1] * 8
WALL = 1.05


def aspirin_geometry() -> np.ndarray:
    path = os.path.join(DATA, "aspirin_opt.xyz")
    lines = open(path).read().split("\n")
    n = int(lines[0])
    return np.array([[float(v) for v in line.split()[1:4]] for line in lines[2:2 + n]])


def tiny_model(**over):
    cfg = {"irreps": "8x0e+4x1o+4x2e", "msg_channels": 4, "num_heads": 2, "attn_hidden": 8,
           "radial_hidden": 16, "type_embed_dim": 4, "readout_hidden": 8, "num_basis": 6,
           "deploy_tol": 1e-12, "solver_tol": 1e-12, "adjoint_tol": 1e-12, "solver_max_iter": 200}
    cfg.update(over)
    torch.manual_seed(0)
    # core-repulsion walls at 1.05 A: the O-H bonds (0.97 A) of every test geometry are inside them
    m = build_model(cfg, ["H", "C", "O"], 4.0, {"energy_per_atom_shift": [-0.5, -1.0, -2.0], "force_rms": 0.5,
                                               "pair_min_dist": [[WALL] * 3 for _ in range(3)]}, torch.float64)
    return m.eval()


def make_batch(pos, z=ASPIRIN_Z, cell=None, r_max=4.0):
    pos = np.asarray(pos, dtype=np.float64)
    pbc = None if cell is None else np.array([True, True, True])
    ei, shift = build_graph(pos, r_max, cell=cell, pbc=pbc)
    n = len(pos)
    return {K.POSITIONS: torch.tensor(pos), K.ATOM_TYPES: torch.tensor([TYPES[v] for v in z]),
            K.EDGE_INDEX: torch.as_tensor(ei, dtype=torch.long), K.EDGE_SHIFT: torch.as_tensor(shift, dtype=torch.float64),
            K.BATCH: torch.zeros(n, dtype=torch.long), K.NUM_FRAMES: torch.tensor(1)}


def random_rotation(seed: int, reflect: bool = False) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    if reflect:
        q = q @ np.diag([1.0, 1.0, -1.0])
    return q
