"""Deploy -> torch.jit.load round trip and the contract's metadata."""
import os

import numpy as np
import pytest
import torch

from deqformer import keys as K
from deqformer import CONTRACT_VERSION
from deqformer.deploy import REQUIRED_KEYS, deploy, load_deployed
from deqformer.driver import retained_vjp
from modelkit import aspirin_geometry, make_batch, tiny_model


def test_round_trip_equals_eager(tmp_path):
    m = tiny_model()
    path = str(tmp_path / "m.pt")
    meta = deploy(m, path)
    for k in REQUIRED_KEYS:
        assert k in meta
    assert meta["contract_version"] == str(CONTRACT_VERSION)
    dm = load_deployed(path)
    assert dm.type_names == ["H", "C", "O"] and dm.r_max == 4.0
    b = make_batch(aspirin_geometry())
    ref = m(b)
    out = dm(b)
    assert abs(out["energy"].item() - ref["energy"].item()) < 1e-10
    np.testing.assert_allclose(out[K.FORCES].numpy(), ref[K.FORCES].detach().numpy(), atol=1e-10)


def test_contract_methods_and_shapes(tmp_path):
    m = tiny_model()
    path = str(tmp_path / "m.pt")
    deploy(m, path)
    mod = torch.jit.load(path)
    meta = mod.metadata()
    d, a = int(meta["state_dim"]), int(meta["edge_attr_dim"])
    b = make_batch(aspirin_geometry())
    n, ei = b[K.POSITIONS].shape[0], b[K.EDGE_INDEX]
    vec = b[K.POSITIONS][ei[1]] - b[K.POSITIONS][ei[0]]
    attr = mod.edge_features(vec, b[K.ATOM_TYPES], ei)
    assert attr.shape == (ei.shape[1], a) and attr.dtype == torch.float64
    x = mod.inject(b[K.ATOM_TYPES], ei, attr, n)
    assert x.shape == (n, d)
    z = torch.zeros(n, d, dtype=torch.float64)
    assert mod.step(z, x, ei, attr, n).shape == (n, d)
    assert mod.atomic_energy(z, b[K.ATOM_TYPES]).shape == (n,)
    e_pair = mod.pair_energy(vec, b[K.ATOM_TYPES], ei, n)
    assert e_pair.shape == (n,) and e_pair.dtype == torch.float64
    assert mod.energy_grad_z(z, b[K.ATOM_TYPES]).shape == (n, d)
    assert mod.adjoint_step(z, x, ei, attr, z, n).shape == (n, d)
    # the drivers' retained-graph vector-Jacobian product is adjoint_step (to rounding: the JIT may fuse ops)
    zf = mod.step(z, x, ei, attr, n)
    zr = zf.clone().requires_grad_(True)
    with torch.enable_grad():
        f_graph = mod.step(zr, x, ei, attr, n)
    for seed in range(3):
        u = torch.randn(n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(retained_vjp(f_graph, zr, u), mod.adjoint_step(zf, x, ei, attr, u, n),
                                   rtol=1e-12, atol=1e-12)
    assert mod.edge_grad(z, z, b[K.ATOM_TYPES], ei, vec, n).shape == (ei.shape[1], 3)
    state = mod.solver_init(z, 0, 5)
    z2, state = mod.solver_update(0, z, x, state, 0, 1.0, 1e-6)
    assert z2.shape == (n, d)


def test_float32_deploy(tmp_path):
    m = tiny_model()
    path = str(tmp_path / "m32.pt")
    meta = deploy(m, path, dtype=torch.float32)
    assert meta["dtype"] == "float32"
    out = load_deployed(path)(make_batch(aspirin_geometry()))
    assert out[K.FORCES].dtype == torch.float32


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_deployed(str(tmp_path / "nope.pt"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(2000))
    with pytest.raises(ValueError, match="not a TorchScript file"):
        load_deployed(str(junk))
    other = tmp_path / "other.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(other))
    with pytest.raises(ValueError, match="not a deqformer model"):
        load_deployed(str(other))
    m = tiny_model()
    old = tmp_path / "old.pt"
    deploy(m, str(old), overrides={"contract_version": "999"})
    with pytest.raises(ValueError, match="contract version 999"):
        load_deployed(str(old))
    good = tmp_path / "good.pt"
    deploy(m, str(good))
    data = good.read_bytes()
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a TorchScript file"):
        load_deployed(str(trunc))


def test_virial_is_minus_strain_derivative(tmp_path):
    """W = -dE/d(strain) by central differences of a homogeneous deformation of a periodic box."""
    m = tiny_model()
    path = str(tmp_path / "m.pt")
    deploy(m, path)
    dm = load_deployed(path)
    rng = np.random.default_rng(4)
    cell = np.array([[6.2, 0.0, 0.0], [0.5, 6.0, 0.0], [-0.3, 0.4, 6.6]])
    pos = rng.random((12, 3)) @ cell
    z = [1, 6, 8] * 4
    w = dm(make_batch(pos, z, cell))["virial"][0].numpy()
    h = 1e-5
    for a, b in [(0, 0), (1, 2), (2, 1)]:
        es = []
        for sgn in (1, -1):
            eps = np.eye(3)
            eps[a, b] += sgn * h
            es.append(dm(make_batch(pos @ eps.T, z, cell @ eps.T), compute_forces=False)["energy"].item())
        de = (es[0] - es[1]) / (2 * h)
        assert abs(-de - w[a, b]) < 1e-6 * max(1.0, abs(de)), (a, b, -de, w[a, b])


def test_ase_calculator_stress(tmp_path):
    from ase import Atoms
    from deqformer.ase_calculator import DeqformerCalculator
    m = tiny_model()
    path = str(tmp_path / "m.pt")
    deploy(m, path)
    rng = np.random.default_rng(8)
    cell = np.diag([6.0, 6.3, 6.6])
    atoms = Atoms(numbers=[1, 6, 8] * 4, positions=rng.random((12, 3)) @ cell, cell=cell, pbc=True)
    atoms.calc = DeqformerCalculator(path)
    s = atoms.get_stress()
    h = 1e-5
    for v, (a, b) in enumerate([(0, 0), (1, 1), (2, 2)]):
        es = []
        for sgn in (1, -1):
            at = atoms.copy()
            eps = np.eye(3)
            eps[a, b] += sgn * h
            at.set_cell(cell @ eps.T, scale_atoms=True)
            at.calc = DeqformerCalculator(path)
            es.append(at.get_potential_energy())
        assert abs((es[0] - es[1]) / (2 * h) / atoms.get_volume() - s[v]) < 1e-7
