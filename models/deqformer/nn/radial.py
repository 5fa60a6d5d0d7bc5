"""Radial basis functions with a smooth cutoff envelope."""
import math

import torch
from torch import nn


class PolynomialEnvelope(nn.Module):
    """u(d) = 1 - (p+1)(p+2)/2 d^p + p(p+2) d^(p+1) - p(p+1)/2 d^(p+2), d = r / r_max; zero beyond.
    Value and first two derivatives vanish at r_max, so energies and forces are smooth."""

    def __init__(self, r_max: float, p: int = 6):
        super().__init__()
        self.r_max = float(r_max)
        self.p = float(p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        d = r / self.r_max
        p = self.p
        u = 1.0 - (p + 1.0) * (p + 2.0) / 2.0 * d.pow(p) + p * (p + 2.0) * d.pow(p + 1.0) \
            - p * (p + 1.0) / 2.0 * d.pow(p + 2.0)
        return torch.where(d < 1.0, u, torch.zeros_like(u))


class RadialBasis(nn.Module):
    """Gaussian (centres evenly spaced in [0, r_max]) or exp-normal (PhysNet) radial basis."""

    def __init__(self, r_max: float, num_basis: int = 8, kind: str = "gaussian"):
        super().__init__()
        if kind not in ("gaussian", "expnormal"):
            raise ValueError(f"radial basis '{kind}': use 'gaussian' or 'expnormal'")
        self.kind = kind
        self.r_max = float(r_max)
        if kind == "gaussian":
            centers = torch.linspace(0.0, r_max, num_basis)
            width = r_max / num_basis
            self.register_buffer("centers", centers)
            self.register_buffer("gamma", torch.full((num_basis,), 0.5 / width ** 2))
        else:
            start = math.exp(-r_max)
            centers = torch.linspace(start, 1.0, num_basis)
            beta = (2.0 / num_basis * (1.0 - start)) ** -2
            self.register_buffer("centers", centers)
            self.register_buffer("gamma", torch.full((num_basis,), beta))

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r[:, None]
        if self.kind == "gaussian":
            return torch.exp(-self.gamma * (r - self.centers).pow(2))
        return torch.exp(-self.gamma * (torch.exp(-r) - self.centers).pow(2))
