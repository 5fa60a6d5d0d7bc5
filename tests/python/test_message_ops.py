"""The message operations: Clebsch-Gordan tensor product ('cg') and eSCN SO(2) convolution ('so2')."""
import math

import numpy as np
import pytest
import torch

from deqformer import keys as K
from deqformer.deploy import deploy, load_deployed
from deqformer.nn.attention import TensorProduct, message_op_dims
from deqformer.nn.so2 import M_ORDER, SO2Convolution, edge_frame
from deqformer.nn.so3 import spherical_harmonics, wigner_d_np
from modelkit import aspirin_geometry, make_batch, random_rotation, tiny_model


def _op(channels=5, parity=True):
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        return SO2Convolution(channels, parity)
    finally:
        torch.set_default_dtype(old)


def _units(n, seed):
    v = torch.from_numpy(np.random.default_rng(seed).normal(size=(n, 3)))
    v = v / v.norm(dim=1, keepdim=True)
    # the frame's special directions: the polar axis both ways, the equator, n_y = +-0
    v[:5] = torch.tensor([[0.0, 1.0, 0.0], [0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.6, 0.0, -0.8], [0.6, -0.0, 0.8]],
                         dtype=torch.float64)
    return v


def _rotations(n, seed, reflect=False):
    return torch.from_numpy(np.stack([random_rotation(seed + k, reflect) for k in range(n)]))


def _d_full(q):
    """Reference D (block-diagonal, e3nn order) by least squares in deqformer.nn.so3."""
    d = wigner_d_np(np.asarray(q))
    full = np.zeros((9, 9))
    full[0, 0] = 1.0
    full[1:4, 1:4] = d[1]
    full[4:, 4:] = d[2]
    return torch.from_numpy(full)


def test_edge_frame_is_a_rotation_to_the_polar_axis():
    n = _units(200, 0)
    rot = edge_frame(n)
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(rot @ rot.transpose(1, 2), eye.expand(200, 3, 3), atol=1e-14)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(200, dtype=torch.float64), atol=1e-14)
    y_axis = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64).expand(200, 3)
    assert torch.allclose(torch.einsum("eij,ej->ei", rot, n), y_axis, atol=1e-14)


@pytest.mark.parametrize("reflect", [False, True])
def test_wigner_d_orthogonal_homomorphism_and_consistent_with_sh(reflect):
    op = _op()
    r1, r2 = _rotations(20, 10, reflect), _rotations(20, 50)
    d1, d2, d12 = op.rotation_blocks(r1), op.rotation_blocks(r2), op.rotation_blocks(r1 @ r2)
    eye = torch.eye(9, dtype=torch.float64).expand(20, 9, 9)
    assert torch.allclose(d1 @ d1.transpose(1, 2), eye, atol=1e-13)
    assert torch.allclose(d12, d1 @ d2, atol=1e-13)
    # Y(R r) = D(R) Y(r) with our spherical harmonics (and the least-squares reference of so3.py)
    pts = _units(7, 3)
    for k in range(3):
        lhs = spherical_harmonics(pts @ r1[k].T)
        assert torch.allclose(lhs, spherical_harmonics(pts) @ d1[k].T, atol=1e-13)
        assert torch.allclose(d1[k], _d_full(r1[k]), atol=1e-12)


