"""Training configuration: nequip-style YAML files.

A nequip user's YAML works unchanged except for the model hyper-parameters, which live in a
free-form ``model:`` block handed to :func:`deqformer.model.build_model`. Keys that deqformer does
not use (nequip's own model keys, ``wandb``, ...) are ignored with one warning listing them.

Minimal example::

    root: out
    run_name: aspirin
    dataset: npz
    dataset_file_name: data/aspirin_xtb_train.npz      # relative to this YAML file's folder
    key_mapping: {nuclear_charges: atomic_numbers, coords: pos, energies: total_energy, forces: forces}
    npz_fixed_field_keys: [atomic_numbers]
    chemical_symbols: [H, C, O]
    r_max: 5.0
    n_train: 1000
    n_val: 100
    loss_coeffs: {forces: 1.0, total_energy: [1.0, PerAtomMSELoss]}
    model: {...}

Loss names as nequip's: ``MSELoss`` (default), ``L1Loss`` (mean absolute error), and for the energy also
``PerAtomMSELoss`` / ``PerAtomL1Loss`` (error of the energy divided by the atom count).

Several datasets are given as a list of blocks under ``datasets:``; top-level dataset keys
(``key_mapping``, ``n_train`` ...) serve as defaults for every block::

    datasets:
      - {name: monomer, dataset: npz, dataset_file_name: mono.npz, n_train: 1000, n_val: 100}
      - {name: dimer, dataset: ase, dataset_file_name: dimer.extxyz, n_train: 500, n_val: 50}

Fine-tuning (nequip's key): ``initial_model_state: path/to/best.pth`` starts a new run from that
checkpoint's (EMA) weights, architecture and energy references; the core-repulsion walls are taken
from the new training split.

Relative paths (``dataset_file_name``, ``root``, ``initial_model_state``) are resolved against the YAML
file's folder.
"""
from __future__ import annotations

import copy
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import yaml

from . import units
from . import keys as K

__all__ = [
    "ConfigError",
    "ConfigWarning",
    "DatasetConfig",
    "LossCoeffs",
    "TrainConfig",
    "FIELD_NAMES",
    "load_config",
    "parse_config",
    "parse_dataset_block",
]

#: Field names used inside deqformer (nequip's names).
FIELD_NAMES = K.NEQUIP_FIELDS


class ConfigError(ValueError):
    """A configuration value has the wrong type or an invalid value."""


class ConfigWarning(UserWarning):
    """Configuration keys that are accepted but ignored."""


# --------------------------------------------------------------------------------------------
# dataclasses
# --------------------------------------------------------------------------------------------


@dataclass
class LossCoeffs:
    """Weights of the loss terms. Energy term: error of total energy, or of energy per atom; each term is
    a mean squared error (nequip's MSELoss) or a mean absolute error (L1Loss)."""

    energy: float = 1.0
    energy_per_atom: bool = True
    forces: float = 1.0
    energy_l1: bool = False
    forces_l1: bool = False


@dataclass
class DatasetConfig:
    """One dataset file and how to read and split it."""

    name: str
    kind: str  # "npz" or "ase"
    file_name: Path
    key_mapping: Dict[str, str] = field(default_factory=dict)
    npz_fixed_field_keys: List[str] = field(default_factory=list)
    n_train: int = 0
    n_val: int = 0
    energy_unit: str = "eV"
    length_unit: str = "Angstrom"
    ase_format: Optional[str] = None


