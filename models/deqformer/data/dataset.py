"""Reading datasets (npz and anything ASE reads, e.g. extended XYZ) into frames, and splitting them.

A *frame* is a dict of numpy arrays, always in eV and Angstrom::

    pos             [n, 3] float64
    atomic_numbers  [n]    int64
    atom_types      [n]    int64    index into the config's type names
    total_energy    float           (key absent when the file has no energy for this frame)
    forces          [n, 3] float64  (key absent when the file has no forces)
    cell            [3, 3] float64 or None
    pbc             [3]    bool

Every problem with a file raises :class:`DataError` naming the file and the key.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field as dc_field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .. import units
from ..config import FIELD_NAMES, DatasetConfig, TrainConfig
from .. import keys as K

__all__ = [
    "DataError",
    "Frame",
    "LoadedDataset",
    "SPLITS",
    "type_map_from_names",
    "read_npz_frames",
    "read_ase_frames",
    "load_frames",
    "split_indices",
    "load_datasets",
]

Frame = Dict[str, Any]
SPLITS = ("train", "val", "test", "all")

# Keys tried (in this order) for a field when key_mapping does not name one.
_DEFAULT_KEYS: Dict[str, Tuple[str, ...]] = {
    K.ATOMIC_NUMBERS: (K.ATOMIC_NUMBERS, "z", "Z", "nuclear_charges", "numbers", "atomic_number"),
    K.POSITIONS: (K.POSITIONS, "positions", "R", "coords", "coordinates"),
    K.TOTAL_ENERGY: (K.TOTAL_ENERGY, "energy", "energies", "E"),
    K.FORCES: (K.FORCES, "force", "F"),
    K.CELL: (K.CELL, "lattice"),
    K.PBC: (K.PBC,),
}
_REQUIRED = (K.ATOMIC_NUMBERS, K.POSITIONS)


class DataError(ValueError):
    """A dataset file is missing, unreadable or inconsistent. The message names the file and key."""


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def type_map_from_names(type_names: Sequence[str]) -> Dict[int, int]:
    """Atomic number -> type index, for type names that are element symbols."""
    from ase.data import atomic_numbers

    return {atomic_numbers[s]: i for i, s in enumerate(type_names)}


def _symbol(z: int) -> str:
    from ase.data import chemical_symbols

    return chemical_symbols[z] if 0 < z < len(chemical_symbols) else f"Z={z}"


def _to_types(z: np.ndarray, type_names: Sequence[str], where: str) -> np.ndarray:
    """Map an integer array of atomic numbers to type indices (same shape)."""
    zmap = type_map_from_names(type_names)
    lut = np.full(max(max(zmap), int(z.max(initial=0))) + 1, -1, dtype=np.int64)
    if z.size and int(z.min()) <= 0:
        raise DataError(f"{where}: invalid atomic number {int(z.min())} (must be >= 1)")
    for zz, t in zmap.items():
        lut[zz] = t
    types = lut[z]
    if (types < 0).any():
        bad = sorted(set(int(v) for v in np.unique(z[types < 0])))
        names = ", ".join(f"{_symbol(b)} (Z={b})" for b in bad)
        raise DataError(f"{where}: element(s) {names} not in chemical_symbols {list(type_names)}; add "
                        f"{[_symbol(b) for b in bad]} to the config key 'chemical_symbols' (or 'type_names')")
    return types


def _first_nonfinite(arr: np.ndarray) -> Optional[Tuple[int, int]]:
    """(first bad frame, number of bad frames) for an array with a leading frame axis, or None."""
    bad = ~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)
    if bad.any():
        return int(np.argmax(bad)), int(bad.sum())
    return None


def _check_finite(arr: np.ndarray, path: Path, field: str, key: str, per_frame: bool) -> None:
    if per_frame:
        hit = _first_nonfinite(arr)
        if hit is not None:
            frame, count = hit
            more = f" (and {count - 1} more frame(s))" if count > 1 else ""
            raise DataError(f"{path}: key {key!r} ({field}) has NaN or inf values in frame {frame}{more}")
    elif not np.isfinite(arr).all():
        raise DataError(f"{path}: key {key!r} ({field}) has NaN or inf values (fixed field: every frame)")


def _suggest_mapping(available: Iterable[str]) -> str:
    guesses = {}
    for key in available:
        for field, names in _DEFAULT_KEYS.items():
            if key.lower() in {n.lower() for n in names} and field not in guesses.values():
                guesses[key] = field
    if not guesses:
        return "key_mapping: {<key with atomic numbers>: atomic_numbers, <key with positions>: pos, ...}"
    return "key_mapping: {" + ", ".join(f"{k}: {v}" for k, v in guesses.items()) + "}"


def _check_key_mapping(key_mapping: Mapping[str, str], path: Path) -> Dict[str, str]:
    """Return field -> file key for the mapped fields we use; warn about fields we don't."""
    out: Dict[str, str] = {}
    for fkey, field in key_mapping.items():
        if field not in FIELD_NAMES:
            warnings.warn(f"{path}: key_mapping entry {fkey!r} -> {field!r} ignored (deqformer uses the fields "
                          f"{list(FIELD_NAMES)})", stacklevel=3)
            continue
        if field in out:
            raise DataError(f"{path}: key_mapping maps both {out[field]!r} and {fkey!r} to {field!r}")
        out[field] = fkey
    return out


