"""The deep-equilibrium equivariant transformer.

    x_i  = Inject(types, edges of i)                         input injection, computed once per geometry
    z*_i = f_i(z*_i, {z*_j}, x_i, edges of i)                one equivariant attention block + gated FFN
    E    = sum_i e(z*_i, type_i) + sum_ij V(r_ij)            per-atom readout of the fixed point, plus a core
                                                             repulsion below the data's closest contacts

Every piece the LAMMPS pair style needs is an exported TorchScript method (docs/contract.md); the
fixed-point/adjoint algorithm that strings them together lives in ``driver.py`` and is used unchanged
by training, evaluation of the deployed file and (re-implemented call for call) by the C++ side.
"""
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from . import CONTRACT_VERSION, __version__
from .nn.attention import MESSAGE_OPS, EquivariantAttention, _scatter_sum, flatten_components, message_op_dims
from .nn.irreps import irreps_dim, irreps_string, parse_irreps
from .nn.layers import MLP, EquivariantLayerNorm, GatedFeedForward, IrrepsLinear
from .nn.radial import PolynomialEnvelope, RadialBasis
from .nn.repulsion import REPULSION_KINDS, CoreRepulsion
from .nn.so3 import spherical_harmonics
from .solvers import solver_init, solver_kind, solver_update

DEFAULTS = {
    "irreps": "32x0e+16x1o+8x2e",
    "msg_channels": 16,
    "num_heads": 4,
    "attention": "mlp",            # mlp | dot
    "attn_hidden": 16,
    "message": "cg",               # cg (Clebsch-Gordan tensor product) | so2 (eSCN SO(2) convolution)
    "num_basis": 8,
    "radial_basis": "gaussian",    # gaussian | expnormal
    "radial_hidden": 64,
    "envelope_p": 6,
    "type_embed_dim": 16,
    "readout_hidden": 32,
    "mode": "deq",                 # deq | explicit
    "explicit_layers": 4,
    "solver": "anderson",          # anderson | broyden | picard
    "solver_tol": 1e-4,            # per-atom relative residual, training
    "deploy_tol": 1e-6,            # default tolerance written into the deployed file
    "solver_max_iter": 40,
    "solver_memory": 5,
    "solver_beta": 1.0,
    "solver_lam": 1e-6,
    "adjoint_tol": 1e-5,
    "grad": "implicit",            # implicit (exact forces) | phantom (TorchDEQ 1-step)
    "phantom_steps": 1,
    "phantom_damping": 0.8,
    # implicit training only: how the force loss reaches the parameters through the adjoint u*.
    # one_step: u* = de/dz + J^T u* rebuilt with its graph (a third derivative of f per step);
    # readout: only de/dz carries the graph, J^T u* enters as a value (about half the cost per step).
    # Both leave the forces themselves exact; they differ only in the parameter gradient.
    "adjoint_grad": "one_step",
    "jac_reg_weight": 0.0,         # TorchDEQ-style Jacobian regulariser |eps^T df/dz|^2 / |eps|^2 (training)
    "jac_reg_freq": 1.0,           # fraction of training steps that pay for it
    "avg_num_neighbors": None,
    "repulsion": "zbl",            # zbl (switched ZBL below the training data's closest contacts) | none
    "repulsion_inner": 0.75,       # the prior reaches full ZBL at this fraction of the wall distance
}


# what each model-block value must be (check_model_cfg); keys not listed are checked where they are used
_POSITIVE_INT = ("msg_channels", "num_heads", "attn_hidden", "num_basis", "radial_hidden", "envelope_p",
                 "type_embed_dim", "readout_hidden", "explicit_layers", "solver_max_iter", "solver_memory",
                 "phantom_steps")
_POSITIVE_FLOAT = ("solver_tol", "deploy_tol", "adjoint_tol", "solver_beta")
_NONNEG_FLOAT = ("solver_lam", "jac_reg_weight")
_UNIT_INTERVAL = ("jac_reg_freq", "phantom_damping", "repulsion_inner")
_CHOICES = {"attention": ("mlp", "dot"), "radial_basis": ("gaussian", "expnormal"), "mode": ("deq", "explicit"),
            "solver": ("anderson", "broyden", "picard"), "grad": ("implicit", "phantom"),
            "adjoint_grad": ("one_step", "readout"),
            "repulsion": REPULSION_KINDS}


