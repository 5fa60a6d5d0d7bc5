"""ASE calculator for deployed deqformer models.

    from deqformer.ase_calculator import DeqformerCalculator
    atoms.calc = DeqformerCalculator("aspirin.pt")
    atoms.get_potential_energy(); atoms.get_forces()

Energies in eV, forces in eV/Angstrom (ASE's units). Periodic cells (also triclinic and small ones) are
handled by the neighbor list in :mod:`deqformer.data.neighbors`.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from .data.batch import collate
from .data.dataset import DataError, _to_types
from .data.neighbors import build_graph
from .inference import load_inference_model
from . import keys as K

__all__ = ["DeqformerCalculator"]


class DeqformerCalculator(Calculator):
    """Energy, free energy (= energy), forces and per-atom energies from a deqformer model.

    Args:
        model_path: deployed TorchScript file (``.pt``, loaded with ``deqformer.deploy.load_deployed``)
            or a training checkpoint (``.pth``).
        device: torch device.
        warm_start: start the fixed-point solver from the previous call's solution when the atoms are
            the same (same count and types); deployed files only. Off by default: whether it saves
            iterations depends on the model (for an untrained model it took more than a cold start).
    """

    implemented_properties = ["energy", "free_energy", K.FORCES, "energies", "stress"]

    def __init__(self, model_path: str, device: str = "cpu", warm_start: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.model = load_inference_model(model_path, device=device)
        self.warm_start = warm_start
        self._z: Optional[object] = None
        self._z_types: Optional[np.ndarray] = None
        self.last_solver_iters: Optional[float] = None

    @property
    def type_names(self) -> Sequence[str]:
        return self.model.type_names

    @property
    def r_max(self) -> float:
        return self.model.r_max

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        a = self.atoms
        z = np.asarray(a.numbers, dtype=np.int64)
        try:
            types = _to_types(z, self.model.type_names, "DeqformerCalculator: atoms")
        except DataError as e:
            raise ValueError(str(e).replace("config key", "model's type names; retrain with the config key")) from None
        pbc = np.asarray(a.pbc, dtype=bool)
        cell = np.asarray(a.cell.array, dtype=np.float64) if pbc.any() else None
        pos = np.asarray(a.positions, dtype=np.float64)
        frame = {K.POSITIONS: pos, K.ATOMIC_NUMBERS: z, K.ATOM_TYPES: types, K.CELL: cell, K.PBC: pbc}
        graph = build_graph(pos, self.model.r_max, cell, pbc)
        batch = collate([frame], [graph], self.model.dtype)
        z0 = None
        if self.warm_start and self._z is not None and self._z_types is not None \
                and np.array_equal(self._z_types, types):
            z0 = self._z
        out = self.model(batch, compute_forces=True, z0=z0)
        if self.warm_start and "z" in out:
            self._z, self._z_types = out["z"], types.copy()
        energy = float(out["energy"].reshape(-1)[0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            K.FORCES: out[K.FORCES].double().cpu().numpy().reshape(-1, 3),
        }
        if out.get("virial") is not None and pbc.all():
            # stress = (1/V) dE/d(strain) = -W / V, in ASE's Voigt order xx yy zz yz xz xy
            w = out["virial"][0].double().cpu().numpy()
            sig = -0.5 * (w + w.T) / a.get_volume()
            self.results["stress"] = np.array([sig[0, 0], sig[1, 1], sig[2, 2], sig[1, 2], sig[0, 2], sig[0, 1]])
        elif "stress" in properties:
            from ase.calculators.calculator import PropertyNotImplementedError
            raise PropertyNotImplementedError("stress needs a periodic cell and a deployed (.pt) model")
        if out.get("atomic_energy") is not None:
            self.results["energies"] = out["atomic_energy"].double().cpu().numpy().reshape(-1)
        if out.get("solver_iters") is not None:
            self.last_solver_iters = float(out["solver_iters"])