# --------------------------------------------------------------------------------------------
# npz
# --------------------------------------------------------------------------------------------


def _read_npz_arrays(path: Path) -> Dict[str, np.ndarray]:
    if not path.exists():
        raise DataError(f"{path}: dataset file not found (config key 'dataset_file_name')")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as e:  # numpy raises ValueError / OSError / zipfile.BadZipFile / EOFError ...
        raise DataError(f"{path}: cannot read the file as .npz ({type(e).__name__}: {e})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: is a single .npy array, not an .npz archive of named arrays")
    arrays = {}
    try:
        with archive:
            for key in archive.files:
                arrays[key] = archive[key]
    except Exception as e:
        raise DataError(f"{path}: corrupt .npz archive, cannot read key {key!r} ({type(e).__name__}: {e})") from None
    return arrays


def read_npz_frames(path: Union[str, Path], type_names: Sequence[str], key_mapping: Optional[Mapping[str, str]] = None,
                    fixed_field_keys: Sequence[str] = (), energy_unit: str = "eV",
                    length_unit: str = "Angstrom") -> List[Frame]:
    """Read an npz file (nequip layout: one array per field, leading axis = frame).

    ``key_mapping`` maps keys in the file to field names; fields it does not name are looked up under
    common names (``pos``/``R``/``coords``, ``z``/``nuclear_charges``, ``E``/``energies``, ``F``/``forces``).
    ``fixed_field_keys`` lists fields shared by all frames (file keys or field names), e.g.
    ``[atomic_numbers]`` with shape [n_atoms]; fixed fields are also recognized by their shape.
    """
    path = Path(path)
    arrays = _read_npz_arrays(path)
    available = list(arrays)
    mapped = _check_key_mapping(key_mapping or {}, path)
    for field, fkey in mapped.items():
        if fkey not in arrays:
            raise DataError(f"{path}: key {fkey!r} (mapped to {field!r} by key_mapping) is not in the file; "
                            f"keys in the file: {available}; suggested {_suggest_mapping(available)}")
    keys: Dict[str, str] = dict(mapped)
    for field, names in _DEFAULT_KEYS.items():
        if field not in keys:
            hit = next((n for n in names if n in arrays and n not in keys.values()), None)
            if hit is not None:
                keys[field] = hit
    for field in _REQUIRED:
        if field not in keys:
            raise DataError(f"{path}: no key for required field {field!r}; keys in the file: {available}; "
                            f"set key_mapping in the config, e.g. {_suggest_mapping(available)}")
    if K.TOTAL_ENERGY not in keys and K.FORCES not in keys:
        raise DataError(f"{path}: no energies or forces found (fields 'total_energy', 'forces'); keys in the "
                        f"file: {available}; suggested {_suggest_mapping(available)}")
    fixed = {mapped_field for mapped_field, fkey in keys.items()
             if mapped_field in fixed_field_keys or fkey in fixed_field_keys}

    pos_key = keys[K.POSITIONS]
    pos = np.asarray(arrays[pos_key])
    if pos.ndim == 2 and pos.shape[1] == 3:
        pos = pos[None]
    if pos.ndim != 3 or pos.shape[2] != 3 or not np.issubdtype(pos.dtype, np.number):
        raise DataError(f"{path}: key {pos_key!r} (pos) has shape {pos.shape} {pos.dtype}, expected "
                        f"[n_frames, n_atoms, 3] numbers")
    n_frames, n_atoms = pos.shape[:2]
    if n_frames == 0:
        raise DataError(f"{path}: key {pos_key!r} (pos) has no frames")
    pos = pos.astype(np.float64) * units.length_factor(length_unit)
    _check_finite(pos, path, K.POSITIONS, pos_key, True)

    def per_frame_or_fixed(field: str, frame_shape: Tuple[int, ...], what: str) -> Tuple[np.ndarray, bool]:
        key = keys[field]
        arr = np.asarray(arrays[key])
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise DataError(f"{path}: key {key!r} ({field}) has dtype {arr.dtype}, expected numbers")
        if arr.shape == frame_shape:
            return arr, True
        if field in fixed:
            raise DataError(f"{path}: key {key!r} ({field}) is listed in npz_fixed_field_keys but has shape "
                            f"{arr.shape}; a fixed field must have shape {list(frame_shape)} ({what})")
        if arr.shape == (n_frames,) + frame_shape:
            return arr, False
        raise DataError(f"{path}: key {key!r} ({field}) has shape {arr.shape}, which does not match "
                        f"{pos_key!r} (pos) shape {tuple(pos.shape)}: expected {[n_frames, *frame_shape]} "
                        f"or {list(frame_shape)} for a fixed field ({what})")

    z, z_fixed = per_frame_or_fixed(K.ATOMIC_NUMBERS, (n_atoms,), "atomic numbers")
    if not np.issubdtype(z.dtype, np.integer):
        if not (np.isfinite(z).all() and np.all(z == np.round(z))):
            raise DataError(f"{path}: key {keys[K.ATOMIC_NUMBERS]!r} ({K.ATOMIC_NUMBERS}) has non-integer values")
    z = z.astype(np.int64)
    types = _to_types(z, type_names, f"{path}: key {keys[K.ATOMIC_NUMBERS]!r} ({K.ATOMIC_NUMBERS})")

    energy = None
    if K.TOTAL_ENERGY in keys:
        ekey = keys[K.TOTAL_ENERGY]
        energy = np.asarray(arrays[ekey])
        if energy.ndim == 2 and energy.shape[1] == 1:
            energy = energy[:, 0]
        if energy.shape == () and n_frames == 1:
            energy = energy.reshape(1)
        if energy.shape != (n_frames,) or not np.issubdtype(energy.dtype, np.number):
            raise DataError(f"{path}: key {ekey!r} (total_energy) has shape {energy.shape}, expected "
                            f"[{n_frames}] or [{n_frames}, 1] to match {pos_key!r} (pos) shape {tuple(pos.shape)}")
        energy = energy.astype(np.float64) * units.energy_factor(energy_unit)
        _check_finite(energy, path, K.TOTAL_ENERGY, ekey, True)

    forces = None
    if K.FORCES in keys:
        fkey = keys[K.FORCES]
        forces = np.asarray(arrays[fkey])
        if forces.ndim == 2 and n_frames == 1:
            forces = forces[None]
        if forces.shape != pos.shape or not np.issubdtype(forces.dtype, np.number):
            raise DataError(f"{path}: key {fkey!r} (forces) has shape {forces.shape}, but {pos_key!r} (pos) has "
                            f"shape {tuple(pos.shape)}; they must match")
        forces = forces.astype(np.float64) * units.force_factor(energy_unit, length_unit)
        _check_finite(forces, path, K.FORCES, fkey, True)

    cell, cell_fixed = None, True
    if K.CELL in keys:
        ckey = keys[K.CELL]
        raw_cell = np.asarray(arrays[ckey])
        if raw_cell.shape == (3,) or (raw_cell.shape == (n_frames, 3) and n_frames != 3):
            arrays[ckey] = raw_cell[..., None] * np.eye(3)  # lengths of an orthorhombic box
        cell, cell_fixed = per_frame_or_fixed(K.CELL, (3, 3), "cell vectors as rows")
        cell = cell.astype(np.float64) * units.length_factor(length_unit)
        _check_finite(cell, path, K.CELL, ckey, not cell_fixed)
    pbc, pbc_fixed = np.array([cell is not None] * 3), True
    if K.PBC in keys:
        raw_pbc = np.asarray(arrays[keys[K.PBC]])
        if raw_pbc.shape == ():
            raw_pbc = np.repeat(raw_pbc, 3)
        arrays[keys[K.PBC]] = raw_pbc
        pbc, pbc_fixed = per_frame_or_fixed(K.PBC, (3,), "periodic flags")
        pbc = pbc.astype(bool)
        if pbc.any() and cell is None:
            raise DataError(f"{path}: key {keys[K.PBC]!r} ({K.PBC}) says periodic but the file has no cell")

    frames: List[Frame] = []
    for f in range(n_frames):
        frame: Frame = {
            K.POSITIONS: pos[f],
            K.ATOMIC_NUMBERS: z if z_fixed else z[f],
            K.ATOM_TYPES: types if z_fixed else types[f],
            K.CELL: None if cell is None else (cell if cell_fixed else cell[f]),
            K.PBC: pbc if pbc_fixed else pbc[f],
        }
        if energy is not None:
            frame[K.TOTAL_ENERGY] = float(energy[f])
        if forces is not None:
            frame[K.FORCES] = forces[f]
        frames.append(frame)
    return frames


