"""Physics of the model: symmetry, exact forces through the fixed point, solver behaviour."""
import numpy as np
import pytest
import torch

from deqformer import keys as K
from deqformer.driver import contraction, edge_vectors, settings_from_metadata, solve_and_differentiate
from modelkit import ASPIRIN_Z, aspirin_geometry, make_batch, random_rotation, tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def run(model, batch, **kw):
    return model(batch, **kw)


@pytest.mark.parametrize("attention", ["mlp", "dot"])
@pytest.mark.parametrize("reflect", [False, True])
def test_rotation_reflection_translation(attention, reflect):
    m = tiny_model(attention=attention)
    pos = aspirin_geometry()
    ref = run(m, make_batch(pos))
    rot = random_rotation(3, reflect)
    moved = pos @ rot.T + np.array([1.3, -2.0, 0.7])
    out = run(m, make_batch(moved))
    assert abs(out["energy"].item() - ref["energy"].item()) < 1e-10
    np.testing.assert_allclose(out[K.FORCES].detach().numpy(), ref[K.FORCES].detach().numpy() @ rot.T, atol=1e-10)


def test_permutation(model):
    pos = aspirin_geometry()
    ref = run(model, make_batch(pos))
    perm = np.random.default_rng(1).permutation(len(pos))
    out = run(model, make_batch(pos[perm], [ASPIRIN_Z[p] for p in perm]))
    assert abs(out["energy"].item() - ref["energy"].item()) < 1e-10
    np.testing.assert_allclose(out[K.FORCES].detach().numpy(), ref[K.FORCES].detach().numpy()[perm], atol=1e-10)


def test_forces_are_minus_energy_gradient(model):
    """Central finite differences of the converged energy vs the adjoint forces."""
    pos = aspirin_geometry()
    out = run(model, make_batch(pos))
    f = out[K.FORCES].detach().numpy()
    h = 1e-4
    for atom, comp in [(0, 0), (5, 1), (13, 2), (20, 0)]:
        p1, p2 = pos.copy(), pos.copy()
        p1[atom, comp] += h
        p2[atom, comp] -= h
        e1 = run(model, make_batch(p1), compute_forces=False)["energy"].item()
        e2 = run(model, make_batch(p2), compute_forces=False)["energy"].item()
        fd = -(e1 - e2) / (2 * h)
        assert abs(fd - f[atom, comp]) <= 1e-6 * max(abs(fd), 1e-3), (atom, comp, fd, f[atom, comp])


def test_periodic_finite_differences_and_virial():
    m = tiny_model()
    rng = np.random.default_rng(5)
    cell = np.array([[6.0, 0.0, 0.0], [0.8, 6.5, 0.0], [0.3, -0.4, 7.0]])
    frac = rng.random((12, 3))
    pos = frac @ cell
    # keep atoms apart
    z = [1, 6, 8] * 4
    out = m(make_batch(pos, z, cell))
    f = out[K.FORCES].detach().numpy()
    h = 1e-4
    for atom, comp in [(0, 0), (7, 2)]:
        p1, p2 = pos.copy(), pos.copy()
        p1[atom, comp] += h
        p2[atom, comp] -= h
        e1 = m(make_batch(p1, z, cell), compute_forces=False)["energy"].item()
        e2 = m(make_batch(p2, z, cell), compute_forces=False)["energy"].item()
        assert abs(-(e1 - e2) / (2 * h) - f[atom, comp]) < 1e-6 * max(1e-3, abs(f[atom, comp]))
    assert np.isfinite(f).all()


