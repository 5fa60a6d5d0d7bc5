"""Loss (masked weighted MSE or L1 of energies and forces) and error metrics."""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ..config import LossCoeffs
from .. import keys as K

__all__ = ["EnergyForceLoss", "MetricAccumulator", "METRIC_NAMES"]

#: Metric names (nequip's spelling). Units: eV, eV/atom, eV/Angstrom.
METRIC_NAMES = ("e_mae", "e_rmse", "e_per_atom_mae", "e_per_atom_rmse", "f_mae", "f_rmse")


def _energy_errors(out: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor]
                   ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(error per labelled frame [M], atoms per labelled frame [M], mask [B])."""
    ref = batch[K.TOTAL_ENERGY]
    mask = torch.isfinite(ref)
    err = out["energy"].reshape(-1)[mask] - ref[mask].to(out["energy"].dtype)
    return err, batch[K.NUM_ATOMS][mask].to(err.dtype), mask


def _force_errors(out: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor]
                  ) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """(errors of labelled atoms [M, 3], row mask [N]) or None when the model returned no forces."""
    if out.get(K.FORCES) is None:
        return None
    ref = batch[K.FORCES]
    mask = torch.isfinite(ref).all(dim=-1)
    return out[K.FORCES][mask] - ref[mask].to(out[K.FORCES].dtype), mask


class EnergyForceLoss:
    """``w_E * err(E) + w_F * err(F)``, err a mean squared (MSELoss) or mean absolute (L1Loss) error; the
    energy error is divided by the atom count for ``PerAtom*Loss``. Frames / atoms whose labels are NaN
    (missing) are left out."""

    def __init__(self, coeffs: LossCoeffs):
        self.coeffs = coeffs

    @property
    def needs_forces(self) -> bool:
        return self.coeffs.forces > 0

    def __call__(self, out: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor],
                 counts: Optional[Tuple[int, ...]] = None) -> Tuple[torch.Tensor, Dict[str, float]]:
        """``counts`` = (frames with an energy, atoms with forces, ...) of the whole batch when ``batch`` is one
        process's part of it (data-parallel training): the parts' losses then sum to the batch's loss."""
        c = self.coeffs
        e_err, n_at, _ = _energy_errors(out, batch)
        zero = out["energy"].sum() * 0.0
        loss = zero
        parts: Dict[str, float] = {}
        if c.energy > 0 and e_err.numel():
            e = e_err / n_at if c.energy_per_atom else e_err
            pe = e.abs() if c.energy_l1 else e * e
            term_e = pe.mean() if counts is None else pe.sum() / max(counts[0], 1)
            loss = loss + c.energy * term_e
            parts["l1_e" if c.energy_l1 else "mse_e"] = float(term_e.detach())
        if c.forces > 0:
            fe = _force_errors(out, batch)
            if fe is not None and fe[0].numel():
                pf = fe[0].abs() if c.forces_l1 else fe[0] * fe[0]
                term_f = pf.mean() if counts is None else pf.sum() / max(3 * counts[1], 1)
                loss = loss + c.forces * term_f
                parts["l1_f" if c.forces_l1 else "mse_f"] = float(term_f.detach())
        return loss, parts


class _Sums:
    __slots__ = ("n_e", "e_abs", "e_sq", "e_pa_abs", "e_pa_sq", "n_f", "f_abs", "f_sq", "n_frames")

    def __init__(self) -> None:
        for s in self.__slots__:
            setattr(self, s, 0.0)


