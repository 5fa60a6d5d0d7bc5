"""``deqformer-evaluate``: errors of a deployed model (``.pt``) or a checkpoint (``.pth``) on a dataset.

    deqformer-evaluate --model aspirin.pt --dataset-config config.yaml [--split test|val|train|all]
                       [--datasets NAME ...] [--json]
    deqformer-evaluate --model best.pth --dataset-file data.npz --key-mapping coords=pos nuclear_charges=atomic_numbers

With a config the split is the one training used (same seeds, n_train, n_val); ``test`` is the frames
training never saw. The table shows meV and meV/Angstrom; ``--json`` prints one JSON object (eV,
eV/Angstrom, see its ``units`` entry) on stdout and nothing else.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional

from . import THREADS_HELP, positive_int
from .. import keys as K

__all__ = ["main", "build_parser", "evaluate", "file_dataset_config", "parse_key_mapping"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deqformer-evaluate",
                                description="Energy/force errors of a deqformer model on a dataset.")
    p.add_argument("--model", required=True, help="deployed TorchScript file (.pt) or training checkpoint (.pth)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset-config", help="training YAML: its datasets, split and units are used")
    src.add_argument("--dataset-file", help="a dataset file (.npz, or anything ase.io.read reads, e.g. .extxyz)")
    p.add_argument("--split", choices=["test", "val", "train", "all"], default=None,
                   help="frames to evaluate (default: test with --dataset-config, all with --dataset-file)")
    p.add_argument("--datasets", nargs="+", default=None, metavar="NAME",
                   help="with --dataset-config: only these of its datasets (by name; the split of each is unchanged)")
    p.add_argument("--key-mapping", nargs="+", default=None, metavar="KEY=FIELD",
                   help="with --dataset-file: file key -> field, e.g. coords=pos nuclear_charges=atomic_numbers "
                        "energies=total_energy (or one YAML mapping '{R: pos, z: atomic_numbers}')")
    p.add_argument("--fixed-fields", nargs="+", default=None, metavar="FIELD",
                   help="with --dataset-file (npz): npz_fixed_field_keys, e.g. atomic_numbers")
    p.add_argument("--energy-unit", default="eV", help="with --dataset-file: eV | meV | kcal/mol | Hartree")
    p.add_argument("--length-unit", default="Angstrom", help="with --dataset-file: Angstrom | Bohr")
    p.add_argument("--format", default=None, help="with --dataset-file: ASE format name (default: from the suffix)")
    p.add_argument("--batch-size", type=int, default=None, help="frames per batch (default: validation_batch_size or 8)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=positive_int, default=None, help=THREADS_HELP)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--no-ema", action="store_true", help="checkpoints: use the raw instead of the EMA weights")
    p.add_argument("--fixed-point-frames", type=int, default=0, metavar="K",
                   help="also solve K frames of the split one by one from a cold start: forward and adjoint "
                        "iterations per frame, and the contraction of the fixed-point map at z* (largest singular "
                        "value of df/dz and the plain iteration's rate); float64 models")
    return p


def parse_key_mapping(items: Optional[List[str]]) -> Dict[str, str]:
    """``['a=b', 'c=d']`` or ``['{a: b, c: d}']`` -> ``{'a': 'b', 'c': 'd'}``."""
    import yaml

    out: Dict[str, str] = {}
    for item in items or []:
        item = item.strip()
        if item.startswith("{"):
            parsed = yaml.safe_load(item)
            if not isinstance(parsed, dict):
                raise ValueError(f"--key-mapping: cannot parse {item!r} as a mapping")
            out.update({str(k): str(v) for k, v in parsed.items()})
        elif "=" in item:
            k, v = item.split("=", 1)
            out[k.strip()] = v.strip()
        elif ":" in item:
            k, v = item.split(":", 1)
            out[k.strip()] = v.strip()
        else:
            raise ValueError(f"--key-mapping: expected KEY=FIELD, got {item!r}")
    return out


def _dataset_config(args: argparse.Namespace, type_names: List[str], r_max: float):
    from ..config import ConfigError, load_config

    if args.datasets and not args.dataset_config:
        raise ConfigError("--datasets selects datasets of a --dataset-config; with --dataset-file leave it out")
    if args.dataset_config:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unknown training keys do not matter here
            cfg = load_config(args.dataset_config)
        if args.datasets:
            names = [d.name for d in cfg.datasets]
            unknown = [n for n in args.datasets if n not in names]
            if unknown:
                raise ConfigError(f"--datasets: {', '.join(unknown)} not in {args.dataset_config} "
                                  f"(its datasets: {', '.join(names)})")
            cfg.datasets = [d for d in cfg.datasets if d.name in args.datasets]
        if set(cfg.type_names) != set(type_names):
            print(f"note: the config's chemical_symbols {cfg.type_names} differ from the model's {type_names}; "
                  f"using the model's", file=sys.stderr)
        return cfg
    return file_dataset_config(args.dataset_file, type_names, r_max, args.key_mapping, args.fixed_fields,
                               args.energy_unit, args.length_unit, args.format)


def file_dataset_config(file_name, type_names: List[str], r_max: float, key_mapping: Optional[List[str]] = None,
                        fixed_fields: Optional[List[str]] = None, energy_unit: str = "eV",
                        length_unit: str = "Angstrom", ase_format: Optional[str] = None):
    """A config of one dataset file, all of it one split ``all`` (``--dataset-file`` and its options)."""
    from ..config import DatasetConfig, TrainConfig
    from .. import units

    path = Path(file_name).resolve()
    kind = "npz" if path.suffix == ".npz" else "ase"
    ds = DatasetConfig(name=path.name.split(".")[0] or "dataset", kind=kind, file_name=path,
                       key_mapping=parse_key_mapping(key_mapping), npz_fixed_field_keys=list(fixed_fields or []),
                       energy_unit=units.canonical_energy_unit(energy_unit),
                       length_unit=units.canonical_length_unit(length_unit), ase_format=ase_format)
    return TrainConfig(datasets=[ds], type_names=list(type_names), r_max=r_max)


def evaluate(model, cfg, split: str = "test", batch_size: int = 8, progress: bool = False) -> Dict[str, Any]:
    """Metrics of an :class:`~deqformer.inference.InferenceModel` on ``split`` of ``cfg``'s datasets (eV units)."""
    from ..data import load_datasets, make_loader
    from ..train.loss import MetricAccumulator
    from ..config import LossCoeffs

    datasets = load_datasets(cfg, type_names=model.type_names, require=(split,))
    names = [d.name for d in datasets]
    loader = make_loader(datasets, split, model.r_max, batch_size, model.dtype)
    acc = MetricAccumulator(LossCoeffs(), names)
    t0 = time.time()
    from tqdm import tqdm

    unconverged = {"converged": 0, "adjoint_converged": 0}
    worst = {"converged": 0.0, "adjoint_converged": 0.0}
    n_batches = 0
    for batch in tqdm(loader, total=len(loader), desc="evaluate", disable=not progress, file=sys.stderr, leave=False):
        out = model(batch, compute_forces=bool(batch[K.HAS_FORCES].any()))
        acc.update(out, batch)
        n_batches += 1
        for key, res_key in (("converged", "solver_residual"), ("adjoint_converged", "adjoint_residual")):
            if key in out and not bool(out[key]):
                unconverged[key] += 1
                worst[key] = max(worst[key], float(out[res_key]))
    res = acc.results()
    # a solve that stopped at the iteration limit is not silent: the counts and the worst final residual
    res["n_batches"] = n_batches
    res["solver_unconverged_batches"] = unconverged["converged"]
    res["solver_unconverged_residual_max"] = worst["converged"]
    res["adjoint_unconverged_batches"] = unconverged["adjoint_converged"]
    res["adjoint_unconverged_residual_max"] = worst["adjoint_converged"]
    res.pop("loss", None)
    res.pop("mean_batch_loss", None)
    for m in res["per_dataset"].values():
        m.pop("loss", None)
    res["seconds"] = time.time() - t0
    res["split"] = split
    res["batch_size"] = batch_size
    return res