def test_implicit_gradient_equals_unrolled_backprop():
    """Exact implicit forces == autograd through a long unrolled (converged) iteration."""
    m = tiny_model()
    pos = aspirin_geometry()
    batch = make_batch(pos)
    exact = m(batch)["forces"].detach()
    p = batch[K.POSITIONS].clone().requires_grad_(True)
    ei, shift = batch[K.EDGE_INDEX], batch[K.EDGE_SHIFT]
    vec = p.index_select(0, ei[1]) - p.index_select(0, ei[0]) + shift
    attr = m.edge_features(vec, batch[K.ATOM_TYPES], ei)
    n = p.shape[0]
    x = m.inject(batch[K.ATOM_TYPES], ei, attr, n)
    z = torch.zeros_like(x)
    state = m.solver_init(z, 0, 5)
    for k in range(80):      # Anderson, differentiated through every iteration
        fz = m.step(z, x, ei, attr, n)
        z, state = m.solver_update(0, z, fz, state, k, 1.0, 1e-10)
    z = m.step(z, x, ei, attr, n)
    e = m.atomic_energy(z, batch[K.ATOM_TYPES]).sum() + m.pair_energy(vec, batch[K.ATOM_TYPES], ei, n).sum()
    unrolled = -torch.autograd.grad(e, p)[0]
    np.testing.assert_allclose(unrolled.numpy(), exact.numpy(), atol=1e-9, rtol=1e-7)


def test_reuse_same_answer_fewer_iterations(model):
    pos = aspirin_geometry()
    s = settings_from_metadata(model.metadata_dict(), tol=1e-8, adjoint_tol=1e-8)
    b0 = make_batch(pos)
    cold0 = solve_and_differentiate(model, b0[K.POSITIONS], b0[K.ATOM_TYPES], b0[K.EDGE_INDEX], b0[K.EDGE_SHIFT], s)
    moved = pos + 0.01 * np.random.default_rng(2).normal(size=pos.shape)   # a small MD-like step
    b1 = make_batch(moved)
    args = (model, b1[K.POSITIONS], b1[K.ATOM_TYPES], b1[K.EDGE_INDEX], b1[K.EDGE_SHIFT], s)
    cold = solve_and_differentiate(*args)
    warm = solve_and_differentiate(*args, z0=cold0["z"], u0=cold0["u"])
    assert warm["solver_iters"] < cold["solver_iters"]
    assert warm["adjoint_iters"] < cold["adjoint_iters"]
    e_cold, e_warm = cold["atomic_energy"].sum().item(), warm["atomic_energy"].sum().item()
    assert abs(e_cold - e_warm) < 1e-6 * abs(e_cold)
    np.testing.assert_allclose(warm[K.FORCES].numpy(), cold[K.FORCES].numpy(), atol=1e-6)


@pytest.mark.parametrize("solver", ["anderson", "broyden", "picard"])
def test_solvers_agree(solver):
    ref = tiny_model()
    m = tiny_model(solver=solver, solver_memory=30 if solver == "broyden" else 5,
                   solver_beta=0.8 if solver == "picard" else 1.0, solver_max_iter=400)
    b = make_batch(aspirin_geometry())
    a = ref(b)
    o = m(b)
    assert abs(a["energy"].item() - o["energy"].item()) < 1e-9
    np.testing.assert_allclose(o[K.FORCES].detach().numpy(), a[K.FORCES].detach().numpy(), atol=1e-8)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_anderson_step_survives_a_degenerate_history(dtype):
    """Atoms whose Anderson history makes the Gram matrix singular (here: the same residual twice, no ridge)
    take a plain fixed-point step; the other atoms keep the Anderson mixing, and no solve raises
    torch.linalg.solve's 'input matrix is singular'."""
    from deqformer.solvers import solver_init, solver_update
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(4, 6, generator=g, dtype=dtype), torch.randn(4, 6, generator=g, dtype=dtype)
    f0, f1 = torch.randn(4, 6, generator=g, dtype=dtype), torch.randn(4, 6, generator=g, dtype=dtype)
    z1[2], f1[2] = z0[2] + 1.0, f0[2] + 1.0                  # atom 2: identical residual f - z in both slots
    state = solver_init(z0, 0, 3)
    _, state = solver_update(0, z0, f0, state, 0, 1.0, 0.0)
    z2, _ = solver_update(0, z1, f1, state, 1, 1.0, 0.0)
    assert torch.isfinite(z2).all()
    torch.testing.assert_close(z2[2], f1[2])
    ok = [0, 1, 3]
    r0, r1 = (f0 - z0)[ok], (f1 - z1)[ok]
    alpha = ((r1 - r0) * r1).sum(1) / ((r1 - r0) ** 2).sum(1)     # two-slot Anderson weights, by hand
    expect = (1 - alpha)[:, None] * f1[ok] + alpha[:, None] * f0[ok]
    torch.testing.assert_close(z2[ok], expect, rtol=1e-4 if dtype == torch.float32 else 1e-10, atol=1e-5)