class MetricAccumulator:
    """Accumulates errors over many batches, overall and per dataset id.

    ``results()`` gives MAE / RMSE of total energy (eV), energy per atom (eV/atom) and force components
    (eV/Angstrom), the epoch loss computed from the accumulated MSEs, and solver statistics.
    """

    def __init__(self, coeffs: LossCoeffs, dataset_names: Sequence[str] = ("dataset",)):
        self.coeffs = coeffs
        self.names = list(dataset_names)
        self.total = _Sums()
        self.per = [_Sums() for _ in self.names]
        self.iters: List[float] = []
        self.residuals: List[float] = []
        self.batch_losses: List[float] = []

    def update(self, out: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor],
               loss: Optional[float] = None) -> None:
        with torch.no_grad():
            e_err, n_at, e_mask = _energy_errors(out, batch)
            e_err, n_at = e_err.detach().double().cpu(), n_at.double().cpu()
            e_ds = batch[K.DATASET_ID][e_mask].cpu()
            fe = _force_errors(out, batch)
            if fe is not None:
                f_err = fe[0].detach().double().cpu()
                f_ds = batch[K.DATASET_ID][batch[K.BATCH][fe[1]]].cpu()
            frame_ds = batch[K.DATASET_ID].cpu()
            for ds, sums in [(None, self.total)] + list(enumerate(self.per)):
                sel = slice(None) if ds is None else (e_ds == ds)
                de, na = e_err[sel], n_at[sel]
                sums.n_frames += float((frame_ds == ds).sum()) if ds is not None else float(len(frame_ds))
                sums.n_e += de.numel()
                sums.e_abs += float(de.abs().sum())
                sums.e_sq += float((de * de).sum())
                sums.e_pa_abs += float((de / na).abs().sum())
                sums.e_pa_sq += float(((de / na) ** 2).sum())
                if fe is not None:
                    df = f_err if ds is None else f_err[f_ds == ds]
                    sums.n_f += df.numel()
                    sums.f_abs += float(df.abs().sum())
                    sums.f_sq += float((df * df).sum())
        for key, dest in (("solver_iters", self.iters), ("solver_residual", self.residuals)):
            v = out.get(key)
            if v is not None:
                dest.append(float(v.detach().float().mean()) if torch.is_tensor(v) else float(v))
        if loss is not None:
            self.batch_losses.append(float(loss))

    def state(self) -> Dict[str, object]:
        """The accumulated sums (picklable), for ``merge_state`` in another process."""
        return {"total": {k: getattr(self.total, k) for k in _Sums.__slots__},
                "per": [{k: getattr(s, k) for k in _Sums.__slots__} for s in self.per],
                "iters": list(self.iters), "residuals": list(self.residuals)}

    def merge_state(self, state: Dict[str, object]) -> None:
        """Add another accumulator's sums (its batch losses are not taken: in data-parallel training
        process 0 already records each whole batch's loss)."""
        for sums, other in [(self.total, state["total"])] + list(zip(self.per, state["per"])):
            for k in _Sums.__slots__:
                setattr(sums, k, getattr(sums, k) + other[k])
        self.iters.extend(state["iters"])
        self.residuals.extend(state["residuals"])

    def _metrics(self, s: _Sums) -> Dict[str, float]:
        def div(a: float, n: float) -> float:
            return a / n if n else math.nan

        m = {
            "n_frames": int(s.n_frames),
            "e_mae": div(s.e_abs, s.n_e),
            "e_rmse": math.sqrt(div(s.e_sq, s.n_e)) if s.n_e else math.nan,
            "e_per_atom_mae": div(s.e_pa_abs, s.n_e),
            "e_per_atom_rmse": math.sqrt(div(s.e_pa_sq, s.n_e)) if s.n_e else math.nan,
            "f_mae": div(s.f_abs, s.n_f),
            "f_rmse": math.sqrt(div(s.f_sq, s.n_f)) if s.n_f else math.nan,
        }
        c = self.coeffs
        loss = 0.0
        if c.energy > 0 and s.n_e:
            if c.energy_l1:
                loss += c.energy * div(s.e_pa_abs if c.energy_per_atom else s.e_abs, s.n_e)
            else:
                loss += c.energy * div(s.e_pa_sq if c.energy_per_atom else s.e_sq, s.n_e)
        if c.forces > 0 and s.n_f:
            loss += c.forces * div(s.f_abs if c.forces_l1 else s.f_sq, s.n_f)
        m["loss"] = loss if (s.n_e or s.n_f) else math.nan
        return m

    def results(self) -> Dict[str, object]:
        """Overall metrics plus ``per_dataset`` {name: metrics} and solver statistics."""
        out: Dict[str, object] = dict(self._metrics(self.total))
        out["per_dataset"] = {name: self._metrics(s) for name, s in zip(self.names, self.per)}
        out["solver_iters_mean"] = sum(self.iters) / len(self.iters) if self.iters else math.nan
        out["solver_iters_max"] = max(self.iters) if self.iters else math.nan
        out["solver_residual_mean"] = sum(self.residuals) / len(self.residuals) if self.residuals else math.nan
        out["mean_batch_loss"] = (sum(self.batch_losses) / len(self.batch_losses)
                                  if self.batch_losses else math.nan)
        return out
