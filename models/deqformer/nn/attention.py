"""Equivariant graph attention (Equiformer-style) with a fused Clebsch-Gordan tensor product
(``message: cg``, default) or an eSCN SO(2) convolution in edge-aligned frames (``message: so2``,
``so2.py``) as the message operation TP below.

Messages live in a common width ``Cm`` for every l, as [E, Cm, 9] (components l = 0 | 1 | 2).
For edge i <- j the value is TP(Lin_src(h_j) + Lin_dst(h_i), Y(r_ij); w_ij) gated, with per-path,
per-channel weights w_ij from a radial MLP (precomputed once per geometry, see ``EdgeEmbedding``).
Attention weights per head are  alpha_ij = u(r_ij) e^{a_ij} / (1 + sum_k u(r_ik) e^{a_ik}):
the envelope u makes them vanish smoothly at the cutoff (energy conservation), the 1 keeps them
smooth when a node loses its last neighbour.
"""
import math
from typing import List, Tuple

import torch
from torch import nn

from .layers import IrrepsLinear, split_irreps
from .so2 import SO2Convolution
from .so3 import PATHS, coupling_tables


def _scatter_sum(src: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    out = torch.zeros((n,) + src.shape[1:], dtype=src.dtype, device=src.device)
    return out.index_add_(0, index, src)


def to_components(flat: torch.Tensor, c: int) -> torch.Tensor:
    """Flat e3nn layout with c channels per l -> [n, c, 9] (components l = 0 | 1 | 2)."""
    s, v, t = split_irreps(flat, c, c, c)
    return torch.cat([s[:, :, None], v, t], dim=2)


def flatten_components(agg: torch.Tensor) -> torch.Tensor:
    """[n, C, 9] (components l = 0 | 1 | 2) -> flat e3nn layout [n, C + 3C + 5C]."""
    n = agg.shape[0]
    parts = torch.split(agg, [1, 3, 5], dim=2)
    return torch.cat([parts[0].reshape(n, -1), parts[1].reshape(n, -1), parts[2].reshape(n, -1)], dim=1)


class TensorProduct(nn.Module):
    """Depthwise tensor product of [E, Cm, 9] features with Y [E, 9] over all PATHS.

    Paths are grouped by the input l1: for each group one batched matmul of the features' l1 block
    with A_e = sum_n Y_en C[:, n, :] (only the non-zero blocks of the coupling tensor: 115 of 315
    entries), then per path its per-channel weight and a sum into the output l3 block.

    Message-operation interface (shared with ``so2.SO2Convolution``): ``weight_width`` P (per-edge,
    per-channel weights), ``geom_dim`` (width of the per-edge geometry ``edge_geometry(sh)`` that the
    model stores in its edge attributes and passes back as ``geom``; here just Y, 9).
    """

    def __init__(self):
        super().__init__()
        cg, _, _ = coupling_tables()        # [9, 9, K] in PATHS order
        self.num_paths = len(PATHS)
        self.weight_width = len(PATHS)
        self.geom_dim = 9
        comp = {0: (0, 1), 1: (1, 4), 2: (4, 9)}
        groups = []
        self.path_l1: List[int] = []
        self.path_l3: List[int] = []
        self.path_col: List[int] = []       # first column of the path inside its group's output
        k_of_path = []
        k = 0
        for (l1, l2, l3) in PATHS:
            k_of_path.append(k)
            k += 2 * l3 + 1
        for l1 in range(3):
            a0, a1 = comp[l1]
            cols = []
            gcol = 0
            for p, (pl1, l2, l3) in enumerate(PATHS):
                if pl1 != l1:
                    continue
                d3 = 2 * l3 + 1
                cols.extend(range(k_of_path[p], k_of_path[p] + d3))
                self.path_l1.append(l1)
                self.path_l3.append(l3)
                self.path_col.append(gcol)
                gcol += d3
            block = cg[a0:a1, :, cols]                       # [d1, 9, K_l1]
            groups.append(block.permute(1, 0, 2).reshape(9, -1))   # [9, d1 * K_l1]
        # path index in PATHS order of each (group-ordered) entry
        self.group_sizes: List[List[int]] = [[2 * pp[2] + 1 for pp in PATHS if pp[0] == l1] for l1 in range(3)]
        self.path_index: List[int] = [p for l1 in range(3) for p, pp in enumerate(PATHS) if pp[0] == l1]
        self.register_buffer("cg0", groups[0])
        self.register_buffer("cg1", groups[1])
        self.register_buffer("cg2", groups[2])

    def edge_geometry(self, sh: torch.Tensor) -> torch.Tensor:
        return sh

    def forward(self, feat: torch.Tensor, sh: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        # feat [E, Cm, 9], sh [E, 9], weight [E, Cm, P]
        e = feat.shape[0]
        f0, f1, f2 = torch.split(feat, [1, 3, 5], dim=2)
        t0 = f0 * (sh @ self.cg0)[:, None, :]                          # [E, Cm, 9]
        t1 = torch.bmm(f1, (sh @ self.cg1).reshape(e, 3, -1))          # [E, Cm, 12]
        t2 = torch.bmm(f2, (sh @ self.cg2).reshape(e, 5, -1))          # [E, Cm, 14]
        # one split per group / of the weights (a single backward node each, not one per slice)
        pieces = list(torch.split(t0, self.group_sizes[0], dim=2)) + \
            list(torch.split(t1, self.group_sizes[1], dim=2)) + list(torch.split(t2, self.group_sizes[2], dim=2))
        w = torch.unbind(weight, dim=2)
        outs = [torch.zeros_like(f0), torch.zeros_like(f1), torch.zeros_like(f2)]
        for q in range(len(self.path_index)):
            l3 = self.path_l3[q]
            outs[l3] = outs[l3] + w[self.path_index[q]][:, :, None] * pieces[q]
        return torch.cat(outs, dim=2)                                    # [E, Cm, 9]


MESSAGE_OPS = ("cg", "so2")


def message_op(kind: str, channels: int) -> nn.Module:
    """The message operation: 'cg' Clebsch-Gordan tensor product (Equiformer) or 'so2' eSCN SO(2)
    convolution in edge-aligned frames (EquiformerV2), both called as op(feat, geom, weight)."""
    if kind == "cg":
        return TensorProduct()
    if kind == "so2":
        return SO2Convolution(channels)
    raise ValueError(f"message operation '{kind}': use one of {', '.join(MESSAGE_OPS)}")


def message_op_dims(kind: str) -> Tuple[int, int]:
    """(weight_width, geom_dim) of a message operation, without building it."""
    if kind == "cg":
        return len(PATHS), 9
    if kind == "so2":
        return 6, 9 + 81
    raise ValueError(f"message operation '{kind}': use one of {', '.join(MESSAGE_OPS)}")


class EquivariantAttention(nn.Module):
    def __init__(self, muls: Tuple[int, int, int], msg_channels: int, num_heads: int,
                 attn_type: str = "mlp", attn_hidden: int = 32, message: str = "cg"):
        super().__init__()
        if msg_channels % num_heads != 0:
            raise ValueError(f"msg_channels = {msg_channels} must be divisible by num_heads = {num_heads}")
        if attn_type not in ("mlp", "dot"):
            raise ValueError(f"attention '{attn_type}': use 'mlp' or 'dot'")
        self.m0, self.m1, self.m2 = muls
        self.cm = msg_channels
        self.heads = num_heads
        self.attn_mlp = attn_type == "mlp"
        cm = msg_channels
        self.lin_src = IrrepsLinear(muls, (cm, cm, cm))
        self.lin_dst = IrrepsLinear(muls, (cm, cm, cm), bias=False)
        self.tp = message_op(message, cm)               # name kept: checkpoints hold block.attn.tp.*
        self.gate = nn.Linear(cm, 2 * cm)                # gates for l = 1, 2 value channels
        self.attn_hidden = nn.Linear(cm, attn_hidden)
        self.attn_out = nn.Linear(attn_hidden, num_heads)
        self.query = nn.Linear(self.m0, attn_hidden)
        self.lin_out = IrrepsLinear((cm, cm, cm), muls)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, geom: torch.Tensor, env: torch.Tensor,
                weight: torch.Tensor, n_local: int) -> torch.Tensor:
        """h [N_all, D] (normalised states of local + ghost atoms), edges i (< n_local) <- j.
        geom [E, tp.geom_dim]: Y(r_ij) (+ the edge frames for so2), weight [E, Cm, tp.weight_width]."""
        i = edge_index[0]
        j = edge_index[1]
        cm = self.cm
        src = to_components(self.lin_src(h), cm)                        # [N_all, Cm, 9]
        dst = to_components(self.lin_dst(h[:n_local]), cm)              # [n, Cm, 9]
        feat = src.index_select(0, j) + dst.index_select(0, i)          # [E, Cm, 9]
        msg = self.tp(feat, geom, weight)                               # [E, Cm, 9]
        parts = torch.split(msg, [1, 3, 5], dim=2)
        m0 = parts[0].squeeze(2)
        # attention logits per head
        hid = torch.nn.functional.silu(self.attn_hidden(m0))
        if self.attn_mlp:
            logits = self.attn_out(hid)                                 # [E, H]
        else:
            q = self.query(h[:n_local, :self.m0]).index_select(0, i)    # [E, A]
            a = q.shape[1] // self.heads
            logits = (q.reshape(-1, self.heads, a) * hid.reshape(-1, self.heads, a)).sum(-1) / math.sqrt(a)
        logits = 10.0 * torch.tanh(logits / 10.0)
        w = env[:, None] * torch.exp(logits)                            # [E, H]
        denom = 1.0 + _scatter_sum(w, i, n_local)                       # [n, H]
        alpha = w / denom.index_select(0, i)
        # gated value: SiLU on scalars, sigmoid gates on l = 1, 2
        g = torch.sigmoid(self.gate(m0))
        val = torch.cat([torch.nn.functional.silu(m0)[:, :, None],
                         parts[1] * g[:, :cm, None],
                         parts[2] * g[:, cm:, None]], dim=2)
        ne = val.shape[0]
        val = (val.reshape(ne, self.heads, cm // self.heads, 9) * alpha[:, :, None, None]).reshape(ne, cm, 9)
        agg = _scatter_sum(val, i, n_local)                             # [n, Cm, 9]
        return self.lin_out(flatten_components(agg))
