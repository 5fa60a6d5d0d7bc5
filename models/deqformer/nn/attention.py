"""Equivariant graph attention (Equiformer-style) with a fused Clebsch-Gordan tensor product.

Messages live in a common width ``Cm`` for every l, as [E, Cm, 9] (components l = 0 | 1 | 2).
For edge i <- j the value is TP(Lin_src(h_j) + Lin_dst(h_i), Y(r_ij); w_ij) gated, with per-path,
per-channel weights w_ij from a radial MLP (precomputed once per geometry, see ``EdgeEmbedding``).
Attention weights per head are  alpha_ij = u(r_ij) e^{a_ij} / (1 + sum_k u(r_ik) e^{a_ik}):
the envelope u makes them vanish smoothly at the cutoff (energy conservation), the 1 keeps them
smooth when a node loses its last neighbour.
"""
import math
from typing import Tuple

import torch
from torch import nn

from .layers import IrrepsLinear, split_irreps
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
    """Depthwise tensor product of [E, Cm, 9] features with Y [E, 9], all PATHS fused in one bmm."""

    def __init__(self):
        super().__init__()
        cg, path_of_k, gather = coupling_tables()
        self.num_paths = len(PATHS)
        expand = torch.zeros(self.num_paths, cg.shape[2], dtype=cg.dtype)
        expand[path_of_k, torch.arange(cg.shape[2])] = 1.0
        self.register_buffer("cg", cg.reshape(9, -1))  # [9, 9 * K]
        self.register_buffer("expand", expand)         # [P, K]: path weight -> its components
        self.register_buffer("gather", gather)         # [K, 9]: path components -> l3 blocks

    def forward(self, feat: torch.Tensor, sh: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        # feat [E, Cm, 9], sh [E, 9], weight [E, Cm, P]
        e, c = feat.shape[0], feat.shape[1]
        a = (sh @ self.cg).reshape(e, 9, -1)                        # [E, 9, K]
        out = torch.bmm(feat, a)                                    # [E, Cm, K]
        w = (weight.reshape(e * c, -1) @ self.expand).reshape(e, c, -1)
        return (out * w) @ self.gather                              # [E, Cm, 9]


class EquivariantAttention(nn.Module):
    def __init__(self, muls: Tuple[int, int, int], msg_channels: int, num_heads: int,
                 attn_type: str = "mlp", attn_hidden: int = 32):
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
        self.tp = TensorProduct()
        self.gate = nn.Linear(cm, 2 * cm)                # gates for l = 1, 2 value channels
        self.attn_hidden = nn.Linear(cm, attn_hidden)
        self.attn_out = nn.Linear(attn_hidden, num_heads)
        self.query = nn.Linear(self.m0, attn_hidden)
        self.lin_out = IrrepsLinear((cm, cm, cm), muls)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, sh: torch.Tensor, env: torch.Tensor,
                weight: torch.Tensor, n_local: int) -> torch.Tensor:
        """h [N_all, D] (normalised states of local + ghost atoms), edges i (< n_local) <- j."""
        i = edge_index[0]
        j = edge_index[1]
        cm = self.cm
        src = to_components(self.lin_src(h), cm)                        # [N_all, Cm, 9]
        dst = to_components(self.lin_dst(h[:n_local]), cm)              # [n, Cm, 9]
        feat = src.index_select(0, j) + dst.index_select(0, i)          # [E, Cm, 9]
        msg = self.tp(feat, sh, weight)                                 # [E, Cm, 9]
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
