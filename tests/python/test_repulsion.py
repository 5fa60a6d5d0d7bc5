"""The core repulsion below the training data's closest contacts (deqformer.nn.repulsion)."""
import math

import numpy as np
import pytest
import torch

from deqformer import keys as K
from deqformer.data.neighbors import build_graph
from deqformer.data.statistics import compute_statistics, pair_min_distances
from deqformer.driver import evaluate_model
from deqformer.model import build_model
from deqformer.nn.repulsion import CoreRepulsion
from modelkit import TYPES, aspirin_geometry, make_batch, tiny_model


def zbl_reference(z1: int, z2: int, r: float) -> float:
    """ZBL universal screened Coulomb energy (eV), written independently of the module under test."""
    a = 0.8854 * 0.529177 / (z1 ** 0.23 + z2 ** 0.23)     # Bohr radius in Angstrom
    x = r / a
    phi = (0.18175 * math.exp(-3.1998 * x) + 0.50986 * math.exp(-0.94229 * x) + 0.28022 * math.exp(-0.4029 * x)
           + 0.02817 * math.exp(-0.20162 * x))
    return 14.399645 * z1 * z2 / r * phi


def make_rep(names, walls, **kw) -> CoreRepulsion:
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)      # as build_model does: walls exactly as given
    try:
        return CoreRepulsion(names, walls, **kw)
    finally:
        torch.set_default_dtype(old)


def dimer_energy(rep: CoreRepulsion, t1: int, t2: int, r: float) -> float:
    vec = torch.tensor([[r, 0.0, 0.0], [-r, 0.0, 0.0]], dtype=torch.float64)
    ei = torch.tensor([[0, 1], [1, 0]])
    return float(rep(vec, torch.tensor([t1, t2]), ei, 2).sum())


def test_zbl_inside_zero_outside_smooth_between():
    rep = make_rep(["H", "C", "O"], [[1.6, 1.0, 0.9], [1.0, 1.3, 1.2], [0.9, 1.2, 2.2]], inner=0.75)
    # full ZBL well inside the wall (sum of the two directed half-edges)
    for r in (0.3, 0.8, 1.1):
        assert dimer_energy(rep, 0, 0, r) == pytest.approx(zbl_reference(1, 1, r), rel=1e-4)
    assert dimer_energy(rep, 1, 2, 0.7) == pytest.approx(zbl_reference(6, 8, 0.7), rel=1e-4)
    # exactly zero at and beyond the wall, for both orders of the pair
    for r in (1.6, 1.7, 3.9):
        assert dimer_energy(rep, 0, 0, r) == 0.0
    assert dimer_energy(rep, 0, 1, 1.0) == 0.0 and dimer_energy(rep, 1, 0, 1.01) == 0.0
    # repulsive (energy falls monotonically with distance) and C2 at the wall: slope and curvature vanish
    rs = np.linspace(0.5, 1.7, 121)
    e = np.array([dimer_energy(rep, 0, 0, r) for r in rs])
    assert np.all(np.diff(e) <= 0.0) and e[0] > 1.0
    h = 1e-4
    left = [dimer_energy(rep, 0, 0, 1.6 - k * h) for k in range(3)]
    assert abs(left[0] - left[1]) / h < 1e-6 and abs(left[0] - 2 * left[1] + left[2]) / h ** 2 < 0.1