# --------------------------------------------------------------------------------------------
# ASE (extxyz, ...)
# --------------------------------------------------------------------------------------------


def _calc_result(atoms, name: str):
    calc = atoms.calc
    results = getattr(calc, "results", None) if calc is not None else None
    if results and name in results and results[name] is not None:
        return results[name]
    return None


def read_ase_frames(path: Union[str, Path], type_names: Sequence[str], key_mapping: Optional[Mapping[str, str]] = None,
                    energy_unit: str = "eV", length_unit: str = "Angstrom",
                    format: Optional[str] = None) -> List[Frame]:
    """Read every frame of a file with ``ase.io.read(path, index=':')`` (extxyz, .gz files, ...).

    Energy: the info key that ``key_mapping`` maps to ``total_energy``, else the calculator's energy,
    else info ``energy`` / ``total_energy``. Forces: the mapped per-atom array, else the calculator's
    forces, else the array ``forces``. Cell and pbc come from the Atoms (a zero cell means no cell).
    """
    import ase.io

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: dataset file not found (config key 'dataset_file_name')")
    try:
        images = ase.io.read(str(path), index=":", format=format)
    except Exception as e:  # ASE raises many kinds of errors on bad input
        hint = "; for .npz files set the config key 'dataset: npz'" if path.suffix == ".npz" else ""
        raise DataError(f"{path}: cannot read the file with ase.io.read ({type(e).__name__}: {e}){hint}") from None
    if not isinstance(images, list):
        images = [images]
    if not images:
        raise DataError(f"{path}: the file contains no frames")
    mapped = _check_key_mapping(key_mapping or {}, path)
    e_keys = ([mapped[K.TOTAL_ENERGY]] if K.TOTAL_ENERGY in mapped else []) + ["energy", K.TOTAL_ENERGY]
    f_keys = ([mapped[K.FORCES]] if K.FORCES in mapped else []) + [K.FORCES]
    efac, lfac = units.energy_factor(energy_unit), units.length_factor(length_unit)
    ffac = efac / lfac

    frames: List[Frame] = []
    n_energy = n_forces = 0
    for idx, atoms in enumerate(images):
        where = f"{path}: frame {idx}"
        if K.POSITIONS in mapped and mapped[K.POSITIONS] != "positions":
            if mapped[K.POSITIONS] not in atoms.arrays:
                raise DataError(f"{where}: per-atom key {mapped[K.POSITIONS]!r} ({K.POSITIONS}) not found; arrays: "
                                f"{sorted(atoms.arrays)}")
            pos = np.asarray(atoms.arrays[mapped[K.POSITIONS]], dtype=np.float64)
        else:
            pos = atoms.get_positions()
        pos = pos.astype(np.float64) * lfac
        z = np.asarray(atoms.numbers, dtype=np.int64)
        if K.ATOMIC_NUMBERS in mapped and mapped[K.ATOMIC_NUMBERS] not in ("numbers",):
            if mapped[K.ATOMIC_NUMBERS] not in atoms.arrays:
                raise DataError(f"{where}: per-atom key {mapped[K.ATOMIC_NUMBERS]!r} ({K.ATOMIC_NUMBERS}) not found; "
                                f"arrays: {sorted(atoms.arrays)}")
            z = np.asarray(atoms.arrays[mapped[K.ATOMIC_NUMBERS]]).astype(np.int64)
        types = _to_types(z, type_names, f"{where} (atomic numbers)")
        if not np.isfinite(pos).all():
            raise DataError(f"{path}: positions (pos) have NaN or inf values in frame {idx}")
        frame: Frame = {K.POSITIONS: pos, K.ATOMIC_NUMBERS: z, K.ATOM_TYPES: types}

        energy = None
        for key in e_keys:
            if key in atoms.info:
                energy = atoms.info[key]
            elif key in ("energy", "free_energy"):
                energy = _calc_result(atoms, key)
            if energy is not None:
                ekey = key
                break
        if energy is not None:
            try:
                energy = float(np.asarray(energy, dtype=np.float64).reshape(()))
            except (TypeError, ValueError):
                raise DataError(f"{where}: energy key {ekey!r} is not a number: {energy!r}") from None
            if not np.isfinite(energy):
                raise DataError(f"{path}: key {ekey!r} (total_energy) has NaN or inf values in frame {idx}")
            frame[K.TOTAL_ENERGY] = energy * efac
            n_energy += 1

        forces = None
        for key in f_keys:
            if key in atoms.arrays:
                forces, fkey = atoms.arrays[key], key
                break
            if key == K.FORCES:
                forces, fkey = _calc_result(atoms, K.FORCES), K.FORCES
                if forces is not None:
                    break
        if forces is not None:
            forces = np.asarray(forces, dtype=np.float64)
            if forces.shape != pos.shape:
                raise DataError(f"{where}: key {fkey!r} (forces) has shape {forces.shape}, but positions have "
                                f"shape {pos.shape}")
            if not np.isfinite(forces).all():
                raise DataError(f"{path}: key {fkey!r} (forces) has NaN or inf values in frame {idx}")
            frame[K.FORCES] = forces * ffac
            n_forces += 1

        cell = np.asarray(atoms.cell.array, dtype=np.float64)
        pbc = np.asarray(atoms.pbc, dtype=bool)
        has_cell = bool(np.abs(cell).sum() > 0)
        if pbc.any() and not has_cell:
            raise DataError(f"{where}: pbc={pbc.tolist()} but the cell is zero")
        frame[K.CELL] = cell * lfac if has_cell else None
        frame[K.PBC] = pbc
        frames.append(frame)

    for field, count in ((K.TOTAL_ENERGY, n_energy), (K.FORCES, n_forces)):
        if field in mapped and count == 0:
            info_keys = sorted(images[0].info)
            arr_keys = sorted(images[0].arrays)
            calc = sorted(getattr(images[0].calc, "results", {}) or {})
            raise DataError(f"{path}: key {mapped[field]!r} (mapped to {field!r} by key_mapping) not found in any "
                            f"frame; frame 0 has info keys {info_keys}, per-atom arrays {arr_keys}, "
                            f"calculator results {calc}")
    if n_energy == 0 and n_forces == 0:
        raise DataError(f"{path}: no energies or forces found (info keys of frame 0: {sorted(images[0].info)}, "
                        f"arrays: {sorted(images[0].arrays)}); map them with key_mapping, e.g. "
                        f"key_mapping: {{REF_energy: total_energy, REF_forces: forces}}")
    return frames


