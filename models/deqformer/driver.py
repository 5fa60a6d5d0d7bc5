"""The fixed-point and adjoint algorithm, written once against the contract methods.

``solve_and_differentiate`` drives any object with the contract methods -- the eager ``DEQFormer``
during training and evaluation, or the TorchScript module loaded from a deployed file -- exactly as
the LAMMPS pair style does (docs/contract.md, "Driving the model"):

  1. attr = edge_features(edge_vec); x = inject(attr)
  2. forward solve   z* = f(z*)                          (solver_update per iteration)
  3. adjoint solve   u* = dE/dz* + J^T u*                 (a VJP through f(z*)'s retained graph per iteration)
  4. forces          dE/d(edge_vec) = edge_grad(z*, u*)   scattered onto atoms

Training additionally needs parameter gradients; ``evaluate_model`` builds them with the Lagrangian
L = sum_i e(z*_i) + u*.(f(z*, x) - z*) (+ the core repulsion, explicit in the positions), whose value is E at the fixed point and whose first
derivatives (positions AND parameters) are the exact implicit ones.
"""
import math
from typing import Callable, Dict, NamedTuple, Optional

import torch

from .solvers import residual
from . import keys as K


class SolveResult(NamedTuple):
    z: torch.Tensor
    iters: int
    residual: float
    converged: bool


def fixed_point(module, fn: Callable[[torch.Tensor], torch.Tensor], z0: torch.Tensor, kind: int, tol: float,
                max_iter: int, memory: int, beta: float, lam: float) -> SolveResult:
    """Iterate z <- solver_update(f(z)) until max per-atom relative residual < tol.
    Returns the best iterate seen (smallest residual), never silently a diverged one."""
    z = z0
    if z.shape[0] == 0:
        return SolveResult(z, 0, 0.0, True)
    state = module.solver_init(z, kind, memory)
    best_z, best_res = z, float("inf")
    for k in range(max_iter):
        fz = fn(z)
        res = float(residual(z, fz).max())
        if res < best_res:
            best_z, best_res = fz, res
        if res < tol or not torch.isfinite(fz).all():
            return SolveResult(best_z, k + 1, best_res, res < tol)
        z, state = module.solver_update(kind, z, fz, state, k, beta, lam)
    return SolveResult(best_z, max_iter, best_res, False)


