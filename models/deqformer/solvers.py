"""Per-atom fixed-point solvers (atoms are the batch dimension, as in TorchDEQ).

No sum over atoms enters an update, so the iterates of an atom depend only on f, never on how the
atoms are split between MPI ranks. Each solver is one TorchScript-able update rule

    z_next, state = solver_update(kind, z, fz, state, k, beta, lam)

called once per iteration with the current iterate z and fz = f(z). The C++ pair style calls the same
rule through the deployed model (``solver_init`` / ``solver_update`` methods), so Python and LAMMPS
iterate identically. ``state`` is a list of per-atom tensors [n, memory(+1), D].

kind: 0 = Anderson (memory m, mixing beta, Tikhonov lam), 1 = Broyden (limited-memory "good"
Broyden on g(z) = f(z) - z, restarted when the memory is full), 2 = damped Picard (beta).
"""
from typing import Dict, List, Tuple

import torch

SOLVERS: Dict[str, int] = {"anderson": 0, "broyden": 1, "picard": 2}


def solver_kind(name: str) -> int:
    if name not in SOLVERS:
        raise ValueError(f"solver '{name}': choose one of {sorted(SOLVERS)}")
    return SOLVERS[name]


def solver_init(z: torch.Tensor, kind: int, memory: int) -> List[torch.Tensor]:
    n, d = z.shape[0], z.shape[1]
    if kind == 0:
        return [z.new_zeros((n, memory, d)), z.new_zeros((n, memory, d))]
    if kind == 1:
        # U, V (low-rank inverse-Jacobian update) and, in slot `memory`, the previous z and g
        return [z.new_zeros((n, memory + 1, d)), z.new_zeros((n, memory + 1, d))]
    return [z.new_zeros((n, 0, d))]


def residual(z: torch.Tensor, fz: torch.Tensor) -> torch.Tensor:
    """Per-atom relative residual |f(z) - z| / (|f(z)| + 1e-12), [n]."""
    return torch.linalg.norm(fz - z, dim=1) / (torch.linalg.norm(fz, dim=1) + 1e-12)


def solver_update(kind: int, z: torch.Tensor, fz: torch.Tensor, state: List[torch.Tensor], k: int,
                  beta: float, lam: float) -> Tuple[torch.Tensor, List[torch.Tensor]]:
    """One iteration; k counts from 0 within this solve."""
    if z.shape[0] == 0:
        return fz, state
    if kind == 0:
        hx, hf = state[0], state[1]
        m = hx.shape[1]
        slot = k % m
        hx = hx.clone()
        hf = hf.clone()
        hx[:, slot] = z
        hf[:, slot] = fz
        h = min(k + 1, m)
        g = hf[:, :h] - hx[:, :h]                                         # [n, h, D]
        gram = torch.bmm(g, g.transpose(1, 2))                            # [n, h, h]
        scale = gram.diagonal(dim1=1, dim2=2).mean(dim=1)[:, None, None] + 1e-30
        gram = gram + lam * scale * torch.eye(h, dtype=z.dtype, device=z.device)[None]
        ones = torch.ones(z.shape[0], h, 1, dtype=z.dtype, device=z.device)
        a, info = torch.linalg.solve_ex(gram, ones)                       # [n, h, 1]
        a = a / a.sum(dim=1, keepdim=True)
        # an atom whose history is degenerate (a singular Gram matrix even after the ridge, e.g. in float32,
        # or non-finite weights) takes a plain fixed-point step f(z) instead of stopping the whole solve
        # (branch-free: no host synchronisation inside the solver loop of the deployed model)
        ok = (info == 0) & torch.isfinite(a).all(dim=2).all(dim=1)
        last = torch.zeros_like(a)
        last[:, slot] = 1.0
        a = torch.where(ok[:, None, None], a, last)
        mix_f = (a * hf[:, :h]).sum(dim=1)
        mix_x = (a * hx[:, :h]).sum(dim=1)
        return beta * mix_f + (1.0 - beta) * mix_x, [hx, hf]
    if kind == 1:
        u, v = state[0], state[1]
        m = u.shape[1] - 1
        gz = fz - z
        if k > 0:
            j = (k - 1) % m
            if j == 0:                      # memory full (or first update): restart from B = -beta I
                u = torch.zeros_like(u)
                v = torch.zeros_like(v)
            else:
                u = u.clone()
                v = v.clone()
            s = z - u[:, m]
            y = gz - v[:, m]
            # B y and s^T B with B = -beta I + sum_i u_i v_i^T (per atom)
            by = -beta * y + torch.einsum("nid,ni->nd", u[:, :m], torch.einsum("nid,nd->ni", v[:, :m], y))
            sb = -beta * s + torch.einsum("nid,ni->nd", v[:, :m], torch.einsum("nid,nd->ni", u[:, :m], s))
            den = (s * by).sum(dim=1, keepdim=True)
            den = torch.where(den.abs() < 1e-30, torch.full_like(den, 1e-30), den)
            u[:, j] = (s - by) / den
            v[:, j] = sb
        else:
            u = u.clone()
            v = v.clone()
        bg = -beta * gz + torch.einsum("nid,ni->nd", u[:, :m], torch.einsum("nid,nd->ni", v[:, :m], gz))
        u[:, m] = z
        v[:, m] = gz
        return z - bg, [u, v]
    return beta * fz + (1.0 - beta) * z, state