# --------------------------------------------------------------------------------------------
# datasets and splits
# --------------------------------------------------------------------------------------------


def load_frames(ds: DatasetConfig, type_names: Sequence[str]) -> List[Frame]:
    """Read all frames of one configured dataset (units converted to eV / Angstrom)."""
    if ds.kind == "npz":
        return read_npz_frames(ds.file_name, type_names, ds.key_mapping, ds.npz_fixed_field_keys,
                               ds.energy_unit, ds.length_unit)
    if ds.kind == "ase":
        return read_ase_frames(ds.file_name, type_names, ds.key_mapping, ds.energy_unit, ds.length_unit,
                               ds.ase_format)
    raise DataError(f"{ds.file_name}: unknown dataset kind {ds.kind!r} (config key 'dataset': npz or ase)")


def split_indices(n_frames: int, n_train: int, n_val: int, seed: int, mode: str = "random",
                  source: str = "dataset") -> Dict[str, np.ndarray]:
    """Reproducible split: a permutation from ``np.random.default_rng(seed)``; the first ``n_train``
    frames train, the next ``n_val`` validate, the rest are the never-seen ``test`` split.
    ``mode='sequential'`` uses file order instead. Index arrays are returned sorted.
    """
    if n_train < 0 or n_val < 0:
        raise DataError(f"{source}: n_train ({n_train}) and n_val ({n_val}) must be >= 0")
    if n_train + n_val > n_frames:
        raise DataError(f"{source}: has {n_frames} frames, fewer than n_train + n_val = {n_train} + {n_val} = "
                        f"{n_train + n_val}; lower n_train / n_val in the config")
    if mode == "random":
        perm = np.random.default_rng(seed).permutation(n_frames)
    elif mode == "sequential":
        perm = np.arange(n_frames)
    else:
        raise ValueError(f"unknown split mode {mode!r}")
    cut = n_train + n_val
    return {
        "train": np.sort(perm[:n_train]).astype(np.int64),
        "val": np.sort(perm[n_train:cut]).astype(np.int64),
        "test": np.sort(perm[cut:]).astype(np.int64),
        "all": np.arange(n_frames, dtype=np.int64),
    }


