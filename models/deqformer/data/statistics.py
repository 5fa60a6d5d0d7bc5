"""Dataset statistics used to initialise a model: per-type energy shifts and a force scale."""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .dataset import Frame
from .. import keys as K

__all__ = ["compute_statistics", "fit_energy_shifts", "pair_min_distances", "type_counts"]


def type_counts(frames: Sequence[Frame], num_types: int) -> np.ndarray:
    """[F, T] number of atoms of each type in each frame."""
    counts = np.zeros((len(frames), num_types), dtype=np.float64)
    for k, f in enumerate(frames):
        counts[k] = np.bincount(np.asarray(f[K.ATOM_TYPES]), minlength=num_types)[:num_types]
    return counts


def fit_energy_shifts(counts: np.ndarray, energies: np.ndarray, ridge: float = 1e-10) -> np.ndarray:
    """Least-squares per-type energies ``e`` with ``counts @ e ~= energies``.

    A ridge term (relative to the mean diagonal of ``counts.T @ counts``) makes the problem solvable
    when compositions are collinear (one molecule, or monomers + dimers): the result is then the
    minimum-norm solution. Types that never occur get 0.
    """
    if len(energies) == 0:
        return np.zeros(counts.shape[1])
    gram = counts.T @ counts
    scale = max(float(np.trace(gram)) / max(gram.shape[0], 1), 1.0)
    rhs = counts.T @ energies
    return np.linalg.solve(gram + ridge * scale * np.eye(gram.shape[0]), rhs)


def pair_min_distances(frames: Sequence[Frame], graphs: Sequence[Any], num_types: int
                       ) -> List[List[Optional[float]]]:
    """[T][T] shortest distance between atoms of types a and b over the frames' graph edges (periodic
    images included); None where the pair never comes within the cutoff. The model's core repulsion
    starts below these distances (deqformer.nn.repulsion)."""
    best = np.full((num_types, num_types), np.inf)
    for f, (ei, shift) in zip(frames, graphs):
        if ei.shape[1] == 0:
            continue
        pos = np.asarray(f[K.POSITIONS], dtype=np.float64).reshape(-1, 3)
        t = np.asarray(f[K.ATOM_TYPES])
        r = np.linalg.norm(pos[ei[1]] - pos[ei[0]] + shift, axis=1)
        np.minimum.at(best, (t[ei[0]], t[ei[1]]), r)
    best = np.minimum(best, best.T)
    return [[float(v) if np.isfinite(v) else None for v in row] for row in best]


def compute_statistics(frames: Sequence[Frame], num_types: int,
                       graphs: Optional[Sequence[Any]] = None) -> Dict[str, Any]:
    """Statistics of the training frames, as plain Python types.

    Returns ``energy_per_atom_shift`` (list of T floats, eV), ``force_rms`` (eV/Angstrom: RMS force
    component; for energy-only data the std of the per-atom energy residual, eV), ``energy_residual_std``
    (eV/atom), ``num_frames``, ``num_atoms_mean`` and, when graphs are given, ``avg_num_neighbors`` and
    ``pair_min_dist`` (:func:`pair_min_distances`).
    """
    counts = type_counts(frames, num_types)
    has_e = np.array([K.TOTAL_ENERGY in f for f in frames], dtype=bool)
    energies = np.array([f.get(K.TOTAL_ENERGY, np.nan) for f in frames], dtype=np.float64)
    shifts = fit_energy_shifts(counts[has_e], energies[has_e])
    n_atoms = counts.sum(axis=1)
    if has_e.sum() >= 2:
        resid = (energies[has_e] - counts[has_e] @ shifts) / n_atoms[has_e]
        resid_std = float(np.std(resid))
    else:
        resid_std = 0.0

    sq, n = 0.0, 0
    for f in frames:
        if K.FORCES in f:
            sq += float(np.sum(np.square(f[K.FORCES])))
            n += np.size(f[K.FORCES])
    force_rms = math.sqrt(sq / n) if n else resid_std
    if not (force_rms > 1e-12 and math.isfinite(force_rms)):
        force_rms = 1.0
    stats: Dict[str, Any] = {
        "energy_per_atom_shift": [float(x) for x in shifts],
        "force_rms": float(force_rms),
        "energy_residual_std": resid_std,
        K.NUM_FRAMES: int(len(frames)),
        "num_atoms_mean": float(n_atoms.mean()) if len(frames) else 0.0,
    }
    if graphs is not None and len(graphs):
        if len(graphs) != len(frames):
            raise ValueError(f"got {len(graphs)} graphs for {len(frames)} frames")
        n_edges = sum(int(g[0].shape[1]) for g in graphs)
        stats["avg_num_neighbors"] = float(n_edges / max(n_atoms.sum(), 1.0))
        stats["pair_min_dist"] = pair_min_distances(frames, graphs, num_types)
    return stats