@dataclass
class TrainConfig:
    """Parsed training configuration (see module docstring)."""

    datasets: List[DatasetConfig]
    type_names: List[str]
    r_max: float
    model: Dict[str, Any] = field(default_factory=dict)
    batch_size: int = 5
    validation_batch_size: int = 5
    learning_rate: float = 0.01
    max_epochs: int = 1000
    seed: int = 0
    dataset_seed: int = 0
    train_val_split: str = "random"
    shuffle: bool = True
    loss: LossCoeffs = field(default_factory=LossCoeffs)
    default_dtype: str = "float64"
    model_dtype: str = "float64"
    use_ema: bool = True
    ema_decay: float = 0.99
    ema_use_num_updates: bool = True
    optimizer_name: str = "Adam"
    optimizer_amsgrad: bool = False
    optimizer_weight_decay: float = 0.0
    max_gradient_norm: Optional[float] = None
    solver_warm_start: bool = True
    train_processes: int = 1                      # data-parallel CPU processes (one thread each)
    lr_scheduler_name: str = "none"
    lr_scheduler_patience: int = 10
    lr_scheduler_factor: float = 0.5
    lr_scheduler_T_max: Optional[int] = None     # epochs; None with lr_scheduler_T_max_auto
    lr_scheduler_T_max_auto: bool = False         # 'auto': fit the cosine into max_time_minutes
    lr_scheduler_eta_min: float = 0.0
    early_stopping_patiences: Dict[str, int] = field(default_factory=dict)
    early_stopping_lower_bounds: Dict[str, float] = field(default_factory=dict)
    root: Path = Path("results")
    run_name: str = "deqformer"
    max_time_minutes: Optional[float] = None
    device: str = "cpu"
    initial_model_state: Optional[Path] = None   # fine-tuning: start from this checkpoint's weights
    initial_model_state_strict: bool = True
    config_path: Optional[Path] = None
    raw: Dict[str, Any] = field(default_factory=dict)
    ignored_keys: List[str] = field(default_factory=list)

    @property
    def run_dir(self) -> Path:
        """Output folder ``root/run_name``."""
        return Path(self.root) / self.run_name

    @property
    def torch_dtype(self):
        """The model's ``torch.dtype``."""
        import torch

        return torch.float64 if self.model_dtype == "float64" else torch.float32

    @property
    def dataset_names(self) -> List[str]:
        return [d.name for d in self.datasets]

    def resolved_raw(self) -> Dict[str, Any]:
        """The user's YAML dict with dataset paths made absolute (for copying into the run dir)."""
        raw = copy.deepcopy(self.raw)
        if "datasets" in raw and isinstance(raw["datasets"], list):
            for block, ds in zip(raw["datasets"], self.datasets):
                if isinstance(block, dict):
                    block["dataset_file_name"] = str(ds.file_name)
        elif self.datasets:
            raw["dataset_file_name"] = str(self.datasets[0].file_name)
        raw["root"] = str(Path(self.root).resolve())
        if self.initial_model_state is not None:
            raw["initial_model_state"] = str(self.initial_model_state)
        return raw


# --------------------------------------------------------------------------------------------
# key sets
# --------------------------------------------------------------------------------------------

_DATASET_KEYS = {
    "name", "dataset", "dataset_file_name", "key_mapping", "npz_fixed_field_keys", "n_train", "n_val",
    "dataset_energy_unit", "dataset_length_unit", "ase_args",
}
_TOP_KEYS = _DATASET_KEYS - {"name"} | {
    "datasets", "chemical_symbols", "type_names", "chemical_symbol_to_type", "r_max", "model",
    "batch_size", "validation_batch_size", "learning_rate", "max_epochs", "seed", "dataset_seed",
    "train_val_split", "shuffle", "loss_coeffs", "default_dtype", "model_dtype", "use_ema", "ema_decay",
    "ema_use_num_updates", "optimizer_name", "optimizer_amsgrad", "optimizer_weight_decay",
    "max_gradient_norm", "lr_scheduler_name", "lr_scheduler_patience", "lr_scheduler_factor",
    "lr_scheduler_T_max", "lr_scheduler_eta_min", "early_stopping_patiences", "solver_warm_start",
    "train_processes",
    "early_stopping_lower_bounds", "root", "run_name", "max_time_minutes", "device",
    "initial_model_state", "initial_model_state_strict",
}
_DATASET_KIND_ALIASES = {
    "npz": "npz", "npzdataset": "npz",
    "ase": "ase", "asedataset": "ase", "extxyz": "ase", "xyz": "ase",
}
_SCHEDULERS = {"none": "none", "reducelronplateau": "ReduceLROnPlateau", "cosineannealinglr": "CosineAnnealingLR"}
_OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW"}
_DTYPES = {"float32": "float32", "float": "float32", "single": "float32", "torch.float32": "float32",
           "float64": "float64", "double": "float64", "torch.float64": "float64"}
# loss name (lower case) -> (per atom, L1); nequip's names
_ENERGY_LOSSES = {"mseloss": (False, False), "mse": (False, False), "peratommseloss": (True, False),
                  "peratommse": (True, False), "l1loss": (False, True), "l1": (False, True),
                  "peratoml1loss": (True, True), "peratoml1": (True, True)}