def test_frame_makes_y_pure_m0_and_pairs_rotate_alike():
    op = _op()
    n = _units(100, 1)
    d = op.wigner(n)                                               # m-sorted rows
    y = torch.einsum("eij,ej->ei", d, spherical_harmonics(n))
    y_m0 = torch.tensor([1.0, math.sqrt(3.0), math.sqrt(5.0)], dtype=torch.float64).expand(100, 3)
    assert torch.allclose(y[:, :3], y_m0, atol=1e-13)
    assert y[:, 3:].abs().max() < 1e-13
    # rotation about the polar axis by phi acts on every (-m, +m) pair as the same 2x2 rotation by m*phi
    phi = 0.7
    c, s = math.cos(phi), math.sin(phi)
    ry = torch.tensor([[[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]], dtype=torch.float64)
    dm = op.rotation_blocks(ry)[0][M_ORDER][:, M_ORDER]
    assert torch.allclose(dm[:3, :3], torch.eye(3, dtype=torch.float64), atol=1e-14)
    for m, rows in [(1, [3, 4, 5, 6]), (2, [7, 8])]:
        half = len(rows) // 2
        blk = dm[rows][:, rows]
        cm, sm = math.cos(m * phi), math.sin(m * phi)
        eye = torch.eye(half, dtype=torch.float64)
        want = torch.cat([torch.cat([cm * eye, sm * eye], 1), torch.cat([-sm * eye, cm * eye], 1)], 0)
        assert torch.allclose(blk, want, atol=1e-13), (m, blk)
    assert dm[:3, 3:].abs().max() < 1e-14 and dm[3:7, 7:].abs().max() < 1e-14


@pytest.mark.parametrize("parity", [True, False])
@pytest.mark.parametrize("reflect", [False, True])
def test_so2_op_equivariance(parity, reflect):
    """parity=True (the model's): O(3)-equivariant for 0e/1o/2e. parity=False adds the b terms of
    [[a, -b], [b, a]]: still rotation-equivariant but not reflection-equivariant (pseudo couplings)."""
    op = _op(5, parity)
    rng = np.random.default_rng(2)
    e = 60
    n = _units(e, 4)
    feat = torch.from_numpy(rng.normal(size=(e, 5, 9)))
    w = torch.from_numpy(rng.normal(size=(e, 5, 6)))
    q = random_rotation(7, reflect)
    d = _d_full(q)
    out = op(feat, spherical_harmonics(n), w)
    moved = op(feat @ d.T, spherical_harmonics(n @ torch.from_numpy(q).T), w)
    err = (moved - out @ d.T).abs().max().item()
    if parity or not reflect:
        assert err < 1e-12
    else:
        assert err > 1e-3
    # cached frames (what the model stores in edge_attr) give the same result; TorchScript too
    geom = op.edge_geometry(spherical_harmonics(n))
    assert geom.shape == (e, op.geom_dim)
    assert torch.allclose(op(feat, geom, w), out, atol=1e-13)
    assert torch.allclose(torch.jit.script(op)(feat, geom, w), out, atol=1e-13)


def test_cg_op_equivariance_and_dims():
    tp = TensorProduct().double()
    rng = np.random.default_rng(3)
    e = 40
    n = _units(e, 5)
    feat = torch.from_numpy(rng.normal(size=(e, 3, 9)))
    w = torch.from_numpy(rng.normal(size=(e, 3, tp.weight_width)))
    q = random_rotation(8, True)
    d = _d_full(q)
    out = tp(feat, spherical_harmonics(n), w)
    moved = tp(feat @ d.T, spherical_harmonics(n @ torch.from_numpy(q).T), w)
    assert (moved - out @ d.T).abs().max() < 1e-12
    assert message_op_dims("cg") == (tp.weight_width, tp.geom_dim)
    assert message_op_dims("so2") == (_op().weight_width, _op().geom_dim)


@pytest.fixture(scope="module")
def so2_model():
    return tiny_model(message="so2")


@pytest.mark.parametrize("reflect", [False, True])
def test_so2_model_invariance_and_force_equivariance(so2_model, reflect):
    pos = aspirin_geometry()
    ref = so2_model(make_batch(pos))
    rot = random_rotation(11, reflect)
    out = so2_model(make_batch(pos @ rot.T + np.array([0.4, -1.1, 2.0])))
    assert abs(out["energy"].item() - ref["energy"].item()) < 1e-10
    np.testing.assert_allclose(out[K.FORCES].detach().numpy(), ref[K.FORCES].detach().numpy() @ rot.T, atol=1e-10)


def test_so2_model_forces_are_minus_energy_gradient(so2_model):
    pos = aspirin_geometry()
    f = so2_model(make_batch(pos))["forces"].detach().numpy()
    h = 1e-4
    for atom, comp in [(0, 0), (5, 1), (13, 2), (20, 0)]:
        p1, p2 = pos.copy(), pos.copy()
        p1[atom, comp] += h
        p2[atom, comp] -= h
        e1 = so2_model(make_batch(p1), compute_forces=False)["energy"].item()
        e2 = so2_model(make_batch(p2), compute_forces=False)["energy"].item()
        fd = -(e1 - e2) / (2 * h)
        assert abs(fd - f[atom, comp]) <= 1e-6 * max(abs(fd), 1e-3), (atom, comp, fd, f[atom, comp])


def test_so2_explicit_mode_is_invariant():
    m = tiny_model(message="so2", mode="explicit", explicit_layers=2)
    pos = aspirin_geometry()
    a = m(make_batch(pos))["energy"].item()
    b = m(make_batch(pos @ random_rotation(12, True).T))["energy"].item()
    assert abs(a - b) < 1e-10


def test_so2_deploy_round_trip(so2_model, tmp_path):
    path = str(tmp_path / "so2.pt")
    meta = deploy(so2_model, path)
    assert meta["message"] == "so2"
    assert int(meta["edge_attr_dim"]) == so2_model.edge_attr_dim
    dm = load_deployed(path)
    assert dm.metadata["message"] == "so2"
    b = make_batch(aspirin_geometry())
    ref = so2_model(b)
    out = dm(b)
    assert abs(out["energy"].item() - ref["energy"].item()) < 1e-10
    np.testing.assert_allclose(out[K.FORCES].numpy(), ref[K.FORCES].detach().numpy(), atol=1e-10)


def test_message_config_is_validated():
    with pytest.raises(ValueError, match="message"):
        tiny_model(message="bogus")
    assert tiny_model().metadata_dict()["message"] == "cg"
