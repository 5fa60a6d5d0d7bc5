"""Checkpoints: atomic writes, and loading with ``torch.load(weights_only=True)``.

torch 1.13's ``weights_only`` unpickler accepts tensors, dicts, lists, tuples, strings, ints, bools
and None, but not floats. So a checkpoint file holds only::

    {"format": "deqformer-checkpoint", "format_version": 1,
     "tensors": {path: tensor, ...},        # every tensor, keyed by its place in the tree
     "meta_json": "<JSON text>"}            # everything else; tensors appear as {"__tensor__": path}

:func:`load_checkpoint` returns the decoded tree, a plain dict with these entries (written by the trainer):

``model_state`` (training weights), ``deploy_state`` (weights to deploy: the EMA average when
``use_ema``), ``ema_state``, ``optimizer``, ``scheduler``, ``epoch`` (completed epochs),
``best_metric``, ``best_epoch``, ``epochs_since_best``, ``wall_time_s``, ``rng``, ``config`` (the YAML
dict, dataset paths absolute), ``model_cfg`` (the ``model:`` block), ``model_config_dict``
(``model.config_dict()`` when the model has it), ``stats``, ``type_names``, ``r_max``, ``model_dtype``
("float32"/"float64"), ``energy_unit`` ("eV"), ``length_unit`` ("Angstrom"), ``deqformer_version``.
"""
from __future__ import annotations

import inspect
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

import numpy as np
import torch

__all__ = [
    "CheckpointError",
    "encode_tree",
    "decode_tree",
    "atomic_torch_save",
    "save_checkpoint",
    "load_checkpoint",
    "build_model_from_checkpoint",
    "complete_statistics",
    "load_model_from_checkpoint",
    "FORMAT_NAME",
    "FORMAT_VERSION",
]

