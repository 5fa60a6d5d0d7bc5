"""The trainer's per-frame fixed-point cache: starts solves from each frame's last fixed point."""
import numpy as np
import torch

from deqformer import keys as K
from deqformer.train.warm_start import FixedPointCache
from modelkit import aspirin_geometry, make_batch, tiny_model


def _batch_of_two(pos):
    a, b = make_batch(pos), make_batch(pos + 0.01)
    n = a[K.POSITIONS].shape[0]
    return {K.POSITIONS: torch.cat([a[K.POSITIONS], b[K.POSITIONS]]), K.ATOM_TYPES: torch.cat([a[K.ATOM_TYPES], b[K.ATOM_TYPES]]),
            K.EDGE_INDEX: torch.cat([a[K.EDGE_INDEX], b[K.EDGE_INDEX] + n], dim=1),
            K.EDGE_SHIFT: torch.cat([a[K.EDGE_SHIFT], b[K.EDGE_SHIFT]]),
            K.BATCH: torch.cat([torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)]),
            K.NUM_FRAMES: torch.tensor(2), K.NUM_ATOMS: torch.tensor([n, n]), K.SAMPLE_INDEX: torch.tensor([7, 3])}


def test_cache_reuse_fewer_iterations_same_answer():
    m = tiny_model(solver_tol=1e-8, adjoint_tol=1e-8).train()
    batch = _batch_of_two(aspirin_geometry())
    cache = FixedPointCache()
    cold = m(batch, z0=None, u0=None)
    cache.store(batch, cold)
    assert len(cache) == 2
    z0, u0 = cache.gather(batch)
    assert z0.shape == cold["z"].shape and u0.shape == cold["u"].shape
    # the frames come back in another order: rows follow sample_index
    swapped = _batch_of_two(aspirin_geometry())
    swapped[K.SAMPLE_INDEX] = torch.tensor([3, 7])
    z_sw, _ = cache.gather(swapped)
    n = int(batch[K.NUM_ATOMS][0])
    assert torch.equal(z_sw[:n], cold["z"][n:]) and torch.equal(z_sw[n:], cold["z"][:n])
    warm = m(batch, z0=z0, u0=u0)
    assert warm["solver_iters"].item() < cold["solver_iters"].item()
    assert warm["adjoint_iters"].item() < cold["adjoint_iters"].item()
    np.testing.assert_allclose(warm["energy"].detach().numpy(), cold["energy"].detach().numpy(), rtol=1e-7)
    np.testing.assert_allclose(warm[K.FORCES].detach().numpy(), cold[K.FORCES].detach().numpy(), atol=1e-6)


def test_cache_state_round_trip():
    m = tiny_model()
    batch = _batch_of_two(aspirin_geometry())
    cache = FixedPointCache()
    cache.store(batch, m(batch))
    other = FixedPointCache()
    other.load_state_dict(cache.state_dict())
    for a, b in zip(cache.gather(batch), other.gather(batch)):
        assert torch.equal(a, b)
    other.load_state_dict(None)
    assert len(other) == 0 and other.gather(batch) == (None, None)
