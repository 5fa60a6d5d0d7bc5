"""Deploy a trained model as one TorchScript file (docs/contract.md) and load it back.

The file holds the scripted ``DEQFormer`` (contract methods) plus its metadata, returned by the
scripted method ``metadata()`` and also stored as the extra file ``metadata.json`` for tools that do
not want to run TorchScript. Loading never unpickles Python objects: ``torch.jit.load`` only.
"""
import json
import os
import tempfile
from typing import Dict, Optional

import torch

from . import CONTRACT_VERSION
from .driver import Settings, _frame_sum, edge_vectors, settings_from_metadata, solve_and_differentiate
from . import keys as K

METADATA_FILE = "metadata.json"
REQUIRED_KEYS = ("contract_version", "r_max", "num_types", "type_names", "energy_unit", "length_unit",
                 "dtype", "state_dim", "solver_code", "solver_tol", "solver_max_iter", "solver_memory",
                 "solver_beta", "solver_lam", "adjoint_tol")


def script_model(model, dtype: Optional[torch.dtype] = None, overrides: Optional[Dict[str, str]] = None):
    """Script the model and attach a ``metadata()`` method returning Dict[str, str]."""
    if model.explicit:
        raise ValueError("explicit (unrolled) models are for ablation in Python; deploy a 'mode: deq' model")
    model = model.eval()
    if dtype is not None:
        model = model.to(dtype)
    meta = model.metadata_dict()
    meta["dtype"] = "float64" if next(model.parameters()).dtype == torch.float64 else "float32"
    meta.update(overrides or {})
    model.deploy_metadata = dict(meta)
    try:
        scripted = torch.jit.script(model)
    finally:
        model.deploy_metadata = {}
    return scripted, meta


def deploy(model, path: str, dtype: Optional[torch.dtype] = None, overrides: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Write the deployed file atomically; returns the metadata."""
    scripted, meta = script_model(model, dtype, overrides)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".deploy-", suffix=".pt", dir=folder)
    os.close(fd)
    try:
        torch.jit.save(scripted, tmp, _extra_files={METADATA_FILE: json.dumps(meta, indent=1, sort_keys=True)})
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return meta


class DeployedModel:
    """A deployed file, driven exactly as the C++ pair style drives it."""

    def __init__(self, path: str, device: str = "cpu"):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"deployed model '{path}' does not exist; make one with deqformer-deploy")
        try:
            self.module = torch.jit.load(path, map_location=device)
        except Exception as exc:  # corrupt / not TorchScript
            raise ValueError(f"'{path}' is not a TorchScript file ({type(exc).__name__}); "
                             "deploy the checkpoint with deqformer-deploy") from None
        if not hasattr(self.module, "metadata"):
            raise ValueError(f"'{path}' is TorchScript but not a deqformer model (no metadata() method)")
        self.metadata: Dict[str, str] = dict(self.module.metadata())
        missing = [k for k in REQUIRED_KEYS if k not in self.metadata]
        if missing:
            raise ValueError(f"'{path}': metadata lacks {missing}; redeploy with this deqformer version")
        if int(self.metadata["contract_version"]) != CONTRACT_VERSION:
            raise ValueError(f"'{path}' has contract version {self.metadata['contract_version']}, this code "
                             f"expects {CONTRACT_VERSION}; redeploy the checkpoint with this deqformer version")
        self.dtype = torch.float64 if self.metadata["dtype"] == "float64" else torch.float32
        self.type_names = self.metadata["type_names"].split()
        self.r_max = float(self.metadata["r_max"])
        self.settings: Settings = settings_from_metadata(self.metadata)

    def __call__(self, batch: Dict[str, torch.Tensor], compute_forces: bool = True,
                 z0: Optional[torch.Tensor] = None, **solver_overrides) -> Dict[str, torch.Tensor]:
        s = settings_from_metadata(self.metadata, **solver_overrides)
        out = solve_and_differentiate(self.module, batch[K.POSITIONS].to(self.dtype), batch[K.ATOM_TYPES],
                                      batch[K.EDGE_INDEX], batch[K.EDGE_SHIFT].to(self.dtype), s, z0=z0,
                                      compute_forces=compute_forces)
        out["energy"] = _frame_sum(out["atomic_energy"], batch[K.BATCH], int(batch[K.NUM_FRAMES]))
        if compute_forces:
            out["virial"] = frame_virials(out["edge_grad"], batch, self.dtype)
        return out


def frame_virials(edge_grad: torch.Tensor, batch: Dict[str, torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """Per-frame virial W = -sum_e r_e (x) dE/dr_e (= -dE/d(strain)), [B, 3, 3], in eV.
    The stress of a periodic frame is -W / volume."""
    ei = batch[K.EDGE_INDEX]
    vec = edge_vectors(batch[K.POSITIONS].to(dtype), ei, batch[K.EDGE_SHIFT].to(dtype))
    per_edge = -vec[:, :, None] * edge_grad[:, None, :]
    out = torch.zeros(int(batch[K.NUM_FRAMES]), 3, 3, dtype=dtype)
    return out.index_add_(0, batch[K.BATCH].index_select(0, ei[0]), per_edge)


def load_deployed(path: str, device: str = "cpu") -> DeployedModel:
    return DeployedModel(path, device)
