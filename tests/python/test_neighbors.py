"""Neighbor list vs an independent brute-force enumeration of periodic images."""
import itertools

import numpy as np
import pytest

from deqformer.data import neighbors
from deqformer.data.neighbors import build_graph


def reference_pairs(pos, r_max, cell=None, pbc=(False, False, False), n_img=4):
    """All (i, j, image) with 0 < |pos[j] - pos[i] + image @ cell| < r_max, by plain loops over images."""
    pos = np.asarray(pos, float)
    cell = np.zeros((3, 3)) if cell is None else np.asarray(cell, float)
    ranges = [range(-n_img, n_img + 1) if p else range(1) for p in pbc]
    out = set()
    for s in itertools.product(*ranges):
        shift = np.array(s) @ cell
        d = np.linalg.norm(pos[None, :, :] - pos[:, None, :] + shift, axis=-1)
        for i, j in zip(*np.nonzero((d < r_max) & (d > 0))):
            out.add((int(i), int(j), tuple(np.round(shift, 9))))
    return out


def graph_pairs(edge_index, edge_shift):
    return {(int(i), int(j), tuple(np.round(s, 9))) for (i, j), s in zip(edge_index.T, edge_shift)}


def check(pos, r_max, cell=None, pbc=None, n_img=4):
    ei, es = build_graph(pos, r_max, cell, pbc)
    assert ei.dtype == np.int64 and es.dtype == np.float64 and ei.shape[0] == 2 and es.shape == (ei.shape[1], 3)
    pbc_ref = (cell is not None,) * 3 if pbc is None else tuple(pbc)
    ref = reference_pairs(pos, r_max, cell, pbc_ref, n_img)
    got = graph_pairs(ei, es)
    assert len(got) == ei.shape[1], "duplicate edges"
    assert got == ref
    # sorted by (i, j, ...) and the edge-vector convention holds
    key = ei[0] * (len(pos) + 1) + ei[1]
    assert np.all(np.diff(key) >= 0)
    vec = np.asarray(pos)[ei[1]] - np.asarray(pos)[ei[0]] + es
    d = np.linalg.norm(vec, axis=1)
    assert np.all((d > 0) & (d < r_max))
    return ei, es


def test_non_periodic():
    rng = np.random.default_rng(0)
    pos = rng.uniform(0, 6, size=(30, 3))
    ei, es = check(pos, 2.5)
    assert np.all(es == 0)
    # symmetric: i<-j present iff j<-i
    pairs = set(map(tuple, ei.T.tolist()))
    assert all((j, i) in pairs for i, j in pairs)


def test_orthorhombic_with_atoms_outside_the_box():
    rng = np.random.default_rng(1)
    cell = np.diag([6.0, 7.0, 8.0])
    pos = rng.uniform(-3, 10, size=(25, 3))  # some atoms outside the cell
    check(pos, 3.0, cell)


def test_triclinic():
    rng = np.random.default_rng(2)
    cell = np.array([[5.0, 0.0, 0.0], [2.5, 4.5, 0.0], [-1.2, 1.7, 5.5]])
    frac = rng.uniform(0, 1, size=(20, 3))
    check(frac @ cell, 3.5, cell)


def test_small_cell_many_images_and_self_images():
    """r_max larger than the box: several images of each atom, including of itself."""
    cell = np.array([[2.0, 0.0, 0.0], [0.7, 2.2, 0.0], [0.3, 0.4, 2.1]])
    pos = np.array([[0.1, 0.2, 0.3], [1.1, 1.0, 0.9]])
    ei, es = check(pos, 4.5, cell, n_img=5)
    self_edges = ei[0] == ei[1]
    assert self_edges.any() and np.all(np.linalg.norm(es[self_edges], axis=1) > 0)
    # single atom: only self-images
    ei1, es1 = check(pos[:1], 4.5, cell, n_img=5)
    assert np.all(ei1 == 0) and len(ei1[0]) > 20


def test_mixed_pbc_slab():
    rng = np.random.default_rng(3)
    cell = np.array([[4.0, 0, 0], [0, 4.5, 0], [0, 0, 0.0]])  # no third vector: non-periodic direction
    pos = rng.uniform(0, 4, size=(12, 3)) * [1, 1, 3]
    check(pos, 3.0, cell, (True, True, False))