_FORCE_LOSSES = {"mseloss": False, "mse": False, "l1loss": True, "l1": True}


# --------------------------------------------------------------------------------------------
# typed getters
# --------------------------------------------------------------------------------------------


def _where(key: str, ctx: str) -> str:
    return f"config key '{key}'" + (f" ({ctx})" if ctx else "")


def _bad(key: str, value: Any, expected: str, ctx: str = "") -> ConfigError:
    return ConfigError(f"{_where(key, ctx)}: got {value!r} ({type(value).__name__}), expected {expected}")


def _as_float(key: str, value: Any, *, ctx: str = "", positive: bool = False, nonneg: bool = False,
              allow_inf: bool = False) -> float:
    expected = "a positive number" if positive else ("a non-negative number" if nonneg else "a number")
    if isinstance(value, bool):
        raise _bad(key, value, expected, ctx)
    if isinstance(value, (int, float)):
        out = float(value)
    elif isinstance(value, str):
        # PyYAML reads '1e-3' (no dot) as a string: accept numeric strings.
        try:
            out = float(value.strip())
        except ValueError:
            raise _bad(key, value, expected, ctx) from None
    else:
        raise _bad(key, value, expected, ctx)
    if math.isnan(out) or (math.isinf(out) and not allow_inf):
        raise _bad(key, value, f"{expected} (finite)", ctx)
    if positive and not out > 0:
        raise _bad(key, value, expected, ctx)
    if nonneg and out < 0:
        raise _bad(key, value, expected, ctx)
    return out


def _as_int(key: str, value: Any, *, ctx: str = "", minimum: Optional[int] = None) -> int:
    expected = "an integer" if minimum is None else f"an integer >= {minimum}"
    if isinstance(value, bool):
        raise _bad(key, value, expected, ctx)
    if isinstance(value, int):
        out = value
    elif isinstance(value, float) and value.is_integer():
        out = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
        out = int(value)
    else:
        raise _bad(key, value, expected, ctx)
    if minimum is not None and out < minimum:
        raise _bad(key, value, expected, ctx)
    return out


def _as_bool(key: str, value: Any, *, ctx: str = "") -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "false", "no", "off"):
        return value.strip().lower() in ("true", "yes", "on")
    raise _bad(key, value, "true or false", ctx)


def _as_str(key: str, value: Any, *, ctx: str = "") -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad(key, value, "a non-empty string", ctx)
    if "\x00" in value:
        raise _bad(key, value, "a string without NUL characters", ctx)
    return value.strip()


def _as_choice(key: str, value: Any, choices: Mapping[str, str], *, ctx: str = "") -> str:
    expected = "one of " + ", ".join(sorted(set(choices.values())))
    if value is None and "none" in choices:
        return choices["none"]
    if not isinstance(value, str) or value.strip().lower() not in choices:
        raise _bad(key, value, expected, ctx)
    return choices[value.strip().lower()]


