"""SO(3) algebra for Lmax = 2: real spherical harmonics and real Clebsch-Gordan (Wigner 3j) tensors.

Conventions follow e3nn so its users can read the features: component normalisation
(sum_m Y_lm(r)^2 = 2l+1 on the unit sphere), l = 1 is sqrt(3) (x, y, z), and the irreps of one l are
stored channel-major with m fastest ("64x0e+32x1o+16x2e" -> [64 | 32*3 | 16*5]).
The coupling tensors are computed numerically once (null space of the equivariance constraint),
normalised to unit Frobenius norm; they equal e3nn's ``o3.wigner_3j`` entry for entry up to the sign of
two paths (tests/python/test_e3nn_conventions.py checks all of this against e3nn 0.5 when it is importable).
"""
from functools import lru_cache
from typing import Dict, List, Tuple

import numpy as np
import torch

LMAX = 2
# (l1, l2, l3) coupling paths with l1, l2, l3 <= 2, triangle rule and even l1 + l2 + l3
# (parity: features are 0e, 1o, 2e and spherical harmonics have parity (-1)^l).
PATHS: List[Tuple[int, int, int]] = [
    (l1, l2, l3)
    for l1 in range(LMAX + 1)
    for l2 in range(LMAX + 1)
    for l3 in range(LMAX + 1)
    if abs(l1 - l2) <= l3 <= l1 + l2 and (l1 + l2 + l3) % 2 == 0
]


def spherical_harmonics_np(vec: np.ndarray) -> np.ndarray:
    """Real spherical harmonics l = 0..2 of unit vectors, [..., 9] (numpy, float64)."""
    x, y, z = vec[..., 0], vec[..., 1], vec[..., 2]
    s3, s5, s15 = np.sqrt(3.0), np.sqrt(5.0), np.sqrt(15.0)
    return np.stack([
        np.ones_like(x),
        s3 * x, s3 * y, s3 * z,
        s15 * x * z, s15 * x * y, s5 * (y * y - 0.5 * (x * x + z * z)), s15 * y * z,
        0.5 * s15 * (z * z - x * x),
    ], axis=-1)


def spherical_harmonics(unit: torch.Tensor) -> torch.Tensor:
    """Real spherical harmonics l = 0..2 of unit vectors [E, 3] -> [E, 9] (TorchScript-able)."""
    x = unit[:, 0]
    y = unit[:, 1]
    z = unit[:, 2]
    s3 = 1.7320508075688772
    s5 = 2.23606797749979
    s15 = 3.872983346207417
    return torch.stack([
        torch.ones_like(x),
        s3 * x, s3 * y, s3 * z,
        s15 * x * z, s15 * x * y, s5 * (y * y - 0.5 * (x * x + z * z)), s15 * y * z,
        0.5 * s15 * (z * z - x * x),
    ], dim=1)


_SL = {0: slice(0, 1), 1: slice(1, 4), 2: slice(4, 9)}


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    a, b, c, d = q
    return np.array([
        [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
        [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
        [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
    ])


def wigner_d_np(rot: np.ndarray) -> Dict[int, np.ndarray]:
    """D_l(R) with Y_l(R r) = D_l(R) Y_l(r), found by least squares on random points."""
    rng = np.random.default_rng(1234)
    pts = rng.normal(size=(64, 3))
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    y = spherical_harmonics_np(pts)
    yr = spherical_harmonics_np(pts @ rot.T)
    out = {}
    for l, sl in _SL.items():
        sol, *_ = np.linalg.lstsq(y[:, sl], yr[:, sl], rcond=None)
        out[l] = sol.T
    return out


@lru_cache(maxsize=None)
def wigner_3j_np(l1: int, l2: int, l3: int) -> np.ndarray:
    """Real coupling tensor C[m1, m2, m3] with C(D1 a, D2 b) = D3 C(a, b), unit Frobenius norm."""
    d1, d2, d3 = 2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1
    rng = np.random.default_rng(7)
    rows = []
    for _ in range(4):
        d = wigner_d_np(_random_rotation(rng))
        # linear map C -> einsum(D1, D2, C) - einsum(D3, C) as a matrix over vec(C)
        lhs = np.einsum("ia,jb,kc->abcijk", d[l1], d[l2], np.eye(d3))
        rhs = np.einsum("ck,ia,jb->abcijk", d[l3], np.eye(d1), np.eye(d2))
        n = d1 * d2 * d3
        rows.append((lhs - rhs).reshape(n, n).T)
    mat = np.concatenate(rows, axis=0)
    _, s, vt = np.linalg.svd(mat)
    null = vt[-1]
    if s[-1] > 1e-8 or (len(s) > 1 and s[-2] < 1e-6):
        raise ValueError(f"no unique coupling for ({l1},{l2},{l3})")
    c = null.reshape(d1, d2, d3)
    c /= np.linalg.norm(c)
    # sign: the first non-zero entry is positive. e3nn's wigner_3j has the opposite sign for (1, 1, 2) and
    # (2, 2, 2); a path's sign is absorbed by its learned weight, and models trained with this sign keep it
    first = c.flatten()[np.argmax(np.abs(c.flatten()) > 1e-6)]
    c *= np.sign(first)
    c[np.abs(c) < 1e-12] = 0.0
    return c


def coupling_tables() -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tables for the fused depthwise tensor product over all PATHS.

    Returns
      cg  [9, 9, K]: cg[a, n, k] couples input component a (l1 block) with spherical-harmonic
                     component n (l2 block) into path-output component k; K = sum (2 l3 + 1).
      path_of_k [K]: the path index of each output component.
      gather [K, 9]: 0/1 matrix summing path outputs into the l3 blocks of a 9-component feature.
    Each path is scaled by sqrt(2 l3 + 1) (component normalisation).
    """
    ks = sum(2 * l3 + 1 for (_, _, l3) in PATHS)
    cg = np.zeros((9, 9, ks))
    path_of_k = np.zeros(ks, dtype=np.int64)
    gather = np.zeros((ks, 9))
    k = 0
    for p, (l1, l2, l3) in enumerate(PATHS):
        c = wigner_3j_np(l1, l2, l3) * np.sqrt(2 * l3 + 1)
        n3 = 2 * l3 + 1
        cg[_SL[l1], _SL[l2], k:k + n3] = c
        path_of_k[k:k + n3] = p
        gather[np.arange(k, k + n3), np.arange(_SL[l3].start, _SL[l3].stop)] = 1.0
        k += n3
    return torch.from_numpy(cg), torch.from_numpy(path_of_k), torch.from_numpy(gather)


def l_of_component() -> torch.Tensor:
    """[9] the l of each of the 9 components (0, 1,1,1, 2,2,2,2,2)."""
    return torch.tensor([0, 1, 1, 1, 2, 2, 2, 2, 2], dtype=torch.long)