def test_cell_given_but_not_periodic():
    rng = np.random.default_rng(4)
    pos = rng.uniform(0, 3, size=(10, 3))
    ei, es = check(pos, 2.0, np.eye(3) * 3.0, (False, False, False))
    assert np.all(es == 0)


def test_large_system_uses_cell_list_and_agrees(monkeypatch):
    rng = np.random.default_rng(5)
    cell = np.array([[9.0, 0.0, 0.0], [1.0, 8.5, 0.0], [0.5, -0.8, 9.5]])
    pos = rng.uniform(-0.3, 1.4, size=(120, 3)) @ cell  # partly outside the cell
    dense = build_graph(pos, 3.2, cell)
    monkeypatch.setattr(neighbors, "_DENSE_MAX_ATOMS", 1)  # force the ASE cell-list path
    cl = build_graph(pos, 3.2, cell)
    assert np.array_equal(dense[0], cl[0])
    np.testing.assert_allclose(dense[1], cl[1], atol=1e-12)
    cl_np = build_graph(pos, 3.2)  # non-periodic through ASE as well
    monkeypatch.setattr(neighbors, "_DENSE_MAX_ATOMS", 600)
    np.testing.assert_array_equal(cl_np[0], build_graph(pos, 3.2)[0])


def test_deterministic_and_edge_cases():
    rng = np.random.default_rng(6)
    pos = rng.uniform(0, 5, size=(15, 3))
    a, b = build_graph(pos, 2.0, np.eye(3) * 5), build_graph(pos, 2.0, np.eye(3) * 5)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    ei, es = build_graph(np.zeros((0, 3)), 3.0)
    assert ei.shape == (2, 0) and es.shape == (0, 3)
    ei, es = build_graph(np.array([[0.0, 0, 0], [10.0, 0, 0]]), 3.0)
    assert ei.shape == (2, 0)
    # coincident atoms (distance 0) are refused; with min_dist=0 they are let through but are not
    # neighbours; the pair at exactly r_max is excluded
    with pytest.raises(ValueError, match="overlapping"):
        build_graph(np.array([[0.0, 0, 0], [0.0, 0, 0], [2.0, 0, 0]]), 2.0)
    ei, _ = build_graph(np.array([[0.0, 0, 0], [0.0, 0, 0], [2.0, 0, 0]]), 2.0, min_dist=0.0)
    assert ei.shape[1] == 0
    with pytest.raises(ValueError):
        build_graph(pos, 0.0)
    with pytest.raises(ValueError, match="zero cell vector"):
        build_graph(pos, 2.0, np.diag([5.0, 5.0, 0.0]), (True, True, True))


@pytest.mark.parametrize("n_copies", [1, 30])   # dense path and ASE cell-list path
def test_overlapping_atoms_are_refused(n_copies):
    """Two atoms at the same place (or 0.05 A apart) raise instead of silently losing their edge, in a
    molecule and across a periodic boundary; the threshold is min_dist."""
    rng = np.random.default_rng(3)
    pos = rng.uniform(0.0, 6.0 * n_copies ** (1 / 3), size=(20 * n_copies, 3))
    pos[5] = pos[2]
    with pytest.raises(ValueError, match=r"atoms 2 and 5 \(0-based\) are 0 A apart.*overlapping"):
        build_graph(pos, 3.0)
    pos[5] = pos[2] + [0.05, 0.0, 0.0]
    with pytest.raises(ValueError, match=r"0.05 A apart"):
        build_graph(pos, 3.0)
    build_graph(pos, 3.0, min_dist=0.01)   # allowed below a smaller threshold
    cell = np.eye(3) * 8.0 * n_copies ** (1 / 3)
    p2 = rng.uniform(1.0, 7.0, size=(20, 3))
    p2[0] = [0.01, 4.0, 4.0]
    p2[1] = [cell[0, 0] - 0.01, 4.0, 4.0]   # 0.02 A from atom 0 through the boundary
    with pytest.raises(ValueError, match=r"0.02 A apart"):
        build_graph(p2, 3.0, cell)
