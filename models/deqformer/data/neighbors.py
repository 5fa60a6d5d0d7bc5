"""Radius graphs (neighbor lists) with periodic images.

Convention (shared with the model, the deployed file and the LAMMPS pair style)::

    edge_index[0] = i   (center atom)
    edge_index[1] = j   (neighbor atom)
    edge_vec = pos[j] - pos[i] + edge_shift,   edge_shift = S @ cell   (S: integer image vector)

All pairs with ``0 < |edge_vec| < r_max`` are included, in both directions, including periodic
images of an atom with itself (only the zero-shift self pair is excluded). Edges are sorted by
``(i, j, S)`` so the result is deterministic.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

__all__ = ["build_graph", "brute_force_graph"]

# Below this many atoms a dense O(N^2) distance matrix is cheaper than a cell list.
_DENSE_MAX_ATOMS = 600


def _normalize(pos: np.ndarray, cell: Optional[np.ndarray], pbc: Optional[Sequence[bool]]
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    pos = np.ascontiguousarray(pos, dtype=np.float64).reshape(-1, 3)
    if cell is None:
        cell_arr = np.zeros((3, 3))
    else:
        cell_arr = np.asarray(cell, dtype=np.float64)
        if cell_arr.shape == (3,):
            cell_arr = np.diag(cell_arr)
        cell_arr = cell_arr.reshape(3, 3)
    if pbc is None:
        pbc_arr = np.array([cell is not None] * 3, dtype=bool)
    else:
        pbc_arr = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
    for k in range(3):
        if pbc_arr[k] and not np.linalg.norm(cell_arr[k]) > 0:
            raise ValueError(f"periodic direction {k} has a zero cell vector")
    if pbc_arr.any() and abs(np.linalg.det(cell_arr)) < 1e-12 * max(np.abs(cell_arr).max(), 1.0) ** 3:
        # A degenerate cell is only acceptable when the non-periodic vectors are zero; complete it.
        cell_arr = _complete_cell(cell_arr, pbc_arr)
    return pos, cell_arr, pbc_arr


def _complete_cell(cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """Replace zero non-periodic cell vectors by unit vectors orthogonal to the periodic ones."""
    cell = cell.copy()
    for k in range(3):
        if not pbc[k] and not np.linalg.norm(cell[k]) > 0:
            others = [cell[m] for m in range(3) if m != k and np.linalg.norm(cell[m]) > 0]
            if len(others) == 2:
                v = np.cross(others[0], others[1])
            else:
                # pick the coordinate axis least aligned with the existing vectors
                v = np.eye(3)[np.argmin([sum(abs(np.dot(e, o)) for o in others) for e in np.eye(3)])]
                for o in others:
                    v = v - np.dot(v, o) / np.dot(o, o) * o
            cell[k] = v / np.linalg.norm(v)
    if abs(np.linalg.det(cell)) < 1e-12:
        raise ValueError("cell vectors are linearly dependent")
    return cell


def _image_ranges(pos: np.ndarray, cell: np.ndarray, pbc: np.ndarray, r_max: float) -> np.ndarray:
    """Largest |S_k| of an image vector S that can give a pair closer than r_max.

    A pair's separation along direction k, measured between lattice planes, is
    |S_k + df_k| * h_k (df: fractional-coordinate difference, h_k: plane spacing), so
    |S_k| < r_max / h_k + spread_k with spread_k = max - min of the fractional coordinates.
    Positions do not need to be wrapped into the cell.
    """
    n = np.zeros(3, dtype=np.int64)
    if not pbc.any():
        return n
    volume = abs(np.linalg.det(cell))
    frac = pos @ np.linalg.inv(cell) if len(pos) else np.zeros((1, 3))
    spread = frac.max(axis=0) - frac.min(axis=0)
    for k in range(3):
        if pbc[k]:
            a, b = cell[(k + 1) % 3], cell[(k + 2) % 3]
            height = volume / np.linalg.norm(np.cross(a, b))  # distance between lattice planes
            n[k] = int(np.floor(r_max / height + spread[k] + 1e-9))
    return n


def _sort_edges(i: np.ndarray, j: np.ndarray, s: np.ndarray, cell: np.ndarray
                ) -> Tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((s[:, 2], s[:, 1], s[:, 0], j, i))
    edge_index = np.stack([i[order], j[order]]).astype(np.int64)
    edge_shift = s[order].astype(np.float64) @ cell
    return np.ascontiguousarray(edge_index), np.ascontiguousarray(edge_shift)


def _empty(cell: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    return np.zeros((2, 0), dtype=np.int64), np.zeros((0, 3), dtype=np.float64)


# Two atoms closer than this are "overlapping": the model is not defined there (the pair style's
# min_dist default is the same); build_graph refuses them instead of silently dropping the pair.
MIN_DIST = 0.1


def _refuse_overlaps(i: np.ndarray, j: np.ndarray, d: np.ndarray, min_dist: float) -> None:
    bad = d < min_dist
    if bad.any():
        k = int(np.argmin(np.where(bad, d, np.inf)))
        raise ValueError(f"atoms {int(i[k])} and {int(j[k])} (0-based) are {float(d[k]):.4g} A apart "
                         f"({int(bad.sum()) // 2} pair(s) closer than {min_dist} A): overlapping atoms, for which "
                         f"the model is not defined; check the structure for duplicated atoms")


def brute_force_graph(pos: np.ndarray, r_max: float, cell: Optional[np.ndarray] = None,
                      pbc: Optional[Sequence[bool]] = None, min_dist: float = MIN_DIST
                      ) -> Tuple[np.ndarray, np.ndarray]:
    """Reference O(N^2 * images) implementation; same output contract as :func:`build_graph`."""
    pos, cell, pbc = _normalize(pos, cell, pbc)
    n = _image_ranges(pos, cell, pbc, r_max)
    grids = np.meshgrid(*[np.arange(-m, m + 1) for m in n], indexing="ij")
    shifts = np.stack([g.ravel() for g in grids], axis=1)  # [S, 3]
    ii, jj, ss = [], [], []
    for s in shifts:
        vec = pos[None, :, :] - pos[:, None, :] + s @ cell  # [i, j, 3]
        d = np.linalg.norm(vec, axis=-1)
        if not s.any():
            np.fill_diagonal(d, np.inf)   # an atom and itself
        ci, cj = np.nonzero(d < min_dist)
        _refuse_overlaps(ci, cj, d[ci, cj], min_dist)
        mask = (d < r_max) & (d > 0)
        i, j = np.nonzero(mask)
        ii.append(i)
        jj.append(j)
        ss.append(np.repeat(s[None, :], len(i), axis=0))
    i, j, s = np.concatenate(ii), np.concatenate(jj), np.concatenate(ss)
    if len(i) == 0:
        return _empty(cell)
    return _sort_edges(i, j, s.astype(np.int64), cell)


def build_graph(pos: np.ndarray, r_max: float, cell: Optional[np.ndarray] = None,
                pbc: Optional[Sequence[bool]] = None, min_dist: float = MIN_DIST
                ) -> Tuple[np.ndarray, np.ndarray]:
    """Directed radius graph of one structure.

    Args:
        pos: [n, 3] Cartesian positions (Angstrom). Atoms may lie outside the cell.
        r_max: cutoff radius (Angstrom); pairs with distance < r_max are neighbors.
        cell: [3, 3] cell (rows are lattice vectors) or None for a molecule in vacuum.
        pbc: [3] periodic flags; default: periodic in all directions iff a cell is given.
        min_dist: two atoms (or an atom and a periodic image of another or of itself) closer than this
            raise ValueError: overlapping atoms, for which the model is not defined.

    Returns:
        edge_index [2, E] int64 (row 0 = center i, row 1 = neighbor j) and edge_shift [E, 3]
        float64 in Angstrom, sorted by (i, j, image).
    """
    if not r_max > 0:
        raise ValueError(f"r_max must be positive, got {r_max}")
    pos, cell, pbc = _normalize(pos, cell, pbc)
    n_atoms = len(pos)
    if n_atoms == 0:
        return _empty(cell)
    n_img = _image_ranges(pos, cell, pbc, r_max)
    n_images = int(np.prod(2 * n_img + 1))
    if n_atoms * n_atoms * n_images <= _DENSE_MAX_ATOMS ** 2:
        return brute_force_graph(pos, r_max, cell, pbc, min_dist)

    from ase.neighborlist import primitive_neighbor_list

    i, j, s = primitive_neighbor_list("ijS", pbc, cell, pos, float(r_max), self_interaction=False)
    s = s.astype(np.int64)
    # Apply the exact criterion 0 < d < r_max ourselves (ASE may differ at the boundaries).
    d = np.linalg.norm(pos[j] - pos[i] + s @ cell, axis=1)
    _refuse_overlaps(i, j, d, min_dist)
    keep = (d < r_max) & (d > 0)
    if not keep.any():
        return _empty(cell)
    return _sort_edges(i[keep], j[keep], s[keep], cell)