def fixed_point_report(model, cfg, split: str, frames: int, power_iters: int = 50) -> Dict[str, Any]:
    """Cold solves of ``frames`` frames spread over ``split``, one frame at a time (as one MD structure is
    solved): iterations and the contraction of f at each fixed point (``driver.contraction``)."""
    import numpy as np
    import torch

    from ..data import load_datasets, make_loader
    from ..driver import contraction

    if model.dtype != torch.float64:
        raise ValueError("--fixed-point-frames measures derivatives: use a float64 model "
                         "(deqformer-deploy --dtype float64)")
    datasets = load_datasets(cfg, type_names=model.type_names, require=(split,))
    loader = make_loader(datasets, split, model.r_max, 1, model.dtype)
    pick = set(np.linspace(0, len(loader) - 1, min(frames, len(loader))).round().astype(int).tolist())
    rows = []
    for k, batch in enumerate(loader):
        if k not in pick:
            continue
        out = model(batch, compute_forces=True)
        c = contraction(model.module, batch[K.POSITIONS].to(model.dtype), batch[K.ATOM_TYPES], batch[K.EDGE_INDEX],
                        batch[K.EDGE_SHIFT].to(model.dtype), out["z"], iters=power_iters)
        rows.append((float(out["solver_iters"]), float(out.get("adjoint_iters", float("nan"))), c.sigma_max, c.rate))
    a = np.array(rows)
    names = ("cold_forward_iters", "cold_adjoint_iters", "sigma_max", "rate")
    res: Dict[str, Any] = {"frames": len(rows), "power_iterations": power_iters}
    for j, name in enumerate(names):
        res[name + "_mean"] = float(a[:, j].mean())
        res[name + "_max"] = float(a[:, j].max())
    return res