FORMAT_NAME = "deqformer-checkpoint"
FORMAT_VERSION = 1
PathLike = Union[str, os.PathLike]


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit."""


# --------------------------------------------------------------------------------------------
# tree <-> (tensors, JSON)
# --------------------------------------------------------------------------------------------


def encode_tree(obj: Any) -> Dict[str, Any]:
    """Split a tree of dicts/lists/tuples/tensors/numbers into ``{"tensors": ..., "meta_json": ...}``."""
    tensors: Dict[str, torch.Tensor] = {}
    seen: Dict[int, str] = {}  # the same tensor object reached twice is stored once

    def enc(o: Any, path: str) -> Any:
        if torch.is_tensor(o):
            if id(o) in seen:
                return {"__tensor__": seen[id(o)]}
            key = path or "root"
            while key in tensors:
                key += "_"
            tensors[key] = o.detach().cpu().clone()
            seen[id(o)] = key
            return {"__tensor__": key}
        if isinstance(o, np.ndarray):
            return {"__ndarray__": o.tolist(), "dtype": str(o.dtype), "shape": list(o.shape)}
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, (bool, int, str)) or o is None:
            return o
        if isinstance(o, float):
            return o
        if isinstance(o, torch.dtype):
            return {"__dtype__": str(o)}
        if isinstance(o, os.PathLike):
            return os.fspath(o)
        if isinstance(o, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in o):
                return {k: enc(v, f"{path}/{k}" if path else k) for k, v in o.items()}
            return {"__items__": [[enc(k, f"{path}/key{i}"), enc(v, f"{path}/{k}")]
                                  for i, (k, v) in enumerate(o.items())]}
        if isinstance(o, tuple):
            return {"__tuple__": [enc(v, f"{path}/{i}") for i, v in enumerate(o)]}
        if isinstance(o, list):
            return [enc(v, f"{path}/{i}") for i, v in enumerate(o)]
        raise TypeError(f"cannot store object of type {type(o).__name__} at {path!r} in a checkpoint")

    meta = enc(obj, "")
    return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "tensors": tensors,
            "meta_json": json.dumps(meta, allow_nan=True)}


def decode_tree(stored: Dict[str, Any]) -> Any:
    """Inverse of :func:`encode_tree`."""
    tensors = stored["tensors"]

    def dec(o: Any) -> Any:
        if isinstance(o, list):
            return [dec(v) for v in o]
        if isinstance(o, dict):
            if "__tensor__" in o:
                return tensors[o["__tensor__"]]
            if "__ndarray__" in o:
                return np.asarray(o["__ndarray__"], dtype=o["dtype"]).reshape(o["shape"])
            if "__dtype__" in o:
                return getattr(torch, o["__dtype__"].replace("torch.", ""))
            if "__tuple__" in o:
                return tuple(dec(v) for v in o["__tuple__"])
            if "__items__" in o:
                return {dec(k): dec(v) for k, v in o["__items__"]}
            return {k: dec(v) for k, v in o.items()}
        return o

    return dec(json.loads(stored["meta_json"]))


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------


def atomic_torch_save(obj: Any, path: PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then ``os.replace``: a reader
    (or a crash) never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600 files
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(str(path.parent), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def save_checkpoint(payload: Dict[str, Any], path: PathLike) -> None:
    """Encode ``payload`` (see module docstring) and write it atomically."""
    atomic_torch_save(encode_tree(payload), path)


def _supports_weights_only() -> bool:
    try:
        return "weights_only" in inspect.signature(torch.load).parameters
    except (TypeError, ValueError):
        return False


def load_checkpoint(path: PathLike, map_location: Union[str, torch.device] = "cpu") -> Dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` and return the decoded dict."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if _supports_weights_only():
        try:
            stored = torch.load(str(path), map_location=map_location, weights_only=True)
        except Exception as e:
            raise CheckpointError(f"{path}: cannot read as a deqformer checkpoint with torch.load(weights_only=True) "
                                  f"({type(e).__name__}: {str(e)[-300:]})") from None
    else:
        warnings.warn(f"torch {torch.__version__} has no torch.load(weights_only=...): loading {path} with the full "
                      f"unpickler; only load checkpoints from sources you trust", RuntimeWarning, stacklevel=2)
        try:
            stored = torch.load(str(path), map_location=map_location)
        except Exception as e:
            raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(stored, dict) or stored.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: not a deqformer checkpoint (no '{FORMAT_NAME}' marker)")
    if int(stored.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {stored['format_version']} is newer than this "
                              f"deqformer understands ({FORMAT_VERSION})")
    return decode_tree(stored)


# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------


def _dtype(name: str) -> torch.dtype:
    return torch.float64 if name == "float64" else torch.float32


def complete_statistics(ckpt: Dict[str, Any]) -> Dict[str, Any]:
    """The checkpoint's dataset statistics, with ``pair_min_dist`` (the core repulsion's walls) recomputed
    from the training split of its config when the checkpoint predates that statistic."""
    stats = dict(ckpt["stats"])
    if "pair_min_dist" in stats or (ckpt.get("model_cfg") or {}).get("repulsion", "zbl") == "none":
        return stats
    from ..config import parse_config
    from ..data import load_datasets, make_loader, pair_min_distances
    type_names = list(ckpt["type_names"])
    try:
        datasets = load_datasets(parse_config(ckpt["config"]), type_names, require=("train",))
        train = make_loader(datasets, "train", float(ckpt["r_max"]), 1)     # the trainer's split and graphs
    except (KeyError, OSError, ValueError) as e:
        warnings.warn(f"this checkpoint predates the core repulsion and its training data cannot be read "
                      f"({type(e).__name__}: {e}): the model is built WITHOUT the repulsion; retrain, or make the "
                      f"data files readable again", RuntimeWarning)
        return stats
    stats["pair_min_dist"] = pair_min_distances(train.frames, train.graphs, len(type_names))
    warnings.warn(f"this checkpoint predates the core repulsion: its walls were recomputed from the "
                  f"{len(train.frames)} training frames of its config", RuntimeWarning)
    return stats


def build_model_from_checkpoint(ckpt: Dict[str, Any], use_ema: bool = True,
                                model_builder: Optional[Callable[..., torch.nn.Module]] = None,
                                device: Union[str, torch.device] = "cpu") -> torch.nn.Module:
    """Rebuild the model of a loaded checkpoint dict and load its weights (EMA weights by default)."""
    if model_builder is None:
        from ..model import build_model as model_builder  # the lead's builder
    dtype = _dtype(ckpt.get("model_dtype", "float64"))
    model = model_builder(dict(ckpt.get("model_cfg") or {}), list(ckpt["type_names"]), float(ckpt["r_max"]),
                          complete_statistics(ckpt), dtype)
    state = ckpt["deploy_state"] if use_ema else ckpt["model_state"]
    model.load_state_dict(state)
    return model.to(device=device).eval()


def load_model_from_checkpoint(path: PathLike, device: Union[str, torch.device] = "cpu", use_ema: bool = True,
                               model_builder: Optional[Callable[..., torch.nn.Module]] = None) -> torch.nn.Module:
    """Load ``best.pth`` / ``last.pth`` and return the model in eval mode (EMA weights by default)."""
    ckpt = load_checkpoint(path)
    try:
        return build_model_from_checkpoint(ckpt, use_ema=use_ema, model_builder=model_builder, device=device)
    except CheckpointError:
        raise
    except (KeyError, RuntimeError) as e:
        raise CheckpointError(f"{path}: cannot rebuild the model from the checkpoint ({type(e).__name__}: {e})") from e
