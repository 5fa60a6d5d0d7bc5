"""Short-range core repulsion below the closest contacts of the training data.

A learned potential knows nothing about distances its training data never reached; there it may
attract two atoms onto each other (measured on aspirin: a spurious H-H well, docs/results.md, "Condensed phase").
This prior adds the universal screened nuclear repulsion (Ziegler-Biersack-Littmark, ZBL) for a pair of
types only where the pair comes closer than ``wall[a, b]``, the shortest a-b distance in the training
frames, switched on smoothly (C2) between ``wall`` and ``inner * wall``:

    V_ab(r) = ZBL_ab(r) * s((r - inner*wall) / ((1 - inner)*wall)),   s(t) = (1 - t)^3 (1 + 3 t + 6 t^2)

with s = 1 for t <= 0 and s = 0 for t >= 1. So V is exactly zero on every training frame (the fit is
unchanged) and repulsive, growing to the full ZBL energy, where the model would have to extrapolate.
A wall of 0 (a pair never within r_max in the data, or a type that is not an element) switches the pair off.
"""
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

# e^2 / (4 pi eps0) in eV * Angstrom, and the ZBL universal screening length 0.8854 * a0 (Angstrom);
# the screening function's coefficients are written out in forward()
COULOMB_EV_A = 14.399645
ZBL_LENGTH = 0.8854 * 0.529177

REPULSION_KINDS = ("zbl", "none")


def atomic_numbers(type_names: Sequence[str]) -> List[int]:
    """Atomic number of each type name that is an element symbol, 0 otherwise (repulsion off)."""
    from ase.data import atomic_numbers as table
    return [int(table.get(str(n), 0)) for n in type_names]


def wall_matrix(pair_min_dist: Optional[Sequence[Sequence[Optional[float]]]], num_types: int) -> List[List[float]]:
    """[T][T] walls from the dataset statistic ``pair_min_dist`` (None entries and a missing statistic: 0)."""
    walls = [[0.0] * num_types for _ in range(num_types)]
    if pair_min_dist is None:
        return walls
    if len(pair_min_dist) != num_types or any(len(row) != num_types for row in pair_min_dist):
        raise ValueError(f"pair_min_dist must be a {num_types} x {num_types} matrix, got {pair_min_dist!r}")
    for a in range(num_types):
        for b in range(num_types):
            v = pair_min_dist[a][b]
            walls[a][b] = float(v) if v is not None and v == v and v > 0 else 0.0
    return walls


class CoreRepulsion(nn.Module):
    """Per-atom energies of the switched ZBL repulsion (half of each directed edge to its centre)."""

    def __init__(self, type_names: Sequence[str], pair_min_dist: Optional[Sequence[Sequence[Optional[float]]]],
                 inner: float = 0.75, enabled: bool = True):
        super().__init__()
        t = len(type_names)
        walls = wall_matrix(pair_min_dist, t) if enabled else [[0.0] * t for _ in range(t)]
        z = torch.tensor(atomic_numbers(type_names), dtype=torch.get_default_dtype())
        # not in the state dict: they come from the dataset statistics (checkpoints written before the prior
        # existed still load; their statistics are completed from the training data, train/checkpoint.py)
        self.register_buffer("wall", torch.tensor(walls, dtype=torch.get_default_dtype()), persistent=False)
        self.register_buffer("z", z, persistent=False)
        self.inner = float(inner)
        self.type_names = [str(n) for n in type_names]
        self.screening_length = ZBL_LENGTH
        self.coulomb = COULOMB_EV_A

    @torch.jit.ignore
    def walls(self) -> Dict[str, float]:
        """{'H-C': wall in Angstrom, ...} for each unordered pair of types (0: off)."""
        n = self.type_names
        return {f"{n[a]}-{n[b]}": float(self.wall[a, b]) for a in range(len(n)) for b in range(a, len(n))}

    def forward(self, edge_vec: torch.Tensor, types: torch.Tensor, edge_index: torch.Tensor,
                n_local: int) -> torch.Tensor:
        r = torch.linalg.norm(edge_vec, dim=1)
        ti = types.index_select(0, edge_index[0])
        tj = types.index_select(0, edge_index[1])
        wall = self.wall[ti, tj]
        zi = self.z.index_select(0, ti)
        zj = self.z.index_select(0, tj)
        a = self.screening_length / (zi.pow(0.23) + zj.pow(0.23)).clamp(min=1e-12)
        x = r / a
        phi = (0.18175 * torch.exp(-3.19980 * x) + 0.50986 * torch.exp(-0.94229 * x)
               + 0.28022 * torch.exp(-0.40290 * x) + 0.02817 * torch.exp(-0.20162 * x))
        v = self.coulomb * zi * zj / r * phi
        r_in = self.inner * wall
        t = ((r - r_in) / (wall - r_in).clamp(min=1e-9)).clamp(0.0, 1.0)
        s = (1.0 - t) ** 3 * (1.0 + 3.0 * t + 6.0 * t * t)     # = 1 - t^3 (10 - 15 t + 6 t^2), >= 0
        e_edge = torch.where((wall > 0.0) & (r < wall), 0.5 * v * s, torch.zeros_like(r))
        out = torch.zeros(n_local, dtype=edge_vec.dtype, device=edge_vec.device)
        return out.index_add(0, edge_index[0], e_edge)
