"""The training loop: epochs, validation with EMA weights, CSV log, checkpoints, resume, stopping rules."""
from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import random
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence

import numpy as np
import torch
import yaml
from tqdm import tqdm

from .. import __version__, units
from ..config import ConfigError, TrainConfig
from ..data import batch_to, compute_statistics, load_datasets, make_loader, pair_min_distances
from ..data.dataset import LoadedDataset
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .warm_start import FixedPointCache
from .ema import ExponentialMovingAverage
from .parallel import DataParallel, ParallelError, single_thread_blas
from .loss import EnergyForceLoss, MetricAccumulator
from .. import keys as K

__all__ = ["Trainer", "TrainingError", "csv_columns", "set_threads"]

ModelBuilder = Callable[..., torch.nn.Module]

_BASE_COLUMNS = ["epoch", "wall_time_s", "lr", "train_loss", "train_e_mae", "train_f_mae", "val_loss", "val_e_mae",
                 "val_f_mae", "val_e_rmse", "val_f_rmse", "mean_solver_iters", "val_mean_solver_iters"]


class TrainingError(RuntimeError):
    """The run cannot start or continue (e.g. an existing run directory without ``--resume``)."""


def csv_columns(dataset_names: Sequence[str]) -> List[str]:
    """Columns of ``metrics_epoch.csv`` (energies in eV, forces in eV/Angstrom)."""
    cols = list(_BASE_COLUMNS)
    if len(dataset_names) > 1:
        for name in dataset_names:
            cols += [f"val_e_mae_{name}", f"val_f_mae_{name}"]
    return cols


def set_threads(n: Optional[int]) -> None:
    """LibTorch's intra-op threads of this process (the command-line option ``--threads``; None keeps
    PyTorch's default, one per core). Training with ``train_processes`` > 1 uses one per process."""
    if n is not None:
        torch.set_num_threads(n)


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.10g}"
    return str(v)


class TimeBudgetCosine(torch.optim.lr_scheduler._LRScheduler):
    """Cosine annealing whose length ``t_max`` (epochs) may change between epochs (``lr_scheduler_T_max:
    auto`` re-fits it to the time budget): the lr is computed in closed form from the epoch count,
    eta_min + (base - eta_min) (1 + cos(pi min(epoch / t_max, 1))) / 2, so a new t_max never makes it
    jump back up, and it stays at eta_min past the end. ``t_max`` is saved with the scheduler."""

    def __init__(self, optimizer: torch.optim.Optimizer, t_max: int, eta_min: float = 0.0):
        self.t_max = int(t_max)
        self.eta_min = float(eta_min)
        super().__init__(optimizer)

    def get_lr(self) -> List[float]:
        frac = min(self.last_epoch / max(self.t_max, 1), 1.0)
        return [self.eta_min + (base - self.eta_min) * 0.5 * (1.0 + math.cos(math.pi * frac))
                for base in self.base_lrs]