def _clean(o: Any) -> Any:
    """NaN -> None so the output is strict JSON."""
    if isinstance(o, float):
        return None if not math.isfinite(o) else o
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def _table(res: Dict[str, Any], model) -> str:
    def f(v: float, scale: float = 1e3) -> str:
        return "-" if v is None or not math.isfinite(v) else f"{scale * v:.3f}"

    head = (f"{'dataset':<24}{'frames':>8}{'E MAE':>11}{'E RMSE':>11}{'E/atom MAE':>12}{'F MAE':>11}{'F RMSE':>11}")
    unit = f"{'':<24}{'':>8}{'[meV]':>11}{'[meV]':>11}{'[meV/atom]':>12}{'[meV/A]':>11}{'[meV/A]':>11}"
    lines = [f"model {model.path} ({model.kind}, {str(model.dtype).replace('torch.', '')}, r_max {model.r_max:g} A), "
             f"split '{res['split']}'", head, unit]
    rows = list(res["per_dataset"].items()) if len(res["per_dataset"]) > 1 else []
    rows.append(("all" if rows else next(iter(res["per_dataset"])), res))
    for name, m in rows:
        lines.append(f"{name:<24}{m['n_frames']:>8}{f(m['e_mae']):>11}{f(m['e_rmse']):>11}"
                     f"{f(m['e_per_atom_mae']):>12}{f(m['f_mae']):>11}{f(m['f_rmse']):>11}")
    lines.append(f"solver iterations per batch: mean {res['solver_iters_mean']:.2f}, max {res['solver_iters_max']:.0f} "
                 f"(batch size {res['batch_size']}); {res['seconds']:.1f} s")
    fp = res.get("fixed_point")
    if fp:
        lines.append(f"cold solves of {fp['frames']} single frames: forward {fp['cold_forward_iters_mean']:.1f} "
                     f"(max {fp['cold_forward_iters_max']:.0f}), adjoint {fp['cold_adjoint_iters_mean']:.1f} "
                     f"(max {fp['cold_adjoint_iters_max']:.0f}) iterations; contraction at z*: largest singular value "
                     f"of df/dz {fp['sigma_max_mean']:.3f} (max {fp['sigma_max_max']:.3f}), plain-iteration rate "
                     f"{fp['rate_mean']:.3f} (max {fp['rate_max']:.3f})")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Console entry point; returns 0, or 2 on bad input."""
    args = build_parser().parse_args(argv)
    from ..config import ConfigError
    from ..data import DataError
    from ..inference import load_inference_model
    from ..train.checkpoint import CheckpointError
    from ..train.trainer import set_threads

    try:
        set_threads(args.threads)
        if args.batch_size is not None and args.batch_size < 1:
            raise ConfigError(f"--batch-size: got {args.batch_size}, expected an integer >= 1")
        model = load_inference_model(args.model, device=args.device, use_ema=not args.no_ema)
        cfg = _dataset_config(args, model.type_names, model.r_max)
        split = args.split or ("test" if args.dataset_config else "all")
        batch_size = args.batch_size or (cfg.validation_batch_size if args.dataset_config else 8)
        res = evaluate(model, cfg, split, batch_size, progress=sys.stderr.isatty() and not args.json)
        if args.fixed_point_frames < 0:
            raise ConfigError(f"--fixed-point-frames: got {args.fixed_point_frames}, expected an integer >= 0")
        if args.fixed_point_frames:
            res["fixed_point"] = fixed_point_report(model, cfg, split, args.fixed_point_frames)
    except (ConfigError, DataError, CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"deqformer-evaluate: error: {e}", file=sys.stderr)
        return 2
    for what, key in (("fixed-point", "solver"), ("adjoint", "adjoint")):
        if res.get(f"{key}_unconverged_batches"):
            print(f"deqformer-evaluate: warning: the {what} solve stopped at its iteration limit without reaching "
                  f"the tolerance in {res[f'{key}_unconverged_batches']} of {res['n_batches']} batches (largest final "
                  f"relative residual {res[f'{key}_unconverged_residual_max']:.2e}); the errors reported include those "
                  f"solves. Deploy with a larger --max-iter (or a looser --tol) to converge them.", file=sys.stderr)
    if args.json:
        out = {"model": str(args.model), "model_kind": model.kind, "dataset": args.dataset_config or args.dataset_file,
               "units": {"energy": "eV", "energy_per_atom": "eV/atom", K.FORCES: "eV/Angstrom", "length": "Angstrom"}}
        out.update(res)
        print(json.dumps(_clean(out)))
    else:
        print(_table(res, model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