@dataclass
class LoadedDataset:
    """Frames of one dataset file plus its split indices."""

    config: DatasetConfig
    dataset_id: int
    frames: List[Frame]
    splits: Dict[str, np.ndarray]
    _graph_cache: Dict[float, Dict[int, Tuple[np.ndarray, np.ndarray]]] = dc_field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.config.name

    def indices(self, split: str) -> np.ndarray:
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return self.splits[split]

    def split_frames(self, split: str) -> List[Frame]:
        return [self.frames[i] for i in self.indices(split)]

    def graphs(self, indices: Sequence[int], r_max: float) -> List[Tuple[np.ndarray, np.ndarray]]:
        """Neighbor graphs of the given frames, computed once and cached in memory."""
        from .neighbors import build_graph

        cache = self._graph_cache.setdefault(float(r_max), {})
        out = []
        for i in indices:
            i = int(i)
            if i not in cache:
                f = self.frames[i]
                try:
                    cache[i] = build_graph(f[K.POSITIONS], r_max, f[K.CELL], f[K.PBC])
                except ValueError as e:
                    raise DataError(f"{self.config.file_name}: frame {i}: {e}") from e
            out.append(cache[i])
        return out


def load_datasets(cfg: TrainConfig, type_names: Optional[Sequence[str]] = None,
                  require: Sequence[str] = ("train", "val")) -> List[LoadedDataset]:
    """Load and split every dataset of ``cfg``.

    ``type_names`` overrides the config's (e.g. a trained model's). Each split named in ``require``
    must be non-empty over all datasets together, else :class:`DataError`.
    """
    names = list(type_names) if type_names is not None else cfg.type_names
    out = []
    for i, ds in enumerate(cfg.datasets):
        frames = load_frames(ds, names)
        splits = split_indices(len(frames), ds.n_train, ds.n_val, cfg.dataset_seed, cfg.train_val_split,
                               source=f"{ds.file_name} (dataset '{ds.name}')")
        out.append(LoadedDataset(ds, i, frames, splits))
    for split in require:
        if sum(len(d.indices(split)) for d in out) == 0:
            detail = "; ".join(f"{d.config.file_name}: {len(d.frames)} frames, n_train={d.config.n_train}, "
                               f"n_val={d.config.n_val}" for d in out)
            hint = {"train": "set n_train > 0", "val": "set n_val > 0",
                    "test": "lower n_train + n_val, or evaluate --split val / all"}.get(split, "")
            raise DataError(f"the '{split}' split is empty ({detail}); {hint}")
    return out