def check_model_cfg(c: Dict) -> None:
    """Raises ValueError naming the model-block key, its value and what it must be."""
    def bad(key, what):
        return ValueError(f"model block: '{key}' = {c[key]!r} must be {what}")

    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")

    for k in _POSITIVE_INT:
        v = c[k]
        if not (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1_000_000):
            raise bad(k, "a positive integer")
    for k in _POSITIVE_FLOAT:
        if not (number(c[k]) and c[k] > 0):
            raise bad(k, "a positive number")
    for k in _NONNEG_FLOAT:
        if not (number(c[k]) and c[k] >= 0):
            raise bad(k, "a number >= 0")
    for k in _UNIT_INTERVAL:
        if not (number(c[k]) and 0 <= c[k] <= 1):
            raise bad(k, "a number in [0, 1]")
    for k, choices in _CHOICES.items():
        if c[k] not in choices:
            raise bad(k, "one of " + ", ".join(choices))
    if c["message"] not in MESSAGE_OPS:
        raise bad("message", "one of " + ", ".join(MESSAGE_OPS))
    if not isinstance(c["irreps"], str):
        raise bad("irreps", "a string such as '32x0e+16x1o+8x2e'")
    if c["repulsion_inner"] >= 1:
        raise bad("repulsion_inner", "below 1 (the fraction of the wall where the full repulsion starts)")
    if c["avg_num_neighbors"] is not None and not (number(c["avg_num_neighbors"]) and c["avg_num_neighbors"] > 0):
        raise bad("avg_num_neighbors", "a positive number (or left out)")


class InputInjection(nn.Module):
    """x_i from the type of i and a radially weighted sum of Y(r_ij) over its neighbours."""

    def __init__(self, muls: Tuple[int, int, int], cm: int, embed_dim: int, avg_num_neighbors: float):
        super().__init__()
        self.cm = cm
        self.type_lin = nn.Linear(embed_dim, muls[0])
        self.geo_lin = IrrepsLinear((cm, cm, cm), muls)
        self.norm = EquivariantLayerNorm(muls)
        self.inv_sqrt_nb = float(avg_num_neighbors) ** -0.5
        self.register_buffer("l_of_comp", torch.tensor([0, 1, 1, 1, 2, 2, 2, 2, 2]))

    def forward(self, type_emb_local: torch.Tensor, edge_index: torch.Tensor, sh: torch.Tensor,
                w_inj: torch.Tensor, n_local: int) -> torch.Tensor:
        # w_inj [E, Cm, 3] (per l), sh [E, 9] -> per-edge [E, Cm, 9]
        feat = w_inj.index_select(2, self.l_of_comp) * sh[:, None, :]
        agg = _scatter_sum(feat, edge_index[0], n_local) * self.inv_sqrt_nb
        geo = self.geo_lin(flatten_components(agg))
        s = self.type_lin(type_emb_local)
        return self.norm(torch.cat([geo[:, :s.shape[1]] + s, geo[:, s.shape[1]:]], dim=1))


class ImplicitBlock(nn.Module):
    """f(z; x) = LN3(u + FFN(LN2(u))),  u = x + Attention(LN1(z))."""

    def __init__(self, muls: Tuple[int, int, int], cm: int, heads: int, attn_type: str, attn_hidden: int,
                 message: str = "cg"):
        super().__init__()
        self.ln1 = EquivariantLayerNorm(muls)
        self.attn = EquivariantAttention(muls, cm, heads, attn_type, attn_hidden, message)
        self.ln2 = EquivariantLayerNorm(muls)
        self.ffn = GatedFeedForward(muls, (2 * muls[0], muls[1], muls[2]))
        self.ln3 = EquivariantLayerNorm(muls)

    def forward(self, z: torch.Tensor, x: torch.Tensor, edge_index: torch.Tensor, geom: torch.Tensor,
                env: torch.Tensor, w_tp: torch.Tensor, n_local: int) -> torch.Tensor:
        u = x + self.attn(self.ln1(z), edge_index, geom, env, w_tp, n_local)
        u = u + self.ffn(self.ln2(u))
        return self.ln3(u)


