"""eSCN-style SO(2) convolution: the message operation in edge-aligned frames.

For an edge with unit direction n, ``edge_frame`` builds a rotation R with R n = y (e3nn's polar axis).
In that frame Y(R n) only has m = 0 components, so every equivariant bilinear map of (features, Y(n))
reduces to linear maps that keep |m| and commute with rotations about y (eSCN, Passaro & Zitnick 2023):
rotate the features in with D(R), mix (l, channel) separately for each |m|, rotate back with D(R)^T.

Real spherical-harmonic components of one l, in e3nn order, form (-m, +m) pairs that rotate about y
with the same 2x2 rotation for every l (checked in tests/python/test_message_ops.py):

    l = 1:  (x, z)                     m = 1       (y is m = 0)
    l = 2:  (xy, yz) m = 1,  (xz, (z^2 - x^2)/2) m = 2

Parity. A map commuting with SO(2) about y acts on each (-m, +m) pair as [[a, -b], [b, a]]. A mirror
plane that contains y flips the -m member of every pair (x -> -x: x, xy, xz change sign), so the
"a" part commutes with it and the "b" part anticommutes. For features 0e, 1o, 2e (the parity of the
spherical harmonics) full O(3) equivariance therefore requires b = 0: the b terms are exactly the
parity-odd couplings (l1 + l2 + l3 odd) of the tensor-product picture, which Equiformer's CG product
also drops. ``SO2Convolution(parity=True)`` (what the model uses) keeps only a; ``parity=False``
adds b (SO(3)-equivariant only, as in EquiformerV2), kept for the tests that show the difference.

All of this needs D_l(R) only for proper rotations: D_0 = 1, D_1 = R itself (l = 1 is sqrt(3)(x, y, z)),
D_2 from 5 fixed sample points p_k: Y_2(R p_k) = D_2 Y_2(p_k), so D_2 = Y_2(R P) Y_2(P)^-1.
The rotations are stored as one 9 x 9 matrix per edge whose rows are already sorted by m
(``M_ORDER``), so the rotation in is a single batched matmul that also groups the components by |m|.
"""
import math
from typing import List

import numpy as np
import torch
from torch import nn
from torch.jit import Final

from .so3 import spherical_harmonics, spherical_harmonics_np

# rows of the m-sorted frame (components in e3nn order 0 | 1 2 3 | 4 5 6 7 8):
#   m = 0: l0, l1 (y), l2 (c6) | m = -1: l1 (x), l2 (c5) | m = +1: l1 (z), l2 (c7) | m = -2: c4 | m = +2: c8
M_ORDER: List[int] = [0, 2, 6, 1, 5, 3, 7, 4, 8]

_S = 1.0 / math.sqrt(2.0)
# sample points for D_2 (Y_2 at them has condition number 2.7)
_POINTS = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [_S, _S, 0.0], [0.0, _S, _S], [_S, 0.0, _S]])


def edge_frame(n: torch.Tensor) -> torch.Tensor:
    """Rotations R [E, 3, 3] (det +1) with R n = (0, 1, 0) for unit vectors n [E, 3].

    Rows (u, n, w): a Householder reflection mapping n to -/+y, composed with a mirror that restores
    det = +1. Denominators are >= 1 everywhere; the roll about n jumps where n_y changes sign, which
    the SO(2) convolution does not see (it commutes with rotations about y)."""
    x = n[:, 0]
    y = n[:, 1]
    z = n[:, 2]
    s = torch.where(y >= 0.0, torch.ones_like(y), -torch.ones_like(y))
    k = 1.0 / (1.0 + s * y)
    u = torch.stack([s * (1.0 - k * x * x), -x, -s * k * x * z], dim=1)
    w = torch.stack([-k * x * z, -s * z, 1.0 - k * z * z], dim=1)
    return torch.stack([u, n, w], dim=1)


