"""Exponential moving average of model weights."""
from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator

import torch

__all__ = ["ExponentialMovingAverage"]


class ExponentialMovingAverage:
    """Keeps ``shadow = d * shadow + (1 - d) * weights`` for every floating tensor of a model's state dict.

    With ``use_num_updates`` the decay warms up as ``d = min(decay, (1 + n) / (10 + n))`` after ``n``
    updates, so early averages are not dominated by the random initial weights. Non-floating buffers
    are copied as they are.
    """

    def __init__(self, model: torch.nn.Module, decay: float = 0.99, use_num_updates: bool = True):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.use_num_updates = bool(use_num_updates)
        self.num_updates = 0
        self.shadow: Dict[str, torch.Tensor] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def current_decay(self) -> float:
        if self.use_num_updates:
            return min(self.decay, (1.0 + self.num_updates) / (10.0 + self.num_updates))
        return self.decay

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Fold the model's current weights into the average (call after each optimizer step)."""
        d = self.current_decay()
        self.num_updates += 1
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if s.is_floating_point() or s.is_complex():
                s.mul_(d).add_(v.detach().to(s.dtype), alpha=1.0 - d)
            else:
                s.copy_(v)

    def copy_to(self, model: torch.nn.Module) -> None:
        """Load the averaged weights into ``model``."""
        model.load_state_dict(self.shadow)

    @contextlib.contextmanager
    def average_parameters(self, model: torch.nn.Module) -> Iterator[None]:
        """Temporarily swap the averaged weights into ``model``."""
        backup = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.copy_to(model)
        try:
            yield
        finally:
            model.load_state_dict(backup)

    def state_dict(self) -> Dict[str, Any]:
        return {"decay": self.decay, "use_num_updates": self.use_num_updates, "num_updates": self.num_updates,
                "shadow": dict(self.shadow)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.decay = float(state["decay"])
        self.use_num_updates = bool(state["use_num_updates"])
        self.num_updates = int(state["num_updates"])
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise KeyError(f"EMA state does not match the model; differing keys: {sorted(missing)}")
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)