class DEQFormer(nn.Module):
    deploy_metadata: Dict[str, str]

    def __init__(self, type_names: List[str], r_max: float, cfg: Dict, energy_shift: List[float],
                 energy_scale: float, pair_min_dist: Optional[List[List[Optional[float]]]] = None):
        super().__init__()
        c = dict(DEFAULTS)
        unknown = set(cfg) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"model block: unknown keys {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        c.update({k: v for k, v in cfg.items() if v is not None})
        check_model_cfg(c)
        self.cfg = c
        self.type_names = list(type_names)
        self.num_types = len(type_names)
        self.r_max = float(r_max)
        self.muls = parse_irreps(c["irreps"])
        self.dim = irreps_dim(self.muls)
        self.cm = int(c["msg_channels"])
        if c["message"] not in MESSAGE_OPS:
            raise ValueError(f"model message '{c['message']}': use one of {', '.join(MESSAGE_OPS)}")
        # per-edge message weights per channel, and the width of the per-edge geometry in edge_attr
        self.msg_width, self.geom_dim = message_op_dims(c["message"])
        self.explicit = c["mode"] == "explicit"
        if c["mode"] not in ("deq", "explicit"):
            raise ValueError(f"model mode '{c['mode']}': use 'deq' or 'explicit'")
        if c["grad"] not in ("implicit", "phantom"):
            raise ValueError(f"model grad '{c['grad']}': use 'implicit' or 'phantom'")
        self.solver_code = solver_kind(c["solver"])
        nb = c["avg_num_neighbors"] if c["avg_num_neighbors"] else 10.0
        emb = int(c["type_embed_dim"])

        self.type_embed = nn.Embedding(self.num_types, emb)
        self.basis = RadialBasis(r_max, int(c["num_basis"]), c["radial_basis"])
        self.envelope = PolynomialEnvelope(r_max, int(c["envelope_p"]))
        n_blocks = int(c["explicit_layers"]) if self.explicit else 1
        self.n_blocks = n_blocks
        self.radial = MLP([int(c["num_basis"]) + 2 * emb, int(c["radial_hidden"]),
                           self.cm * 3 + n_blocks * self.cm * self.msg_width])
        self.inject_net = InputInjection(self.muls, self.cm, emb, nb)
        self.block = ImplicitBlock(self.muls, self.cm, int(c["num_heads"]), c["attention"], int(c["attn_hidden"]),
                                   c["message"])
        self.extra_blocks = nn.ModuleList([
            ImplicitBlock(self.muls, self.cm, int(c["num_heads"]), c["attention"], int(c["attn_hidden"]),
                          c["message"])
            for _ in range(n_blocks - 1)])
        self.readout_norm = EquivariantLayerNorm(self.muls)
        self.readout = MLP([self.muls[0], int(c["readout_hidden"]), 1])
        self.register_buffer("energy_shift", torch.tensor(energy_shift, dtype=torch.get_default_dtype()))
        self.energy_scale = float(energy_scale)
        self.repulsion = CoreRepulsion(type_names, pair_min_dist, float(c["repulsion_inner"]),
                                       enabled=c["repulsion"] == "zbl")
        # edge_attr = [geometry (Y, + edge frames for so2) | envelope | injection weights | block weights]
        self.edge_attr_dim = self.geom_dim + 1 + self.cm * 3 + n_blocks * self.cm * self.msg_width
        # solver settings the scripted methods and the deployed metadata see
        self.solver_memory = int(c["solver_memory"])
        self.solver_beta = float(c["solver_beta"])
        self.solver_lam = float(c["solver_lam"])
        self.deploy_metadata = {}

    # ------------------------------------------------------------------ contract methods
    @torch.jit.export
    def metadata(self) -> Dict[str, str]:
        """The deployed file's metadata (docs/contract.md); filled by deqformer.deploy."""
        return self.deploy_metadata

    def edge_parts(self, edge_vec: torch.Tensor, types: torch.Tensor,
                   edge_index: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-edge data as separate tensors: (Y [E, 9], message geometry [E, G], envelope [E],
        injection weights [E, Cm, 3], block weights [E, n_blocks Cm P]). Differentiable paths use these
        directly (no slices of one packed tensor: a slice's backward zero-fills the whole packed width)."""
        r = torch.linalg.norm(edge_vec, dim=1)
        sh = spherical_harmonics(edge_vec / r[:, None])
        env = self.envelope(r)
        emb = self.type_embed(types)
        rin = torch.cat([self.basis(r) * env[:, None], emb.index_select(0, edge_index[0]),
                         emb.index_select(0, edge_index[1])], dim=1)
        w_inj, w_blk = torch.split(self.radial(rin), [3 * self.cm, self.n_blocks * self.cm * self.msg_width], dim=1)
        w_inj = (w_inj * env[:, None]).reshape(-1, self.cm, 3)
        geom = self.block.attn.tp.edge_geometry(sh)       # once per geometry, not per solver iteration
        return sh, geom, env, w_inj, w_blk

    def pack_edge_attr(self, parts: Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
                       ) -> torch.Tensor:
        """edge_attr = [geometry | envelope | injection weights | block weights] (the contract's opaque attr)."""
        sh, geom, env, w_inj, w_blk = parts
        return torch.cat([geom, env[:, None], w_inj.reshape(w_inj.shape[0], -1), w_blk], dim=1)

    def inject_parts(self, types: torch.Tensor, edge_index: torch.Tensor,
                     parts: Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
                     n_local: int) -> torch.Tensor:
        return self.inject_net(self.type_embed(types[:n_local]), edge_index, parts[0], parts[3], n_local)

    def step_parts(self, b: int, z: torch.Tensor, x: torch.Tensor, edge_index: torch.Tensor,
                   parts: Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
                   n_local: int) -> torch.Tensor:
        """Block b (0 = the implicit block) applied to z with the unpacked edge data."""
        w_blk = parts[4]
        if self.n_blocks == 1:
            w = w_blk.reshape(-1, self.cm, self.msg_width)
        else:
            w = torch.split(w_blk, self.cm * self.msg_width, dim=1)[b].reshape(-1, self.cm, self.msg_width)
        if b == 0:
            return self.block(z, x, edge_index, parts[1], parts[2], w, n_local)
        return self._extra_block(b, z, x, edge_index, parts[1], parts[2], w, n_local)

    @torch.jit.unused
    def _extra_block(self, b: int, z: torch.Tensor, x: torch.Tensor, edge_index: torch.Tensor, geom: torch.Tensor,
                     env: torch.Tensor, w: torch.Tensor, n_local: int) -> torch.Tensor:
        return self.extra_blocks[b - 1](z, x, edge_index, geom, env, w, n_local)

    @torch.jit.export
    def edge_features(self, edge_vec: torch.Tensor, types: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """[E, 3] edge vectors r_j - r_i (i = edge_index[0]) -> opaque per-edge attributes [E, A]."""
        return self.pack_edge_attr(self.edge_parts(edge_vec, types, edge_index))

    @torch.jit.export
    def inject(self, types: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor,
               n_local: int) -> torch.Tensor:
        """Input injection x [n_local, D] (types [N_all])."""
        sh = edge_attr[:, :9]
        start = self.geom_dim + 1
        w_inj = edge_attr[:, start:start + 3 * self.cm].reshape(-1, self.cm, 3)
        return self.inject_net(self.type_embed(types[:n_local]), edge_index, sh, w_inj, n_local)

    def _block_weight(self, edge_attr: torch.Tensor, b: int) -> torch.Tensor:
        start = self.geom_dim + 1 + 3 * self.cm + b * self.cm * self.msg_width
        return edge_attr[:, start:start + self.cm * self.msg_width].reshape(-1, self.cm, self.msg_width)

    @torch.jit.export
    def step(self, z: torch.Tensor, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor,
             n_local: int) -> torch.Tensor:
        """One application of the implicit layer: z [N_all, D] -> f(z) [n_local, D]."""
        g = self.geom_dim
        return self.block(z, x, edge_index, edge_attr[:, :g], edge_attr[:, g], self._block_weight(edge_attr, 0),
                          n_local)

    @torch.jit.export
    def atomic_energy(self, z: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        """Per-atom energies [n] of states z [n, D]."""
        s = self.readout_norm(z)[:, :self.muls[0]]
        return self.readout(s)[:, 0] * self.energy_scale + self.energy_shift.index_select(0, types)

    @torch.jit.export
    def pair_energy(self, edge_vec: torch.Tensor, types: torch.Tensor, edge_index: torch.Tensor,
                    n_local: int) -> torch.Tensor:
        """Per-atom energies [n_local] of the core repulsion (half of each edge to its centre atom)."""
        return self.repulsion(edge_vec, types, edge_index, n_local)

    @torch.jit.export
    def energy_grad_z(self, z: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        """dE/dz [n, D] at fixed z (the right-hand side g of the adjoint equation)."""
        zz = z.detach().requires_grad_(True)
        e = self.atomic_energy(zz, types).sum()
        g = torch.autograd.grad([e], [zz], allow_unused=True)[0]
        assert g is not None
        return g

    @torch.jit.export
    def adjoint_step(self, z: torch.Tensor, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor,
                     u: torch.Tensor, n_local: int) -> torch.Tensor:
        """J^T u: u [n_local, D] -> [N_all, D] (rows of ghost atoms belong to their owners)."""
        zz = z.detach().requires_grad_(True)
        fz = self.step(zz, x.detach(), edge_index, edge_attr.detach(), n_local)
        go = torch.jit.annotate(List[Optional[torch.Tensor]], [u.detach()])
        g = torch.autograd.grad([fz], [zz], grad_outputs=go, allow_unused=True)[0]
        if g is None:
            return torch.zeros_like(z)
        return g

    @torch.jit.export
    def edge_grad(self, z: torch.Tensor, u: torch.Tensor, types: torch.Tensor, edge_index: torch.Tensor,
                  edge_vec: torch.Tensor, n_local: int) -> torch.Tensor:
        """dE/d(edge_vec) [E, 3] = d/d(edge_vec) of u . f(z*, x(edge_vec), edge_vec) + pair_energy at fixed
        z*, u."""
        vec = edge_vec.detach().requires_grad_(True)
        parts = self.edge_parts(vec, types, edge_index)
        x = self.inject_parts(types, edge_index, parts, n_local)
        fz = self.step_parts(0, z.detach(), x, edge_index, parts, n_local)
        lagr = (u.detach() * fz).sum() + self.pair_energy(vec, types, edge_index, n_local).sum()
        g = torch.autograd.grad([lagr], [vec], allow_unused=True)[0]
        if g is None:
            return torch.zeros_like(edge_vec)
        return g

    @torch.jit.export
    def solver_init(self, z: torch.Tensor, kind: int, memory: int) -> List[torch.Tensor]:
        return solver_init(z, kind, memory)

    @torch.jit.export
    def solver_update(self, kind: int, z: torch.Tensor, fz: torch.Tensor, state: List[torch.Tensor], k: int,
                      beta: float, lam: float) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        return solver_update(kind, z, fz, state, k, beta, lam)

    # ------------------------------------------------------------------ explicit (unrolled) mode
    @torch.jit.ignore
    def forward(self, batch: Dict[str, torch.Tensor], compute_forces: bool = True,
                z0: Optional[torch.Tensor] = None, u0: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        from .driver import evaluate_model
        return evaluate_model(self, batch, compute_forces=compute_forces, z0=z0, u0=u0)

    @torch.jit.ignore
    def config_dict(self) -> Dict:
        return {"type_names": self.type_names, "r_max": self.r_max, "model": dict(self.cfg),
                "energy_shift": [float(v) for v in self.energy_shift.tolist()],
                "energy_scale": self.energy_scale, "pair_min_dist": self.repulsion.wall.tolist()}

    @torch.jit.ignore
    def metadata_dict(self) -> Dict[str, str]:
        c = self.cfg
        return {
            "contract_version": str(CONTRACT_VERSION),
            "deqformer_version": __version__,
            "r_max": repr(self.r_max),
            "num_types": str(self.num_types),
            "type_names": " ".join(self.type_names),
            "energy_unit": "eV",
            "length_unit": "Angstrom",
            "lammps_units": "metal",
            "dtype": "float64" if self.energy_shift.dtype == torch.float64 else "float32",
            "state_dim": str(self.dim),
            "irreps": irreps_string(self.muls),
            "message": str(c["message"]),
            "msg_channels": str(self.cm),
            "edge_attr_dim": str(self.edge_attr_dim),
            "solver": str(c["solver"]),
            "solver_code": str(self.solver_code),
            "solver_tol": repr(float(c["deploy_tol"])),
            "solver_max_iter": str(int(c["solver_max_iter"])),
            "solver_memory": str(self.solver_memory),
            "solver_beta": repr(self.solver_beta),
            "solver_lam": repr(self.solver_lam),
            "adjoint_tol": repr(float(c["deploy_tol"])),
            "mode": str(c["mode"]),
            "repulsion": str(c["repulsion"]),
            "repulsion_walls": " ".join(f"{k}:{v:.4f}" for k, v in self.repulsion.walls().items()),
        }


def build_model(model_cfg: Dict, type_names: List[str], r_max: float, stats: Dict,
                dtype: torch.dtype = torch.float64) -> DEQFormer:
    """Build a model from the YAML ``model:`` block and dataset statistics."""
    cfg = dict(model_cfg or {})
    if cfg.get("avg_num_neighbors") is None and stats.get("avg_num_neighbors"):
        cfg["avg_num_neighbors"] = float(stats["avg_num_neighbors"])
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        model = DEQFormer(type_names, r_max, cfg, list(stats.get("energy_per_atom_shift", [0.0] * len(type_names))),
                          float(stats.get("force_rms", 1.0)), stats.get("pair_min_dist"))
    finally:
        torch.set_default_dtype(old)
    return model.to(dtype)


def model_from_config_dict(d: Dict, dtype: torch.dtype = torch.float64) -> DEQFormer:
    stats = {"energy_per_atom_shift": d["energy_shift"], "force_rms": d["energy_scale"],
             "pair_min_dist": d.get("pair_min_dist")}
    return build_model(d["model"], d["type_names"], d["r_max"], stats, dtype)