class SO2Convolution(nn.Module):
    """Message operation on [E, Cm, 9] features in edge-aligned frames (same call as ``TensorProduct``).

    forward(feat [E, Cm, 9], geom [E, 9] or [E, 90], weight [E, Cm, 6]) -> [E, Cm, 9]

    geom starts with Y(n) (only its l = 1 part, the direction, is used); if ``edge_geometry`` appended
    the m-sorted 9 x 9 frame rotation it is reused instead of recomputed (the model does this once per
    geometry, as the edge attributes are, not once per fixed-point iteration).
    weight: per edge and channel a radial scale for each (|m|, l) input block, in the order
    (m0 l0, m0 l1, m0 l2, m1 l1, m1 l2, m2 l2) -- the same scale for +m and -m.
    Then per |m| a learned linear map mixing (l, channel): [3 Cm, 3 Cm] for m = 0, [2 Cm, 2 Cm] for
    m = 1, [Cm, Cm] for m = 2 (twice that for m > 0 with parity=False).
    """
    parity: Final[bool]

    def __init__(self, channels: int, parity: bool = True):
        super().__init__()
        c = int(channels)
        self.cm = c
        self.parity = parity
        self.weight_width = 6
        self.geom_dim = 9 + 81
        self.w0 = nn.Parameter(torch.randn(3 * c, 3 * c) / math.sqrt(3 * c))
        fan = 1.0 if parity else 2.0
        self.w1a = nn.Parameter(torch.randn(2 * c, 2 * c) / math.sqrt(2 * c * fan))
        self.w2a = nn.Parameter(torch.randn(c, c) / math.sqrt(c * fan))
        if not parity:
            self.w1b = nn.Parameter(torch.randn(2 * c, 2 * c) / math.sqrt(4 * c))
            self.w2b = nn.Parameter(torch.randn(c, c) / math.sqrt(2 * c))
        y2 = spherical_harmonics_np(_POINTS)[:, 4:9]                  # [point, comp]
        dtype = torch.get_default_dtype()
        self.register_buffer("points", torch.tensor(_POINTS.T, dtype=dtype), persistent=False)      # [3, 5]
        self.register_buffer("y2_inv", torch.tensor(np.linalg.inv(y2.T), dtype=dtype), persistent=False)
        self.register_buffer("m_order", torch.tensor(M_ORDER, dtype=torch.long), persistent=False)
        # (|m|, l) weight column of each m-sorted row
        self.register_buffer("w_index", torch.tensor([0, 1, 2, 3, 4, 3, 4, 5, 5], dtype=torch.long),
                             persistent=False)
        self.register_buffer("sign", torch.tensor([-1.0, 1.0], dtype=dtype).reshape(1, 2, 1), persistent=False)

    def rotation_blocks(self, rot: torch.Tensor) -> torch.Tensor:
        """D(R) [E, 9, 9] (block-diagonal, e3nn component order) with Y(R r) = D(R) Y(r), for
        orthogonal R [E, 3, 3] (a reflection gets the natural parity (-1)^l)."""
        e = rot.shape[0]
        pts = torch.matmul(rot, self.points)                           # [E, 3, 5]: R p_k as columns
        y2 = spherical_harmonics(pts.transpose(1, 2).reshape(-1, 3))[:, 4:9].reshape(e, 5, 5)   # [E, pt, comp]
        d2 = torch.matmul(y2.transpose(1, 2), self.y2_inv)             # [E, 5, 5] = Y_2(R P) Y_2(P)^-1
        zero = torch.zeros(e, 1, 1, dtype=rot.dtype, device=rot.device)
        return torch.cat([
            torch.cat([torch.ones_like(zero), zero.expand(e, 1, 8)], dim=2),
            torch.cat([zero.expand(e, 3, 1), rot, zero.expand(e, 3, 5)], dim=2),
            torch.cat([zero.expand(e, 5, 4), d2], dim=2)], dim=1)

    def wigner(self, n: torch.Tensor) -> torch.Tensor:
        """m-sorted D(R) [E, 9, 9] of the edge frames R of unit vectors n [E, 3]: rows in M_ORDER."""
        return self.rotation_blocks(edge_frame(n)).index_select(1, self.m_order)

    def edge_geometry(self, sh: torch.Tensor) -> torch.Tensor:
        """[E, 9] Y(n) -> [E, 90]: Y(n) followed by the flattened m-sorted frame rotation."""
        d = self.wigner(sh[:, 1:4] / 1.7320508075688772)
        return torch.cat([sh, d.reshape(-1, 81)], dim=1)

    def forward(self, feat: torch.Tensor, geom: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        e = feat.shape[0]
        c = self.cm
        if geom.shape[1] >= 90:
            d = geom[:, 9:90].reshape(e, 9, 9)
        else:
            d = self.wigner(geom[:, 1:4] / 1.7320508075688772)
        rot = torch.bmm(d, feat.transpose(1, 2))                       # [E, 9 (m-sorted), Cm]
        rot = rot * weight.transpose(1, 2).index_select(1, self.w_index)
        y0 = torch.matmul(rot[:, 0:3].reshape(e, 3 * c), self.w0).reshape(e, 3, c)
        x1 = rot[:, 3:7].reshape(e, 2, 2 * c)                          # (-1 | +1) x (l1, l2) x Cm
        x2 = rot[:, 7:9]                                               # (-2 | +2) x Cm
        y1 = torch.matmul(x1, self.w1a)
        y2 = torch.matmul(x2, self.w2a)
        if not self.parity:
            # [[a, -b], [b, a]] on (-m, +m): y_- += -x_+ b, y_+ += x_- b
            y1 = y1 + torch.matmul(x1.flip(1), self.w1b) * self.sign
            y2 = y2 + torch.matmul(x2.flip(1), self.w2b) * self.sign
        y = torch.cat([y0, y1.reshape(e, 4, c), y2], dim=1)           # [E, 9 (m-sorted), Cm]
        return torch.bmm(y.transpose(1, 2), d)                         # [E, Cm, 9]