def _as_str_list(key: str, value: Any, *, ctx: str = "") -> List[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise _bad(key, value, "a list of strings", ctx)
    return [str(v) for v in value]


# --------------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------------


def _parse_type_names(raw: Mapping[str, Any]) -> List[str]:
    from ase.data import atomic_numbers as _z

    candidates = {}
    for key in ("chemical_symbols", "type_names"):
        if raw.get(key) is not None:
            candidates[key] = _as_str_list(key, raw[key])
    if raw.get("chemical_symbol_to_type") is not None:
        mapping = raw["chemical_symbol_to_type"]
        if not isinstance(mapping, dict):
            raise _bad("chemical_symbol_to_type", mapping, "a mapping {symbol: type index}")
        idx = {s: _as_int("chemical_symbol_to_type", i, ctx=f"entry {s!r}", minimum=0) for s, i in mapping.items()}
        if sorted(idx.values()) != list(range(len(idx))):
            raise _bad("chemical_symbol_to_type", mapping, "type indices 0..T-1, each used once")
        candidates["chemical_symbol_to_type"] = sorted(idx, key=idx.get)
    if not candidates:
        raise ConfigError("config key 'chemical_symbols' (or 'type_names') is required: the list of element "
                          "symbols, e.g. [H, C, O]; its order defines the type indices")
    lists = list(candidates.values())
    if any(lst != lists[0] for lst in lists[1:]):
        raise ConfigError(f"config keys {sorted(candidates)} disagree: {candidates}; give only one of them")
    names = lists[0]
    key = next(iter(candidates))
    for s in names:
        if s not in _z or s == "X":
            raise ConfigError(f"config key '{key}': {s!r} is not a chemical element symbol "
                              f"(type names must be element symbols such as H, C, O)")
    if len(set(names)) != len(names):
        raise ConfigError(f"config key '{key}': duplicate symbols in {names}")
    return names


def _parse_loss_coeffs(value: Any) -> LossCoeffs:
    key = "loss_coeffs"
    if value is None:
        return LossCoeffs()
    if isinstance(value, str):
        value = {value: 1.0}
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        value = {v: 1.0 for v in value}
    if not isinstance(value, dict):
        raise _bad(key, value, "a mapping like {forces: 1.0, total_energy: [1.0, PerAtomMSELoss]}")
    out = LossCoeffs(energy=0.0, energy_per_atom=False, forces=0.0)
    for name, spec in value.items():
        ctx = f"entry {name!r}"
        if isinstance(spec, (list, tuple)):
            if not 1 <= len(spec) <= 3:
                raise _bad(key, spec, "a number or [number, loss name]", ctx)
            weight = _as_float(key, spec[0], ctx=ctx, nonneg=True)
            loss_name = spec[1] if len(spec) > 1 else "MSELoss"
        else:
            weight = _as_float(key, spec, ctx=ctx, nonneg=True)
            loss_name = "MSELoss"
        if not isinstance(loss_name, str):
            raise _bad(key, loss_name, "a loss name (MSELoss, L1Loss, PerAtomMSELoss or PerAtomL1Loss)", ctx)
        lname = loss_name.strip().lower()
        if name in (K.TOTAL_ENERGY, "energy"):
            if lname not in _ENERGY_LOSSES:
                raise _bad(key, loss_name, "MSELoss, L1Loss, PerAtomMSELoss or PerAtomL1Loss for total_energy", ctx)
            out.energy = weight
            out.energy_per_atom, out.energy_l1 = _ENERGY_LOSSES[lname]
        elif name in (K.FORCES, "force"):
            if lname not in _FORCE_LOSSES:
                raise _bad(key, loss_name, "MSELoss or L1Loss for forces", ctx)
            out.forces, out.forces_l1 = weight, _FORCE_LOSSES[lname]
        else:
            raise _bad(key, name, "loss terms 'total_energy' and/or 'forces'", ctx)
    if out.energy == 0.0 and out.forces == 0.0:
        raise _bad(key, value, "at least one positive weight")
    return out


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "dataset"


def parse_dataset_block(block: Mapping[str, Any], defaults: Mapping[str, Any], base_dir: Path,
                        index: int = 0, *, require_split: bool = True) -> DatasetConfig:
    """Parse one dataset block; keys missing from ``block`` are taken from ``defaults``."""
    ctx = f"datasets[{index}]" if block is not defaults else ""
    merged = {k: v for k, v in defaults.items() if k in _DATASET_KEYS and k != "name"}
    merged.update(block)

    if merged.get("dataset") is None:
        raise ConfigError(f"{_where('dataset', ctx)} is required: 'npz' or 'ase'")
    kind = _as_choice("dataset", merged["dataset"], _DATASET_KIND_ALIASES, ctx=ctx)
    if merged.get("dataset_file_name") is None:
        raise ConfigError(f"{_where('dataset_file_name', ctx)} is required: the path of the {kind} file")
    fname = Path(_as_str("dataset_file_name", merged["dataset_file_name"], ctx=ctx)).expanduser()
    if not fname.is_absolute():
        fname = (base_dir / fname).resolve()

    key_mapping = merged.get("key_mapping") or {}
    if not isinstance(key_mapping, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in key_mapping.items()):
        raise _bad("key_mapping", key_mapping, "a mapping {key in file: field name}", ctx)
    fixed = _as_str_list("npz_fixed_field_keys", merged.get("npz_fixed_field_keys") or [], ctx=ctx)

    if require_split:
        for k in ("n_train", "n_val"):
            if merged.get(k) is None:
                raise ConfigError(f"{_where(k, ctx)} is required: the number of frames for "
                                  f"{'training' if k == 'n_train' else 'validation'}")
    n_train = _as_int("n_train", merged.get("n_train", 0), ctx=ctx, minimum=0)
    n_val = _as_int("n_val", merged.get("n_val", 0), ctx=ctx, minimum=0)

    try:
        e_unit = units.canonical_energy_unit(merged.get("dataset_energy_unit", "eV"))
    except ValueError:
        raise _bad("dataset_energy_unit", merged.get("dataset_energy_unit"),
                   "one of " + ", ".join(units.ENERGY_UNITS), ctx) from None
    try:
        l_unit = units.canonical_length_unit(merged.get("dataset_length_unit", "Angstrom"))
    except ValueError:
        raise _bad("dataset_length_unit", merged.get("dataset_length_unit"),
                   "one of " + ", ".join(units.LENGTH_UNITS), ctx) from None

    ase_format = None
    ase_args = merged.get("ase_args")
    if ase_args is not None:
        if not isinstance(ase_args, dict):
            raise _bad("ase_args", ase_args, "a mapping, e.g. {format: extxyz}", ctx)
        if ase_args.get("format") is not None:
            ase_format = _as_str("ase_args", ase_args["format"], ctx=ctx)

    name = block.get("name")
    name = _safe_name(_as_str("name", name, ctx=ctx) if name is not None else
                      fname.name.split(".")[0])
    return DatasetConfig(name=name, kind=kind, file_name=fname, key_mapping=dict(key_mapping),
                         npz_fixed_field_keys=fixed, n_train=n_train, n_val=n_val, energy_unit=e_unit,
                         length_unit=l_unit, ase_format=ase_format)


def parse_config(raw: Mapping[str, Any], base_dir: Union[str, Path] = ".",
                 config_path: Optional[Union[str, Path]] = None, *, warn_unknown: bool = True) -> TrainConfig:
    """Validate a config dict (as read from YAML) and return a :class:`TrainConfig`.

    Raises :class:`ConfigError` naming the key, the bad value and what is expected.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"the config must be a YAML mapping of keys to values, got {type(raw).__name__}")
    raw = dict(raw)
    base_dir = Path(base_dir).resolve()

    unknown = sorted(k for k in raw if k not in _TOP_KEYS)
    if unknown and warn_unknown:
        warnings.warn("deqformer ignores these config keys (model hyper-parameters belong in the 'model:' "
                      "block): " + ", ".join(unknown), ConfigWarning, stacklevel=2)
    datasets = _parse_datasets(raw, base_dir, warn_unknown)
    type_names = _parse_type_names(raw)
    if raw.get("r_max") is None:
        raise ConfigError("config key 'r_max' is required: the cutoff radius in Angstrom, e.g. 5.0")
    r_max = _as_float("r_max", raw["r_max"], positive=True)

    model = raw.get("model")
    if model is None:
        model = {}
    if not isinstance(model, dict):
        raise _bad("model", model, "a mapping of model hyper-parameters")

    cfg = TrainConfig(datasets=datasets, type_names=type_names, r_max=r_max, model=copy.deepcopy(model))
    _parse_optimisation(cfg, raw)
    _parse_schedule(cfg, raw)
    _parse_run(cfg, raw, base_dir)
    cfg.config_path = Path(config_path).resolve() if config_path is not None else None
    cfg.raw = copy.deepcopy(raw)
    cfg.ignored_keys = unknown
    return cfg


def _parse_datasets(raw: Dict[str, Any], base_dir: Path, warn_unknown: bool) -> List[DatasetConfig]:
    """The dataset blocks (a ``datasets:`` list, or nequip's top-level keys), with unique names."""
    if raw.get("datasets") is not None:
        blocks = raw["datasets"]
        if not isinstance(blocks, list) or not blocks or not all(isinstance(b, dict) for b in blocks):
            raise _bad("datasets", blocks, "a non-empty list of dataset blocks (mappings)")
        if raw.get("dataset_file_name") is not None:
            raise ConfigError("give either 'datasets' (a list of blocks) or a top-level 'dataset_file_name', "
                              "not both")
        datasets = []
        for i, b in enumerate(blocks):
            extra = sorted(set(b) - _DATASET_KEYS)
            if extra and warn_unknown:
                warnings.warn(f"datasets[{i}]: ignoring unknown keys {extra}", ConfigWarning, stacklevel=3)
            datasets.append(parse_dataset_block(b, raw, base_dir, i))
    else:
        datasets = [parse_dataset_block(raw, raw, base_dir, 0)]
    seen: Dict[str, int] = {}
    for ds in datasets:  # unique names (used as CSV column suffixes)
        if ds.name in seen:
            seen[ds.name] += 1
            ds.name = f"{ds.name}_{seen[ds.name]}"
        else:
            seen[ds.name] = 0
    return datasets


def _parse_optimisation(cfg: TrainConfig, raw: Dict[str, Any]) -> None:
    """Batches, learning rate, epochs, seeds, loss, dtypes, EMA, optimiser, warm starts, processes."""
    get = raw.get
    cfg.batch_size = _as_int("batch_size", get("batch_size", cfg.batch_size), minimum=1)
    cfg.validation_batch_size = _as_int("validation_batch_size", get("validation_batch_size", cfg.batch_size),
                                        minimum=1)
    cfg.learning_rate = _as_float("learning_rate", get("learning_rate", cfg.learning_rate), positive=True)
    cfg.max_epochs = _as_int("max_epochs", get("max_epochs", cfg.max_epochs), minimum=0)
    cfg.seed = _as_int("seed", get("seed", cfg.seed))
    cfg.dataset_seed = _as_int("dataset_seed", get("dataset_seed", cfg.seed))
    cfg.train_val_split = _as_choice("train_val_split", get("train_val_split", "random"),
                                     {"random": "random", "sequential": "sequential"})
    cfg.shuffle = _as_bool("shuffle", get("shuffle", True))
    cfg.loss = _parse_loss_coeffs(get("loss_coeffs"))
    cfg.default_dtype = _as_choice("default_dtype", get("default_dtype", "float64"), _DTYPES)
    cfg.model_dtype = _as_choice("model_dtype", get("model_dtype", cfg.default_dtype), _DTYPES)
    cfg.use_ema = _as_bool("use_ema", get("use_ema", True))
    cfg.ema_decay = _as_float("ema_decay", get("ema_decay", 0.99), nonneg=True)
    if not cfg.ema_decay < 1.0:
        raise _bad("ema_decay", get("ema_decay"), "a number in [0, 1)")
    cfg.ema_use_num_updates = _as_bool("ema_use_num_updates", get("ema_use_num_updates", True))
    cfg.optimizer_name = _as_choice("optimizer_name", get("optimizer_name", "Adam"), _OPTIMIZERS)
    cfg.optimizer_amsgrad = _as_bool("optimizer_amsgrad", get("optimizer_amsgrad", False))
    cfg.optimizer_weight_decay = _as_float("optimizer_weight_decay", get("optimizer_weight_decay", 0.0),
                                           nonneg=True)
    if get("max_gradient_norm") is not None:
        g = _as_float("max_gradient_norm", get("max_gradient_norm"), positive=True, allow_inf=True)
        cfg.max_gradient_norm = None if math.isinf(g) else g
    cfg.solver_warm_start = _as_bool("solver_warm_start", get("solver_warm_start", True))
    cfg.train_processes = _as_int("train_processes", get("train_processes", 1), minimum=1)
    if cfg.train_processes > 64:
        raise _bad("train_processes", cfg.train_processes, "at most 64 (one process per CPU core)")


def _parse_schedule(cfg: TrainConfig, raw: Dict[str, Any]) -> None:
    """Learning-rate scheduler and early-stopping rules."""
    get = raw.get
    cfg.lr_scheduler_name = _as_choice("lr_scheduler_name", get("lr_scheduler_name", "none"), _SCHEDULERS)
    cfg.lr_scheduler_patience = _as_int("lr_scheduler_patience", get("lr_scheduler_patience", 10), minimum=0)
    cfg.lr_scheduler_factor = _as_float("lr_scheduler_factor", get("lr_scheduler_factor", 0.5), positive=True)
    if not cfg.lr_scheduler_factor < 1.0:
        raise _bad("lr_scheduler_factor", get("lr_scheduler_factor"), "a number in (0, 1)")
    t_max = get("lr_scheduler_T_max")
    if isinstance(t_max, str) and t_max.strip().lower() == "auto":
        if get("max_time_minutes") is None:
            raise _bad("lr_scheduler_T_max", t_max, "a number of epochs ('auto' needs max_time_minutes: it "
                       "fits the cosine into that time budget from the first epoch's duration)")
        cfg.lr_scheduler_T_max_auto = True
    elif t_max is not None:
        cfg.lr_scheduler_T_max = _as_int("lr_scheduler_T_max", t_max, minimum=1)
    cfg.lr_scheduler_eta_min = _as_float("lr_scheduler_eta_min", get("lr_scheduler_eta_min", 0.0), nonneg=True)

    esp = get("early_stopping_patiences") or {}
    if not isinstance(esp, dict):
        raise _bad("early_stopping_patiences", esp, "a mapping like {validation_loss: 50}")
    for k, v in esp.items():
        if k not in ("validation_loss", "train_loss"):
            warnings.warn(f"early_stopping_patiences: ignoring {k!r} (supported: validation_loss, train_loss)",
                          ConfigWarning, stacklevel=3)
            continue
        cfg.early_stopping_patiences[k] = _as_int("early_stopping_patiences", v, ctx=f"entry {k!r}", minimum=1)
    esl = get("early_stopping_lower_bounds") or {}
    if not isinstance(esl, dict):
        raise _bad("early_stopping_lower_bounds", esl, "a mapping like {LR: 1.0e-6}")
    for k, v in esl.items():
        if k != "LR":
            warnings.warn(f"early_stopping_lower_bounds: ignoring {k!r} (supported: LR)", ConfigWarning,
                          stacklevel=3)
            continue
        cfg.early_stopping_lower_bounds[k] = _as_float("early_stopping_lower_bounds", v, ctx="entry 'LR'",
                                                       nonneg=True)


def _parse_run(cfg: TrainConfig, raw: Dict[str, Any], base_dir: Path) -> None:
    """Where the run goes, its time limit, device and initial weights."""
    get = raw.get
    root = Path(_as_str("root", get("root", "results"))).expanduser()
    cfg.root = root if root.is_absolute() else (base_dir / root).resolve()
    cfg.run_name = _as_str("run_name", get("run_name", "deqformer"))
    if "/" in cfg.run_name or cfg.run_name in (".", ".."):
        raise _bad("run_name", cfg.run_name, "a folder name without '/'")
    if get("max_time_minutes") is not None:
        cfg.max_time_minutes = _as_float("max_time_minutes", get("max_time_minutes"), positive=True)
    cfg.device = _as_str("device", get("device", "cpu"))
    if get("initial_model_state") is not None:
        init = Path(_as_str("initial_model_state", get("initial_model_state"))).expanduser()
        cfg.initial_model_state = init if init.is_absolute() else (base_dir / init).resolve()
        if not cfg.initial_model_state.is_file():
            raise _bad("initial_model_state", str(init), "the path of a deqformer checkpoint (best.pth / last.pth) "
                       f"to start from; {cfg.initial_model_state} does not exist")
    cfg.initial_model_state_strict = _as_bool("initial_model_state_strict", get("initial_model_state_strict", True))


def apply_overrides(raw: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    """``KEY=VALUE`` strings (VALUE read as YAML; ``model.KEY`` reaches into the model block) applied to a
    raw config mapping, e.g. ``run_name=explicit`` ``model.mode=explicit``."""
    out = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. run_name=test or model.mode=explicit")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({e})") from None
        parts = key.split(".")
        node = out
        for p in parts[:-1]:
            if node.get(p) is None:
                node[p] = {}
            if not isinstance(node[p], dict):
                raise ConfigError(f"override {item!r}: {p!r} is not a mapping in the config")
            node = node[p]
        node[parts[-1]] = value
    return out


def load_config(path: Union[str, Path], *, warn_unknown: bool = True,
                overrides: Sequence[str] = ()) -> TrainConfig:
    """Read and validate a YAML config file (then ``overrides``, see ``apply_overrides``). Relative paths
    inside resolve against its folder."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if raw is None:
        raise ConfigError(f"config file {path} is empty")
    if overrides:
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path} is not a mapping of keys")
        raw = apply_overrides(raw, overrides)
    try:
        return parse_config(raw, base_dir=path.resolve().parent, config_path=path, warn_unknown=warn_unknown)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
