"""One interface for evaluating a deployed TorchScript file (``.pt``) or a training checkpoint (``.pth``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import torch
from . import keys as K

__all__ = ["InferenceModel", "load_inference_model"]


class InferenceModel:
    """A callable ``batch -> {energy, forces, atomic_energy, solver_iters, ...}`` with the metadata needed to
    build its input: ``type_names``, ``r_max`` (Angstrom) and ``dtype``."""

    def __init__(self, fn: Callable[..., Dict[str, torch.Tensor]], type_names: List[str], r_max: float,
                 dtype: torch.dtype, kind: str, path: str, device: Union[str, torch.device] = "cpu",
                 accepts_z0: bool = False, module: Any = None):
        self.fn = fn
        self.module = module          # the object with the contract methods (eager model or TorchScript module)
        self.type_names = list(type_names)
        self.r_max = float(r_max)
        self.dtype = dtype
        self.kind = kind
        self.path = path
        self.device = torch.device(device)
        self.accepts_z0 = accepts_z0

    def __call__(self, batch: Dict[str, torch.Tensor], compute_forces: bool = True,
                 z0: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        batch = {k: v.to(self.device) for k, v in batch.items()}
        for k in (K.POSITIONS, K.EDGE_SHIFT, K.CELL):
            if k in batch:
                batch[k] = batch[k].to(self.dtype)
        kwargs: Dict[str, Any] = {"compute_forces": compute_forces}
        if z0 is not None and self.accepts_z0:
            kwargs["z0"] = z0
        with torch.enable_grad():
            out = self.fn(batch, **kwargs)
        return {k: (v.detach() if torch.is_tensor(v) else v) for k, v in out.items()}


def _is_checkpoint(path: Path) -> bool:
    """Checkpoints are ``torch.save`` zip files; deployed files are TorchScript zip archives.

    Decide by suffix when it is unambiguous, else by the archive content."""
    if path.suffix == ".pth":
        return True
    if path.suffix == ".pt":
        return False
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            return not any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load_inference_model(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu",
                         use_ema: bool = True) -> InferenceModel:
    """Load a deployed ``.pt`` file (via :func:`deqformer.deploy.load_deployed`) or a ``.pth`` checkpoint."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {path} does not exist")
    if _is_checkpoint(path):
        from .train.checkpoint import build_model_from_checkpoint, load_checkpoint

        ckpt = load_checkpoint(path)
        model = build_model_from_checkpoint(ckpt, use_ema=use_ema, device=device)
        dtype = torch.float64 if ckpt.get("model_dtype", "float64") == "float64" else torch.float32
        return InferenceModel(lambda batch, compute_forces=True, **kw: model(batch, compute_forces=compute_forces),
                              ckpt["type_names"], ckpt["r_max"], dtype, "checkpoint", str(path), device,
                              module=model)

    from .deploy import load_deployed

    wrapper = load_deployed(str(path), device=str(device))
    meta = getattr(wrapper, "metadata", {}) or {}
    type_names = getattr(wrapper, "type_names", None) or str(meta.get("type_names", "")).split()
    r_max = getattr(wrapper, "r_max", None) or float(meta["r_max"])
    dtype = getattr(wrapper, "dtype", None) or (torch.float32 if meta.get("dtype") == "float32" else torch.float64)
    return InferenceModel(wrapper, type_names, r_max, dtype, "deployed", str(path), device, accepts_z0=True,
                          module=wrapper.module)