def retained_vjp(fz: torch.Tensor, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """u^T df/dz through the retained graph of fz = f(z) (zeros where f does not depend on z)."""
    g = torch.autograd.grad([fz], [z], grad_outputs=[u], retain_graph=True, allow_unused=True)[0]
    return torch.zeros_like(z) if g is None else g


def edge_vectors(pos: torch.Tensor, edge_index: torch.Tensor, edge_shift: torch.Tensor) -> torch.Tensor:
    return pos.index_select(0, edge_index[1]) - pos.index_select(0, edge_index[0]) + edge_shift


def scatter_edge_grad(dvec: torch.Tensor, edge_index: torch.Tensor, n: int) -> torch.Tensor:
    """dE/d(pos) from dE/d(edge_vec): +g on j, -g on i (edge_vec = r_j - r_i)."""
    g = torch.zeros(n, 3, dtype=dvec.dtype, device=dvec.device)
    g.index_add_(0, edge_index[1], dvec)
    g.index_add_(0, edge_index[0], -dvec)
    return g


class Settings(NamedTuple):
    kind: int
    tol: float
    max_iter: int
    memory: int
    beta: float
    lam: float
    adjoint_tol: float


def settings_from_metadata(meta: Dict[str, str], **override) -> Settings:
    s = Settings(int(meta["solver_code"]), float(meta["solver_tol"]), int(meta["solver_max_iter"]),
                 int(meta["solver_memory"]), float(meta["solver_beta"]), float(meta["solver_lam"]),
                 float(meta["adjoint_tol"]))
    return s._replace(**{k: v for k, v in override.items() if v is not None})


def solve_forward(module, x: torch.Tensor, edge_index: torch.Tensor, attr: torch.Tensor, n: int,
                  z0: Optional[torch.Tensor], s: Settings) -> SolveResult:
    """z* = f(z*; x) from z0 (zeros when None), without a graph."""
    start = z0 if z0 is not None else torch.zeros_like(x)
    with torch.no_grad():
        return fixed_point(module, lambda z: module.step(z, x, edge_index, attr, n), start, s.kind, s.tol,
                           s.max_iter, s.memory, s.beta, s.lam)


def solve_adjoint(module, f_graph: torch.Tensor, z_req: torch.Tensor, g: torch.Tensor, u0: Optional[torch.Tensor],
                  s: Settings) -> SolveResult:
    """u* = g + J^T u* from u0 (zeros when None); each iteration is one vector-Jacobian product through
    the retained graph f_graph = f(z_req), with no forward re-evaluation (as the C++ driver does)."""
    start = u0 if u0 is not None else torch.zeros_like(g)
    return fixed_point(module, lambda u: g + retained_vjp(f_graph, z_req, u), start, s.kind, s.adjoint_tol,
                       s.max_iter, s.memory, s.beta, s.lam)


def solve_and_differentiate(module, pos: torch.Tensor, types: torch.Tensor, edge_index: torch.Tensor,
                            edge_shift: torch.Tensor, settings: Settings, z0: Optional[torch.Tensor] = None,
                            u0: Optional[torch.Tensor] = None, compute_forces: bool = True) -> Dict[str, torch.Tensor]:
    """Inference exactly as the C++ side performs it (no parameter gradients)."""
    n = pos.shape[0]
    vec = edge_vectors(pos, edge_index, edge_shift).detach()
    with torch.no_grad():
        attr = module.edge_features(vec, types, edge_index)
        x = module.inject(types, edge_index, attr, n)
    fwd = solve_forward(module, x, edge_index, attr, n, z0, settings)
    zs = fwd.z
    with torch.no_grad():
        e_atom = module.atomic_energy(zs, types) + module.pair_energy(vec, types, edge_index, n)
    out = {"atomic_energy": e_atom, "z": zs, "solver_iters": torch.tensor(fwd.iters),
           "solver_residual": torch.tensor(fwd.residual), "converged": torch.tensor(fwd.converged)}
    if not compute_forces:
        return out
    g = module.energy_grad_z(zs, types)
    # f(z*) once with its graph for the adjoint's vector-Jacobian products (= adjoint_step(z*, ..., u))
    z_req = zs.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        f_graph = module.step(z_req, x, edge_index, attr, n)
    adj = solve_adjoint(module, f_graph, z_req, g, u0, settings)
    del f_graph
    dvec = module.edge_grad(zs, adj.z, types, edge_index, vec, n)
    out.update({"u": adj.z, "adjoint_iters": torch.tensor(adj.iters), "adjoint_residual": torch.tensor(adj.residual),
                "adjoint_converged": torch.tensor(adj.converged),
                K.FORCES: -scatter_edge_grad(dvec, edge_index, n), "edge_grad": dvec})
    return out


def _frame_sum(values: torch.Tensor, batch: torch.Tensor, num_frames: int) -> torch.Tensor:
    out = torch.zeros(num_frames, dtype=values.dtype, device=values.device)
    return out.index_add(0, batch, values)


def evaluate_model(model, batch: Dict[str, torch.Tensor], compute_forces: bool = True,
                   z0: Optional[torch.Tensor] = None, tol: Optional[float] = None,
                   u0: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
    """Energies and forces of a batch with the eager model, with parameter gradients when training.

    z0 / u0 start the forward / adjoint solves (the trainer passes each frame's last fixed point, as
    MD reuses the previous step's); the converged ``z`` and ``u`` are returned for that purpose."""
    c = model.cfg
    pos = batch[K.POSITIONS]
    types = batch[K.ATOM_TYPES]
    ei = batch[K.EDGE_INDEX]
    bidx = batch[K.BATCH]
    nf = int(batch[K.NUM_FRAMES])
    n = pos.shape[0]
    training = model.training
    need_pos_grad = compute_forces
    if need_pos_grad and not pos.requires_grad:
        pos = pos.detach().requires_grad_(True)
    vec = edge_vectors(pos, ei, batch[K.EDGE_SHIFT])
    # unpacked edge data on the differentiable path (model.edge_parts); packed attr for the no-grad solves
    parts = model.edge_parts(vec, types, ei)
    x = model.inject_parts(types, ei, parts, n)
    e_pair = model.pair_energy(vec, types, ei, n)       # core repulsion, differentiable in the positions
    stats: Dict[str, torch.Tensor] = {}
    if model.explicit:
        z = torch.zeros_like(x)
        for b in range(model.n_blocks):
            z = model.step_parts(b, z, x, ei, parts, n)
        e_atom = model.atomic_energy(z, types) + e_pair
        energy = _frame_sum(e_atom, bidx, nf)
        stats["solver_iters"] = torch.tensor(float(model.n_blocks))
        stats["solver_residual"] = torch.tensor(0.0)
    else:
        if tol is None:
            tol = c["solver_tol"] if training else c["deploy_tol"]
        settings = Settings(model.solver_code, tol, int(c["solver_max_iter"]), model.solver_memory, model.solver_beta,
                            model.solver_lam, float(c["adjoint_tol"]) if training else tol)
        attrd = model.pack_edge_attr(tuple(p.detach() for p in parts))
        fwd = solve_forward(model, x.detach(), ei, attrd, n, z0, settings)
        zs = fwd.z.detach()
        stats["solver_iters"] = torch.tensor(float(fwd.iters))
        stats["solver_residual"] = torch.tensor(fwd.residual)
        stats["converged"] = torch.tensor(fwd.converged)
        stats["z"] = zs
        if training and c["grad"] == "phantom":
            z = zs
            lam_d = float(c["phantom_damping"])
            for _ in range(int(c["phantom_steps"])):
                z = (1.0 - lam_d) * z + lam_d * model.step_parts(0, z, x, ei, parts, n)
            e_atom = model.atomic_energy(z, types) + e_pair
            energy = _frame_sum(e_atom, bidx, nf)
        else:
            e_atom = model.atomic_energy(zs, types) + e_pair
            energy = _frame_sum(e_atom, bidx, nf)
            if compute_forces or training:
                g = model.energy_grad_z(zs, types)
                # f(z*) with its graph (to z*, and to positions/parameters for the Lagrangian below); the
                # adjoint iterations are vector-Jacobian products through it, no forward re-evaluation
                zin = zs.clone().requires_grad_(True)
                fz = model.step_parts(0, zin, x, ei, parts, n)
                adj = solve_adjoint(model, fz, zin, g, u0, settings)
                u = adj.z.detach()
                stats["u"] = u
                stats["adjoint_iters"] = torch.tensor(float(adj.iters))
                stats["adjoint_residual"] = torch.tensor(adj.residual)
                stats["adjoint_converged"] = torch.tensor(adj.converged)
                jac_w = float(c["jac_reg_weight"])
                want_jac = training and jac_w > 0.0 and float(torch.rand(())) < float(c["jac_reg_freq"])
                if training:
                    # u* re-expressed as one adjoint step, u = dE/dz + J^T u*, built with the graph: same
                    # value (so forces stay exact), but the parameters (the readout above all) now see
                    # how the forces depend on them through the adjoint.
                    zr = zs.clone().requires_grad_(True)
                    g_t = torch.autograd.grad([model.atomic_energy(zr, types).sum()], [zr], create_graph=True)[0]
                    if c["adjoint_grad"] == "one_step":
                        jtu = torch.autograd.grad([fz], [zin], grad_outputs=[u], create_graph=True)[0]
                    else:               # "readout": J^T u* as a value, u* - de/dz* (exact at the fixed point)
                        jtu = (u - g).detach()
                    u_use = g_t + jtu
                else:
                    u_use = u
                lagr = (u_use * (fz - zs)).sum(dim=1)
                energy = energy + _frame_sum(lagr, bidx, nf)
                if want_jac:
                    eps = torch.randn_like(fz)
                    vjp = torch.autograd.grad([fz], [zin], grad_outputs=[eps], create_graph=True)[0]
                    stats["aux_loss"] = jac_w * vjp.pow(2).sum() / eps.pow(2).sum()
    out = {"energy": energy, "atomic_energy": e_atom}
    out.update(stats)
    if compute_forces:
        grad = torch.autograd.grad([energy.sum()], [pos], create_graph=training)[0]
        out[K.FORCES] = -grad
    return out


class Contraction(NamedTuple):
    sigma_max: float      # largest singular value of J = df/dz at z*
    rate: float           # ||J^k v||^(1/k): the asymptotic error reduction per plain iteration z <- f(z)


def contraction(module, pos: torch.Tensor, types: torch.Tensor, edge_index: torch.Tensor, edge_shift: torch.Tensor,
                z: torch.Tensor, iters: int = 30, seed: int = 0) -> Contraction:
    """How contractive the fixed-point map of one structure is at its fixed point z (float64 models).

    J v comes from a double vector-Jacobian product through f (exact, no finite differences); sigma_max
    from ``iters`` power iterations on J^T J, the rate from ``iters`` applications of J to a random start
    (Gelfand: it tends to the spectral radius, which bounds how fast any iteration without acceleration
    converges; Anderson mixing does better)."""
    n = pos.shape[0]
    vec = edge_vectors(pos, edge_index, edge_shift).detach()
    with torch.no_grad():
        attr = module.edge_features(vec, types, edge_index)
        x = module.inject(types, edge_index, attr, n)
    zz = z.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        fz = module.step(zz, x, edge_index, attr, n)
        w = torch.zeros_like(fz, requires_grad=True)
        jt_w = torch.autograd.grad([fz], [zz], grad_outputs=[w], create_graph=True)[0]    # linear in w

    def jv(v: torch.Tensor) -> torch.Tensor:
        return torch.autograd.grad([jt_w], [w], grad_outputs=[v], retain_graph=True)[0]

    def jtv(v: torch.Tensor) -> torch.Tensor:
        return torch.autograd.grad([fz], [zz], grad_outputs=[v], retain_graph=True)[0]

    gen = torch.Generator().manual_seed(seed)
    start = torch.randn(z.shape, generator=gen, dtype=torch.float64).to(z)
    v = start / start.norm()
    sigma2 = 0.0
    for _ in range(iters):
        a = jtv(jv(v))
        sigma2 = float((v * a).sum())
        v = a / a.norm()
    v = start / start.norm()
    log_growth = 0.0
    for _ in range(iters):
        v = jv(v)
        nv = float(v.norm())
        log_growth += math.log(nv)
        v = v / nv
    return Contraction(sigma2 ** 0.5, math.exp(log_growth / iters))
