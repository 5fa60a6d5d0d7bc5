"""Per-frame fixed-point cache: each training frame's last z* and u* start its next solve.

This is the training-time twin of the MD reuse in LAMMPS: the weights change little between two
visits of a frame, so the previous fixed point is a far better start than zeros. Reuse changes the
start only; the solve still runs to the same tolerance.
"""
from typing import Dict, Optional, Tuple

import torch
from .. import keys as K


class FixedPointCache:
    def __init__(self):
        self.z: Dict[int, torch.Tensor] = {}
        self.u: Dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.z)

    def clear(self) -> None:
        self.z.clear()
        self.u.clear()

    @staticmethod
    def _keys(batch) -> Tuple[list, list]:
        keys = [int(k) for k in batch[K.SAMPLE_INDEX].tolist()]
        sizes = [int(n) for n in batch[K.NUM_ATOMS].tolist()]
        return keys, sizes

    def _gather(self, store: Dict[int, torch.Tensor], batch, like: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        if K.SAMPLE_INDEX not in batch or not store:
            return None
        keys, sizes = self._keys(batch)
        d = next(iter(store.values())).shape[1]
        dtype = batch[K.POSITIONS].dtype
        rows = [store[k].to(dtype) if k in store else torch.zeros(n, d, dtype=dtype) for k, n in zip(keys, sizes)]
        return torch.cat(rows, dim=0).to(batch[K.POSITIONS].device)

    def gather(self, batch) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        return self._gather(self.z, batch, None), self._gather(self.u, batch, None)

    def store(self, batch, out: Dict[str, torch.Tensor]) -> None:
        if K.SAMPLE_INDEX not in batch:
            return
        keys, sizes = self._keys(batch)
        for name, store in (("z", self.z), ("u", self.u)):
            t = out.get(name)
            if t is None:
                continue
            for k, part in zip(keys, torch.split(t.detach().cpu(), sizes, dim=0)):
                store[k] = part.clone()

    def state_dict(self) -> Dict[str, object]:
        """Flat form for checkpoints (so --resume continues with the same starts, bit for bit)."""
        keys = sorted(self.z)
        if not keys:
            return {"keys": [], "sizes": []}
        out: Dict[str, object] = {"keys": keys, "sizes": [int(self.z[k].shape[0]) for k in keys],
                                  "z": torch.cat([self.z[k] for k in keys])}
        if all(k in self.u for k in keys):
            out["u"] = torch.cat([self.u[k] for k in keys])
        return out

    def load_state_dict(self, state) -> None:
        self.clear()
        if not state or not state.get("keys"):
            return
        keys, sizes = [int(k) for k in state["keys"]], [int(n) for n in state["sizes"]]
        for name, store in (("z", self.z), ("u", self.u)):
            if state.get(name) is None:
                continue
            for k, part in zip(keys, torch.split(state[name], sizes, dim=0)):
                store[k] = part.clone()