def test_zero_on_the_frames_that_set_the_walls():
    """The walls are the training frames' closest contacts: the prior adds nothing there, so it does not
    change what the model is fitted to."""
    rng = np.random.default_rng(3)
    base = aspirin_geometry()
    z = [8] * 4 + [6] * 9 + [1] * 8
    frames, graphs = [], []
    for _ in range(6):
        pos = base + rng.normal(scale=0.05, size=base.shape)
        frames.append({K.POSITIONS: pos, K.ATOM_TYPES: np.array([TYPES[v] for v in z])})
        graphs.append(build_graph(pos, 4.0))
    walls = pair_min_distances(frames, graphs, 3)
    h_o = min(np.linalg.norm(f[K.POSITIONS][13:, None] - f[K.POSITIONS][None, :4], axis=2).min() for f in frames)
    assert walls[0][2] == pytest.approx(h_o, rel=1e-12)
    assert walls == [list(row) for row in np.array(walls).T]          # symmetric
    stats = compute_statistics([dict(f, total_energy=0.0) for f in frames], 3, graphs)
    assert stats["pair_min_dist"] == walls
    m = build_model({"irreps": "4x0e+2x1o+2x2e", "msg_channels": 2, "num_heads": 1}, ["H", "C", "O"], 4.0, stats)
    for f, (ei, shift) in zip(frames, graphs):
        ei = torch.as_tensor(ei)
        vec = torch.as_tensor(f[K.POSITIONS][ei[1]] - f[K.POSITIONS][ei[0]] + shift)
        assert float(m.pair_energy(vec, torch.as_tensor(f[K.ATOM_TYPES]), ei, 21).abs().max()) == 0.0
    # a pair pushed inside its wall is repelled
    pos = frames[0][K.POSITIONS].copy()
    pos[20] = pos[0] + 0.6 * (pos[20] - pos[0]) / np.linalg.norm(pos[20] - pos[0])   # an H 0.6 A from an O
    b = make_batch(pos)
    vec = b[K.POSITIONS][b[K.EDGE_INDEX][1]] - b[K.POSITIONS][b[K.EDGE_INDEX][0]]
    assert float(m.pair_energy(vec, b[K.ATOM_TYPES], b[K.EDGE_INDEX], 21).sum()) > 1.0


def test_close_contact_forces_are_the_energy_gradient():
    """Central differences of the total energy (prior included) with a pair deep inside its wall."""
    m = tiny_model()
    pos = aspirin_geometry()
    pos[20] = pos[19] + np.array([0.62, 0.3, -0.2])      # two H 0.72 A apart
    b = make_batch(pos)
    out = evaluate_model(m, b)
    assert float(m.pair_energy(b[K.POSITIONS][b[K.EDGE_INDEX][1]] - b[K.POSITIONS][b[K.EDGE_INDEX][0]], b[K.ATOM_TYPES],
                               b[K.EDGE_INDEX], 21).sum()) > 0.5
    h = 1e-5
    for k, d in ((20, 0), (19, 1), (0, 2)):
        e = []
        for sgn in (1, -1):
            p = pos.copy()
            p[k, d] += sgn * h
            e.append(float(evaluate_model(m, make_batch(p), compute_forces=False)["energy"]))
        fd = -(e[0] - e[1]) / (2 * h)
        assert float(out[K.FORCES][k, d]) == pytest.approx(fd, rel=1e-6, abs=1e-8)


def test_switched_off():
    m = tiny_model(repulsion="none")
    b = make_batch(aspirin_geometry())
    vec = b[K.POSITIONS][b[K.EDGE_INDEX][1]] - b[K.POSITIONS][b[K.EDGE_INDEX][0]]
    assert float(m.pair_energy(vec, b[K.ATOM_TYPES], b[K.EDGE_INDEX], 21).abs().sum()) == 0.0
    assert m.metadata_dict()["repulsion"] == "none"
    # types that are not element symbols get no repulsion
    rep = make_rep(["Hx", "C"], [[1.0, 1.0], [1.0, 1.0]])
    assert dimer_energy(rep, 0, 1, 0.5) == 0.0 and dimer_energy(rep, 1, 1, 0.5) > 0.0


def test_bad_walls_and_inner():
    with pytest.raises(ValueError, match="3 x 3"):
        CoreRepulsion(["H", "C", "O"], [[1.0, 1.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="repulsion_inner"):
        tiny_model(repulsion_inner=1.0)
    with pytest.raises(ValueError, match="repulsion"):
        tiny_model(repulsion="lj")