def test_nonconvergence_is_reported():
    m = tiny_model(solver_max_iter=2)
    out = m(make_batch(aspirin_geometry()))
    assert out["solver_iters"].item() == 2
    assert out["solver_residual"].item() > 1e-12


def test_float32_close_to_float64():
    m = tiny_model()
    b = make_batch(aspirin_geometry())
    ref = m(b)
    m32 = tiny_model(deploy_tol=1e-5, adjoint_tol=1e-5).to(torch.float32)
    b32 = {k: (v.float() if v.is_floating_point() else v) for k, v in b.items()}
    out = m32(b32)
    assert abs(out["energy"].item() - ref["energy"].item()) < 1e-4 * abs(ref["energy"].item())
    np.testing.assert_allclose(out[K.FORCES].detach().numpy(), ref[K.FORCES].detach().numpy(), atol=2e-3)


def test_explicit_mode_runs_and_is_equivariant():
    m = tiny_model(mode="explicit", explicit_layers=3)
    pos = aspirin_geometry()
    a = m(make_batch(pos))
    rot = random_rotation(9)
    b = m(make_batch(pos @ rot.T))
    assert abs(a["energy"].item() - b["energy"].item()) < 1e-10


def test_phantom_training_gradient_runs():
    m = tiny_model(grad="phantom").train()
    out = m(make_batch(aspirin_geometry()))
    loss = out["energy"].sum() + out[K.FORCES].pow(2).sum()
    loss.backward()
    assert all(p.grad is not None for p in m.readout.parameters())


def test_implicit_training_gradient_is_exact_for_energy():
    """dE/dtheta from the Lagrangian equals a finite difference in a parameter."""
    m = tiny_model().train()
    b = make_batch(aspirin_geometry())
    out = m(b, compute_forces=False)
    out["energy"].sum().backward()
    w = m.block.attn.lin_out.w0
    g = w.grad[0, 0].item()
    h = 1e-5
    m.eval()
    with torch.no_grad():
        w[0, 0] += h
    e1 = m(b, compute_forces=False)["energy"].item()
    with torch.no_grad():
        w[0, 0] -= 2 * h
    e2 = m(b, compute_forces=False)["energy"].item()
    assert abs((e1 - e2) / (2 * h) - g) < 1e-6 * max(1.0, abs(g))


def test_contraction_matches_the_dense_jacobian(model):
    """driver.contraction (double-VJP power iteration) against the SVD and eigenvalues of the full
    df/dz at the fixed point."""
    b = make_batch(aspirin_geometry())
    z = model(b, compute_forces=False)["z"].detach()
    c = contraction(model, b[K.POSITIONS], b[K.ATOM_TYPES], b[K.EDGE_INDEX], b[K.EDGE_SHIFT], z, iters=60)
    n = z.shape[0]
    vec = edge_vectors(b[K.POSITIONS], b[K.EDGE_INDEX], b[K.EDGE_SHIFT])
    attr = model.edge_features(vec, b[K.ATOM_TYPES], b[K.EDGE_INDEX])
    x = model.inject(b[K.ATOM_TYPES], b[K.EDGE_INDEX], attr, n)
    jac = torch.autograd.functional.jacobian(lambda zz: model.step(zz, x, b[K.EDGE_INDEX], attr, n), z)
    jac = jac.reshape(z.numel(), z.numel())
    sigma = torch.linalg.svdvals(jac)[0].item()
    rho = torch.linalg.eigvals(jac).abs().max().item()
    assert 0.99 * sigma <= c.sigma_max <= sigma * (1 + 1e-9)
    assert 0.8 * rho <= c.rate <= sigma
