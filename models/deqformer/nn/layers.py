"""Equivariant linear maps, layer norm and gate activation on flat e3nn-layout features [N, D]."""
import math
from typing import List, Tuple

import torch
from torch import nn


def split_irreps(z: torch.Tensor, m0: int, m1: int, m2: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[N, D] -> ([N, m0], [N, m1, 3], [N, m2, 5])."""
    n = z.shape[0]
    parts = torch.split(z, [m0, 3 * m1, 5 * m2], dim=1)   # one SplitBackward instead of three slices
    return parts[0], parts[1].reshape(n, m1, 3), parts[2].reshape(n, m2, 5)


def join_irreps(s: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    n = s.shape[0]
    return torch.cat([s, v.reshape(n, -1), t.reshape(n, -1)], dim=1)


class IrrepsLinear(nn.Module):
    """Channel mixing within each l (equivariant); bias on scalars only."""

    def __init__(self, muls_in: Tuple[int, int, int], muls_out: Tuple[int, int, int], bias: bool = True):
        super().__init__()
        self.mi0, self.mi1, self.mi2 = muls_in
        self.mo0, self.mo1, self.mo2 = muls_out
        self.w0 = nn.Parameter(torch.randn(self.mi0, self.mo0) / math.sqrt(self.mi0))
        self.w1 = nn.Parameter(torch.randn(self.mi1, self.mo1) / math.sqrt(self.mi1))
        self.w2 = nn.Parameter(torch.randn(self.mi2, self.mo2) / math.sqrt(self.mi2))
        self.b0 = nn.Parameter(torch.zeros(self.mo0)) if bias else None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        s, v, t = split_irreps(z, self.mi0, self.mi1, self.mi2)
        s = s @ self.w0
        b0 = self.b0
        if b0 is not None:
            s = s + b0
        v = torch.einsum("ncm,cd->ndm", v, self.w1)
        t = torch.einsum("ncm,cd->ndm", t, self.w2)
        return join_irreps(s, v, t)


class EquivariantLayerNorm(nn.Module):
    """Equiformer's layer norm: scalars standardised over channels; l > 0 divided by the RMS over
    channels and components of that l; per-channel affine scale (and scalar bias)."""

    def __init__(self, muls: Tuple[int, int, int], eps: float = 1e-5):
        super().__init__()
        self.m0, self.m1, self.m2 = muls
        self.eps = eps
        self.g0 = nn.Parameter(torch.ones(self.m0))
        self.b0 = nn.Parameter(torch.zeros(self.m0))
        self.g1 = nn.Parameter(torch.ones(self.m1))
        self.g2 = nn.Parameter(torch.ones(self.m2))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        s, v, t = split_irreps(z, self.m0, self.m1, self.m2)
        s = s - s.mean(dim=1, keepdim=True)
        s = s * torch.rsqrt(s.pow(2).mean(dim=1, keepdim=True) + self.eps) * self.g0 + self.b0
        v = v * torch.rsqrt(v.pow(2).mean(dim=(1, 2), keepdim=True) + self.eps) * self.g1[:, None]
        t = t * torch.rsqrt(t.pow(2).mean(dim=(1, 2), keepdim=True) + self.eps) * self.g2[:, None]
        return join_irreps(s, v, t)


class GatedFeedForward(nn.Module):
    """Linear -> gate (SiLU on scalars, sigmoid(gate scalars) x l > 0) -> Linear."""

    def __init__(self, muls: Tuple[int, int, int], hidden: Tuple[int, int, int]):
        super().__init__()
        self.h0, self.h1, self.h2 = hidden
        self.lin_in = IrrepsLinear(muls, (self.h0 + self.h1 + self.h2, self.h1, self.h2))
        self.lin_out = IrrepsLinear(hidden, muls)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = self.lin_in(z)
        g, v, t = split_irreps(y, self.h0 + self.h1 + self.h2, self.h1, self.h2)
        s = torch.nn.functional.silu(g[:, :self.h0])
        v = v * torch.sigmoid(g[:, self.h0:self.h0 + self.h1])[:, :, None]
        t = t * torch.sigmoid(g[:, self.h0 + self.h1:])[:, :, None]
        return self.lin_out(join_irreps(s, v, t))


class MLP(nn.Module):
    """Plain SiLU MLP on scalars."""

    def __init__(self, sizes: List[int]):
        super().__init__()
        layers: List[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers.append(nn.Linear(a, b))
            layers.append(nn.SiLU())
        self.net = nn.Sequential(*layers[:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