class Trainer:
    """Trains a model described by a :class:`TrainConfig`.

    Args:
        cfg: parsed configuration.
        device: torch device; default ``cfg.device``.
        resume: continue from ``run_dir/last.pth`` (starts fresh, with a note, when there is none).
        max_time_minutes: wall-time limit overriding ``cfg.max_time_minutes``.
        model_builder: ``f(model_cfg, type_names, r_max, stats, dtype) -> nn.Module``; default
            :func:`deqformer.model.build_model`.
        progress: show tqdm progress bars (on stderr).
        log: function called with every log line (default: print to stdout); lines also go to
            ``run_dir/train.log``.
    """

    def __init__(self, cfg: TrainConfig, device: Optional[str] = None, resume: bool = False,
                 max_time_minutes: Optional[float] = None, model_builder: Optional[ModelBuilder] = None,
                 progress: bool = True, log: Optional[Callable[[str], None]] = None):
        self.cfg = cfg
        self.device = torch.device(device or cfg.device)
        self.resume = resume
        self.max_time_minutes = max_time_minutes if max_time_minutes is not None else cfg.max_time_minutes
        self.train_cache = FixedPointCache()   # each frame's last fixed point starts its next solve
        self.val_cache = FixedPointCache()
        self.model_builder = model_builder
        self.progress = progress
        self._print = log or (lambda s: print(s, flush=True))
        self.run_dir = cfg.run_dir
        self.dtype = cfg.torch_dtype
        self.loss_fn = EnergyForceLoss(cfg.loss)
        self.model: Optional[torch.nn.Module] = None
        self.parallel: Optional[DataParallel] = None    # set while train_processes > 1 run

    # ------------------------------------------------------------------ helpers

    def log(self, line: str) -> None:
        if self.parallel is not None and self.parallel.rank:
            return                       # only process 0 speaks for a data-parallel run
        self._print(line)
        try:
            with open(self.run_dir / "train.log", "a") as f:
                f.write(line + "\n")
        except OSError:
            pass

    def _builder(self) -> ModelBuilder:
        if self.model_builder is not None:
            return self.model_builder
        try:
            from ..model import build_model
        except ImportError as e:
            raise TrainingError(f"cannot import deqformer.model.build_model: {e}") from e
        return build_model

    def _initial_model_state(self, train_loader):
        """Fine-tuning (``initial_model_state``): the architecture, statistics and EMA weights of a trained
        checkpoint; only the core-repulsion walls come from the new training split (its closest contacts)."""
        cfg = self.cfg
        path = cfg.initial_model_state
        try:
            init = load_checkpoint(path)
        except CheckpointError as e:
            raise TrainingError(f"initial_model_state: {e}") from e
        if list(init.get("type_names") or []) != list(cfg.type_names) or float(init.get("r_max", -1)) != float(cfg.r_max):
            raise TrainingError(f"initial_model_state {path} was trained with type_names={init.get('type_names')}, "
                                f"r_max={init.get('r_max')}; the config has {cfg.type_names}, {cfg.r_max} (fine-tuning "
                                f"keeps the elements, their order and the cutoff)")
        model_cfg = init.get("model_cfg") or {}
        if model_cfg != cfg.model:
            self.log(f"note: the config's model block differs from {path.name}'s; keeping the checkpoint's architecture")
        stats = dict(init["stats"])
        stats["pair_min_dist"] = pair_min_distances(train_loader.frames, train_loader.graphs, len(cfg.type_names))
        return stats, model_cfg, init["deploy_state"]

    def _make_scheduler(self, optimizer: torch.optim.Optimizer):
        c = self.cfg
        if c.lr_scheduler_name == "ReduceLROnPlateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=c.lr_scheduler_factor,
                                                              patience=c.lr_scheduler_patience)
        if c.lr_scheduler_name == "CosineAnnealingLR" and c.lr_scheduler_T_max_auto:
            return TimeBudgetCosine(optimizer, t_max=max(c.max_epochs, 1), eta_min=c.lr_scheduler_eta_min)
        if c.lr_scheduler_name == "CosineAnnealingLR":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=c.lr_scheduler_T_max or max(c.max_epochs, 1),
                                                              eta_min=c.lr_scheduler_eta_min)
        return None

    def _auto_t_max(self, epoch: int, epoch_s: float, elapsed_s: float) -> int:
        """Length in epochs of a cosine that ends inside the time budget: the epochs done plus those that
        fit in the time left at the mean epoch duration so far (5 % margin for slower epochs)."""
        left_s = 60.0 * float(self.max_time_minutes) - elapsed_s
        return max(epoch, epoch + int(0.95 * left_s / max(epoch_s, 1e-9)))

    def _make_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        c = self.cfg
        cls = torch.optim.AdamW if c.optimizer_name == "AdamW" else torch.optim.Adam
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise TrainingError("the model has no trainable parameters")
        return cls(params, lr=c.learning_rate, amsgrad=c.optimizer_amsgrad, weight_decay=c.optimizer_weight_decay)

    @staticmethod
    def _rng_state() -> Dict[str, Any]:
        np_state = np.random.get_state()
        return {"torch": torch.get_rng_state(),
                "numpy": [np_state[0], np_state[1].astype(np.int64).tolist(), int(np_state[2]), int(np_state[3]),
                          float(np_state[4])],
                "python": random.getstate()}

    @staticmethod
    def _set_rng_state(state: Dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        n = state["numpy"]
        np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
        py = state["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))

    def _csv_rows_keep(self, path: Path, last_epoch: int) -> None:
        """On resume drop CSV rows of epochs after the checkpoint (they will be redone)."""
        if not path.exists():
            return
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return
        kept = [rows[0]] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= last_epoch]
        if len(kept) != len(rows):  # rewritten atomically: a kill here must not lose the history
            tmp = path.with_name(path.name + ".tmp")
            with open(tmp, "w", newline="") as f:
                csv.writer(f).writerows(kept)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)

    # ------------------------------------------------------------------ epochs

    def _forward(self, model: torch.nn.Module, batch: Dict[str, torch.Tensor], want_forces: bool,
                 cache: Optional[FixedPointCache] = None):
        if cache is None or not self.cfg.solver_warm_start or getattr(model, "explicit", True):
            return model(batch, compute_forces=want_forces)
        z0, u0 = cache.gather(batch)
        out = model(batch, compute_forces=want_forces, z0=z0, u0=u0)
        cache.store(batch, out)
        return out

    def train_epoch(self, epoch: int, model, optimizer, ema, loader, names: Sequence[str]) -> Dict[str, Any]:
        model.train()
        loader.set_epoch(epoch)
        acc = MetricAccumulator(self.cfg.loss, names)
        skipped = 0
        running = 0.0
        if self.parallel is not None:
            return self._train_epoch_parallel(epoch, model, optimizer, ema, loader, names)
        bar = tqdm(loader, total=len(loader), desc=f"epoch {epoch}", leave=False, disable=not self.progress,
                   file=sys.stderr, dynamic_ncols=True)
        for k, batch in enumerate(bar):
            batch = batch_to(batch, self.device)
            want_forces = self.loss_fn.needs_forces and bool(batch[K.HAS_FORCES].any())
            out = self._forward(model, batch, want_forces, self.train_cache)
            loss, _ = self.loss_fn(out, batch)
            if "aux_loss" in out:        # the model's own regulariser (e.g. DEQ Jacobian penalty)
                loss = loss + out["aux_loss"]
            if not torch.isfinite(loss):
                skipped += 1
                optimizer.zero_grad(set_to_none=True)
                continue
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.cfg.max_gradient_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), self.cfg.max_gradient_norm)
            optimizer.step()
            if ema is not None:
                ema.update(model)
            lv = float(loss.detach())
            acc.update(out, batch, loss=lv)
            running = lv if k == 0 else 0.9 * running + 0.1 * lv
            iters = sum(acc.iters) / len(acc.iters) if acc.iters else math.nan
            bar.set_postfix(loss=f"{running:.4g}", iters=f"{iters:.1f}")
        bar.close()
        res = acc.results()
        res["skipped_batches"] = skipped
        return res

    def _train_epoch_parallel(self, epoch: int, model, optimizer, ema, loader, names: Sequence[str]) -> Dict[str, Any]:
        """``train_epoch`` as one of ``train_processes`` processes (see ``parallel.py``): this process's part
        of every batch, gradients summed over the processes, the same optimizer step everywhere."""
        par = self.parallel
        model.train()
        loader.set_epoch(epoch)
        if par.rank:
            # the workers' own random stream (Jacobian-penalty probes), reproducible per epoch and rank
            torch.manual_seed((int(self.cfg.seed) * 1_000_003 + epoch * 7919 + par.rank) % 2**63)
        acc = MetricAccumulator(self.cfg.loss, names)
        params = [p for p in model.parameters() if p.requires_grad]
        skipped = 0
        running = 0.0
        bar = tqdm(loader.iter_shard(par.rank, par.world_size), total=len(loader), desc=f"epoch {epoch}",
                   leave=False, disable=not self.progress or par.rank != 0, file=sys.stderr, dynamic_ncols=True)
        for k, (batch, counts) in enumerate(bar):
            optimizer.zero_grad(set_to_none=True)
            out = None
            lv, ok = 0.0, True
            if batch is not None:
                batch = batch_to(batch, self.device)
                want_forces = self.loss_fn.needs_forces and bool(batch[K.HAS_FORCES].any())
                out = self._forward(model, batch, want_forces, self.train_cache)
                loss, _ = self.loss_fn(out, batch, counts)
                if "aux_loss" in out:    # the regulariser is a mean: weight this part by its share of frames
                    loss = loss + out["aux_loss"] * (float(batch[K.NUM_FRAMES]) / counts[2])
                ok = bool(torch.isfinite(loss))
                if ok:
                    loss.backward()
                    lv = float(loss.detach())
            if self.cfg.solver_warm_start:
                par.exchange_fixed_points(self.train_cache, batch, out)
            lv, ok = par.reduce_gradients(params, lv, ok)
            if not ok:
                skipped += 1
                optimizer.zero_grad(set_to_none=True)
                continue
            if self.cfg.max_gradient_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), self.cfg.max_gradient_norm)
            optimizer.step()
            if ema is not None:
                ema.update(model)
            if batch is not None:
                acc.update(out, batch, loss=lv if par.rank == 0 else None)
            elif par.rank == 0:
                acc.batch_losses.append(lv)
            running = lv if k == 0 else 0.9 * running + 0.1 * lv
            iters = sum(acc.iters) / len(acc.iters) if acc.iters else math.nan
            bar.set_postfix(loss=f"{running:.4g}", iters=f"{iters:.1f}")
        bar.close()
        par.gather_metrics(acc)
        res = acc.results()
        res["skipped_batches"] = skipped
        return res

    def _start_processes(self, n_proc: int, model, optimizer, ema, train_loader, val_loader, names: Sequence[str],
                         start_epoch: int) -> None:
        """Fork ``n_proc - 1`` training processes (``train_processes``). Process 0 returns; the others run
        the epochs as workers and exit inside this call."""
        if self.device.type != "cpu":
            raise TrainingError(f"train_processes: {n_proc} splits batches over CPU cores; on {self.device} set "
                                f"train_processes: 1")
        self.log(f"data-parallel training: {n_proc} processes, one thread each, each batch of {self.cfg.batch_size} "
                 f"frames split between them")
        par = DataParallel(n_proc)
        try:
            par.start()
        except ParallelError as e:
            raise TrainingError(str(e)) from e
        self.parallel = par
        if par.rank == 0:
            return
        ok = False
        try:
            self.progress = False
            for epoch in range(start_epoch + 1, self.cfg.max_epochs + 1):
                self.train_epoch(epoch, model, optimizer, ema, train_loader, names)
                if ema is not None:
                    with ema.average_parameters(model):
                        self.validate(model, val_loader, names)
                else:
                    self.validate(model, val_loader, names)
                if par.receive_control(optimizer):
                    break
            ok = True
        except BaseException:
            sys.stderr.write(f"deqformer-train: training process {par.rank} failed:\n")
            traceback.print_exc()
        finally:
            par.worker_exit(ok)

    def validate(self, model, loader, names: Sequence[str]) -> Dict[str, Any]:
        model.eval()
        acc = MetricAccumulator(self.cfg.loss, names)
        par = self.parallel
        batches = ((b, None) for b in loader) if par is None else loader.iter_shard(par.rank, par.world_size)
        for batch, _ in batches:
            out = None
            if batch is not None:
                batch = batch_to(batch, self.device)
                with torch.enable_grad():
                    out = self._forward(model, batch, bool(batch[K.HAS_FORCES].any()), self.val_cache)
                out = {k: (v.detach() if torch.is_tensor(v) else v) for k, v in out.items()}
                acc.update(out, batch)
            if par is not None and self.cfg.solver_warm_start:
                par.exchange_fixed_points(self.val_cache, batch, out)
        if par is not None:
            par.gather_metrics(acc)
        return acc.results()

    # ------------------------------------------------------------------ main

    def _payload(self, model, optimizer, scheduler, ema, epoch, state, stats, model_cfg) -> Dict[str, Any]:
        cfg = self.cfg
        model_state = {k: v for k, v in model.state_dict().items()}
        ema_state = ema.state_dict() if ema is not None else None
        deploy_state = ema_state["shadow"] if ema_state is not None else model_state
        config_dict = None
        if hasattr(model, "config_dict"):
            try:
                config_dict = model.config_dict()
            except Exception:  # the model's business; the checkpoint is still usable without it
                config_dict = None
        raw = json.loads(json.dumps(cfg.resolved_raw(), default=str))  # plain types only
        return {
            "deqformer_version": __version__,
            "epoch": epoch,
            "best_metric": state["best_metric"],
            "best_epoch": state["best_epoch"],
            "epochs_since_best": epoch - state["best_epoch"] if state["best_epoch"] else epoch,
            "best_train_loss": state["best_train_loss"],
            "best_train_epoch": state["best_train_epoch"],
            "wall_time_s": state["wall_time_s"],
            "model_state": model_state,
            "deploy_state": deploy_state,
            "ema_state": ema_state,
            "fixed_point_cache": {"train": self.train_cache.state_dict(), "val": self.val_cache.state_dict()},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng": self._rng_state(),
            "config": raw,
            "model_cfg": model_cfg,
            "model_config_dict": config_dict,
            "stats": stats,
            "type_names": list(cfg.type_names),
            "r_max": float(cfg.r_max),
            "model_dtype": cfg.model_dtype,
            "energy_unit": units.MODEL_ENERGY_UNIT,
            "length_unit": units.MODEL_LENGTH_UNIT,
            "dataset_names": cfg.dataset_names,
        }

    def run(self) -> Dict[str, Any]:
        """Train until max_epochs, early stopping or the time limit; return a summary dict."""
        t_start = time.time()
        cfg = self.cfg
        if int(cfg.train_processes) > 1:
            # one intra-op thread per process (more do not help this model; and the workers are forked,
            # which is only safe before an OpenMP thread pool exists)
            torch.set_num_threads(1)
            single_thread_blas()
        ckpt = self._open_run_dir()
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        random.seed(cfg.seed)
        names, train_loader, val_loader = self._load_data()
        stats, model_cfg, init_state = self._statistics(ckpt, train_loader)
        model = self._build_model(model_cfg, stats, init_state)
        optimizer = self._make_optimizer(model)
        scheduler = self._make_scheduler(optimizer)
        ema = ExponentialMovingAverage(model, cfg.ema_decay, cfg.ema_use_num_updates) if cfg.use_ema else None
        state = {"best_metric": math.inf, "best_epoch": 0, "best_train_loss": math.inf, "best_train_epoch": 0,
                 "wall_time_s": 0.0}
        start_epoch = self._restore(ckpt, model, optimizer, scheduler, ema, state) if ckpt is not None else 0
        metrics = self._open_metrics(names, resumed_epoch=start_epoch if ckpt is not None else None)

        n_proc = int(cfg.train_processes)
        if n_proc > 1:
            self._start_processes(n_proc, model, optimizer, ema, train_loader, val_loader, names, start_epoch)
        loop = _Loop(model, optimizer, scheduler, ema, train_loader, val_loader, names, stats, model_cfg, state,
                     metrics, start_epoch, t_start)
        try:
            epoch, stop_reason = self._epochs(loop)
        except BaseException as e:
            self._abort_processes(e)
            raise
        self._stop_processes()

        last_path = self.run_dir / "last.pth"
        if epoch == start_epoch and not last_path.exists():
            # max_epochs == 0 (or already reached): still leave a loadable checkpoint
            save_checkpoint(self._payload(model, optimizer, scheduler, ema, epoch, state, stats, model_cfg), last_path)
        self.log(f"stopped after epoch {epoch}: {stop_reason}; best validation loss {state['best_metric']:.6g} at "
                 f"epoch {state['best_epoch']}; checkpoints in {self.run_dir}")
        return {"run_dir": str(self.run_dir), "last_epoch": epoch, "epochs_run": epoch - start_epoch,
                "best_epoch": state["best_epoch"], "best_val_loss": state["best_metric"], "stop_reason": stop_reason,
                "stats": stats}

    # ------------------------------------------------------------------ the steps of run()

    def _open_run_dir(self) -> Optional[Dict[str, Any]]:
        """Create the run folder; the checkpoint to resume from (None for a new run)."""
        run_dir = self.run_dir
        last_path = run_dir / "last.pth"
        if last_path.exists() and not self.resume:
            raise TrainingError(f"run directory {run_dir} already holds a run (last.pth); use --resume to continue "
                                f"it, or choose another run_name / root")
        run_dir.mkdir(parents=True, exist_ok=True)
        if self.resume:
            if last_path.exists():
                return load_checkpoint(last_path)
            self.log(f"--resume: no {last_path} yet, starting a new run")
        return None

    def _load_data(self):
        """(dataset names, training loader, validation loader)."""
        cfg = self.cfg
        t0 = time.time()
        datasets: List[LoadedDataset] = load_datasets(cfg, require=("train", "val"))
        names = [d.name for d in datasets]
        for d in datasets:
            self.log(f"dataset '{d.name}': {d.config.file_name} - {len(d.frames)} frames: "
                     f"{len(d.indices('train'))} train, {len(d.indices('val'))} val, {len(d.indices('test'))} unseen")
        train_loader = make_loader(datasets, "train", cfg.r_max, cfg.batch_size, self.dtype, shuffle=cfg.shuffle,
                                   seed=cfg.seed)
        val_loader = make_loader(datasets, "val", cfg.r_max, cfg.validation_batch_size, self.dtype)
        self.log(f"loaded data and built graphs in {time.time() - t0:.1f} s")
        return names, train_loader, val_loader

    def _statistics(self, ckpt: Optional[Dict[str, Any]], train_loader):
        """(dataset statistics, model block, initial weights or None): the checkpoint's when resuming, those
        of initial_model_state when fine-tuning, else computed from the training frames."""
        cfg = self.cfg
        init_state = None
        if ckpt is not None:
            last_path = self.run_dir / "last.pth"
            if list(ckpt["type_names"]) != list(cfg.type_names) or float(ckpt["r_max"]) != float(cfg.r_max):
                raise TrainingError(f"{last_path} was trained with type_names={ckpt['type_names']}, "
                                    f"r_max={ckpt['r_max']}; the config has {cfg.type_names}, {cfg.r_max}")
            if ckpt.get("model_dtype") != cfg.model_dtype:
                raise TrainingError(f"{last_path} has model_dtype {ckpt.get('model_dtype')}, config {cfg.model_dtype}")
            stats, model_cfg = ckpt["stats"], ckpt["model_cfg"]
            if "pair_min_dist" not in stats:     # written before the core repulsion existed
                stats = dict(stats, pair_min_dist=pair_min_distances(train_loader.frames, train_loader.graphs,
                                                                     len(cfg.type_names)))
            if model_cfg != cfg.model:
                self.log("note: the config's model block differs from the checkpoint's; keeping the checkpoint's")
        elif cfg.initial_model_state is not None:
            stats, model_cfg, init_state = self._initial_model_state(train_loader)
        else:
            stats = compute_statistics(train_loader.frames, len(cfg.type_names), train_loader.graphs)
            model_cfg = cfg.model
        self.log("statistics: " + ", ".join(f"{k}={v}" for k, v in stats.items()))
        return stats, model_cfg, init_state

    def _build_model(self, model_cfg, stats, init_state) -> torch.nn.Module:
        cfg = self.cfg
        builder = self._builder()
        with _default_dtype(torch.float64 if cfg.default_dtype == "float64" else torch.float32):
            try:
                model = builder(dict(model_cfg), list(cfg.type_names), float(cfg.r_max), dict(stats), self.dtype)
            except (ValueError, TypeError, KeyError) as e:
                raise ConfigError(f"config key 'model': cannot build the model: {e}") from e
        if init_state is not None:
            try:
                missing, unexpected = model.load_state_dict(init_state, strict=cfg.initial_model_state_strict)
            except RuntimeError as e:
                raise TrainingError(f"initial_model_state {cfg.initial_model_state}: its weights do not fit the model "
                                    f"({e}); set initial_model_state_strict: false to load the matching ones") from e
            self.log(f"initialised from {cfg.initial_model_state} (fine-tuning)"
                     + (f"; not in it: {missing}" if missing else "") + (f"; ignored: {unexpected}" if unexpected else ""))
        model = model.to(device=self.device)
        self.model = model
        n_params = sum(p.numel() for p in model.parameters())
        self.log(f"model: {type(model).__name__}, {n_params} parameters, {cfg.model_dtype}, device {self.device}")
        return model

    def _restore(self, ckpt: Dict[str, Any], model, optimizer, scheduler, ema, state: Dict[str, Any]) -> int:
        """Load a checkpoint's weights, optimiser, schedule, EMA, fixed points, counters and random state;
        returns its epoch."""
        model.load_state_dict(ckpt["model_state"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt.get("scheduler") is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        if ema is not None and ckpt.get("ema_state") is not None:
            ema.load_state_dict(ckpt["ema_state"])
        caches = ckpt.get("fixed_point_cache") or {}
        self.train_cache.load_state_dict(caches.get("train"))
        self.val_cache.load_state_dict(caches.get("val"))
        for k in state:
            state[k] = ckpt[k]
        start_epoch = int(ckpt["epoch"])
        self._set_rng_state(ckpt["rng"])
        self.log(f"resumed from {self.run_dir / 'last.pth'} after epoch {start_epoch} (best val loss "
                 f"{state['best_metric']:.6g} at epoch {state['best_epoch']})")
        return start_epoch

    def _open_metrics(self, names: Sequence[str], resumed_epoch: Optional[int]):
        """Write the resolved config; start metrics_epoch.csv (or keep its rows up to a resumed epoch).
        Returns (csv path, columns)."""
        run_dir = self.run_dir
        with open(run_dir / "config.yaml", "w") as f:
            yaml.safe_dump(json.loads(json.dumps(self.cfg.resolved_raw(), default=str)), f, sort_keys=False)
        csv_path = run_dir / "metrics_epoch.csv"
        columns = csv_columns(names)
        if resumed_epoch is not None:
            self._csv_rows_keep(csv_path, resumed_epoch)
        if not csv_path.exists() or resumed_epoch is None:
            with open(csv_path, "w", newline="") as f:
                csv.writer(f).writerow(columns)
        return csv_path, columns

    def _epochs(self, r: "_Loop"):
        """The epoch loop; returns (last epoch, why it stopped)."""
        cfg = self.cfg
        state = r.state
        stop_reason = "max_epochs"
        epoch = r.start_epoch
        wall_base = state["wall_time_s"]
        t_loop = time.time()
        wall_prev = wall_base
        for epoch in range(r.start_epoch + 1, cfg.max_epochs + 1):
            tr = self.train_epoch(epoch, r.model, r.optimizer, r.ema, r.train_loader, r.names)
            if r.ema is not None:
                with r.ema.average_parameters(r.model):
                    va = self.validate(r.model, r.val_loader, r.names)
            else:
                va = self.validate(r.model, r.val_loader, r.names)
            lr = r.optimizer.param_groups[0]["lr"]
            val_loss = float(va["loss"])
            self._step_scheduler(r, epoch, val_loss, (time.time() - t_loop) / (epoch - r.start_epoch))
            improved = math.isfinite(val_loss) and val_loss < state["best_metric"]
            if improved:
                state["best_metric"], state["best_epoch"] = val_loss, epoch
            train_loss = float(tr["mean_batch_loss"])
            if math.isfinite(train_loss) and train_loss < state["best_train_loss"]:
                state["best_train_loss"], state["best_train_epoch"] = train_loss, epoch
            state["wall_time_s"] = wall_base + (time.time() - t_loop)
            self._write_metrics(r.metrics, epoch, state, lr, train_loss, tr, val_loss, va)

            payload = self._payload(r.model, r.optimizer, r.scheduler, r.ema, epoch, state, r.stats, r.model_cfg)
            save_checkpoint(payload, self.run_dir / "last.pth")
            if improved:
                save_checkpoint(payload, self.run_dir / "best.pth")

            skipped = f", skipped {tr['skipped_batches']} non-finite batches" if tr["skipped_batches"] else ""
            self.log(f"epoch {epoch:4d} | lr {lr:.3g} | train loss {train_loss:.5g} | val loss {val_loss:.5g} | "
                     f"val E MAE {1e3 * va['e_mae']:.2f} meV  F MAE {1e3 * va['f_mae']:.2f} meV/A | "
                     f"iters {tr['solver_iters_mean']:.1f} | {state['wall_time_s']:.0f} s"
                     f"{' *' if improved else ''}{skipped}")

            # stopping rules (checked after the checkpoint is safely written)
            epoch_s = state["wall_time_s"] - wall_prev
            wall_prev = state["wall_time_s"]
            stop_now = self._stop_reason(epoch, state, r.optimizer, epoch_s, r.t_start)
            if self.parallel is not None:
                self.parallel.send_control(r.optimizer, stop_now is not None)
            if stop_now is not None:
                stop_reason = stop_now
                break
        else:
            epoch = max(epoch, r.start_epoch)
        return epoch, stop_reason

    def _step_scheduler(self, r: "_Loop", epoch: int, val_loss: float, mean_epoch_s: float) -> None:
        scheduler = r.scheduler
        if isinstance(scheduler, TimeBudgetCosine):
            # re-fit the cosine's length to the time left, from the mean epoch duration so far
            t_max = self._auto_t_max(epoch, mean_epoch_s, time.time() - r.t_start)
            if t_max != scheduler.t_max:
                self.log(f"lr_scheduler_T_max: auto -> {t_max} epochs fit in {self.max_time_minutes:g} minutes")
            scheduler.t_max = t_max
        if scheduler is not None:
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(val_loss if math.isfinite(val_loss) else math.inf)
            else:
                scheduler.step()

    @staticmethod
    def _write_metrics(metrics, epoch: int, state, lr: float, train_loss: float, tr, val_loss: float, va) -> None:
        csv_path, columns = metrics
        row = {"epoch": epoch, "wall_time_s": state["wall_time_s"], "lr": lr, "train_loss": train_loss,
               "train_e_mae": tr["e_mae"], "train_f_mae": tr["f_mae"], "val_loss": val_loss,
               "val_e_mae": va["e_mae"], "val_f_mae": va["f_mae"], "val_e_rmse": va["e_rmse"],
               "val_f_rmse": va["f_rmse"], "mean_solver_iters": tr["solver_iters_mean"],
               "val_mean_solver_iters": va["solver_iters_mean"]}
        for name, m in va["per_dataset"].items():
            row[f"val_e_mae_{name}"], row[f"val_f_mae_{name}"] = m["e_mae"], m["f_mae"]
        with open(csv_path, "a", newline="") as f:
            csv.writer(f).writerow([_fmt(row.get(c, math.nan)) for c in columns])

    def _stop_reason(self, epoch: int, state, optimizer, epoch_s: float, t_start: float) -> Optional[str]:
        """Why training stops after this epoch (early stopping or the time limit), or None."""
        cfg = self.cfg
        pat = cfg.early_stopping_patiences
        lr_now = optimizer.param_groups[0]["lr"]
        if "validation_loss" in pat and epoch - state["best_epoch"] >= pat["validation_loss"]:
            return f"early stopping: validation loss did not improve for {pat['validation_loss']} epochs"
        if "train_loss" in pat and epoch - state["best_train_epoch"] >= pat["train_loss"]:
            return f"early stopping: training loss did not improve for {pat['train_loss']} epochs"
        if "LR" in cfg.early_stopping_lower_bounds and lr_now < cfg.early_stopping_lower_bounds["LR"]:
            return f"early stopping: learning rate {lr_now:.3g} below the lower bound"
        if self.max_time_minutes is not None:
            # stop before an epoch that would end past the limit (the last one's duration, +10 %,
            # predicts it: epochs vary by a few per cent)
            left_s = 60.0 * self.max_time_minutes - (time.time() - t_start)
            if left_s < 1.1 * epoch_s:
                return (f"time limit of {self.max_time_minutes:g} minutes: {max(left_s, 0.0):.0f} s left, "
                        f"less than an epoch ({epoch_s:.0f} s)")
        return None

    def _abort_processes(self, e: BaseException) -> None:
        """After an exception in process 0: kill the training processes, naming any that failed."""
        if self.parallel is None:
            return
        failed = self.parallel.failed_workers() if isinstance(e, RuntimeError) else []
        self.parallel.stop(kill=True)
        self.parallel = None
        if failed:
            raise TrainingError("training process " + ", ".join(f"{r} failed (exit code {c})" for r, c in failed)
                                + "; its traceback is above; last.pth holds the last finished epoch "
                                  "(--resume)") from e

    def _stop_processes(self) -> None:
        if self.parallel is not None:
            codes = self.parallel.stop()
            self.parallel = None
            if any(codes):
                raise TrainingError(f"a training process failed (exit codes {codes}); see its traceback above")


class _Loop(NamedTuple):
    """What the epoch loop works on."""
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    ema: Optional[ExponentialMovingAverage]
    train_loader: Any
    val_loader: Any
    names: Sequence[str]
    stats: Dict[str, Any]
    model_cfg: Dict[str, Any]
    state: Dict[str, Any]
    metrics: Any
    start_epoch: int
    t_start: float
