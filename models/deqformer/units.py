"""Unit conversion factors.

Everything inside deqformer (datasets after loading, models, checkpoints, deployed files) uses
**eV** for energies and **Angstrom** for lengths, i.e. LAMMPS ``units metal``. Forces are in eV/Angstrom.
Datasets stored in other units are converted once, when they are read.
"""
from __future__ import annotations

from typing import Dict

#: Unit names used by the model and written into checkpoints / deployed files.
MODEL_ENERGY_UNIT = "eV"
MODEL_LENGTH_UNIT = "Angstrom"
MODEL_FORCE_UNIT = "eV/Angstrom"

#: CODATA 2018 constants.
ELEMENTARY_CHARGE_C = 1.602176634e-19
AVOGADRO = 6.02214076e23
FARADAY_C_PER_MOL = ELEMENTARY_CHARGE_C * AVOGADRO  # 96485.33212... C/mol

#: Energies, expressed in eV.
EV = 1.0
MEV = 1.0e-3
KCAL_PER_MOL = 4184.0 / FARADAY_C_PER_MOL  # 0.0433641043... eV
KJ_PER_MOL = 1000.0 / FARADAY_C_PER_MOL  # 0.0103642688... eV
HARTREE = 27.211386245988

#: Lengths, expressed in Angstrom.
ANGSTROM = 1.0
BOHR = 0.529177210903
NANOMETER = 10.0

# Canonical name -> factor, plus case-insensitive aliases.
ENERGY_UNITS: Dict[str, float] = {
    "eV": EV,
    "meV": MEV,
    "kcal/mol": KCAL_PER_MOL,
    "kJ/mol": KJ_PER_MOL,
    "Hartree": HARTREE,
}
LENGTH_UNITS: Dict[str, float] = {
    "Angstrom": ANGSTROM,
    "Bohr": BOHR,
    "nm": NANOMETER,
}
_ENERGY_ALIASES = {
    "ev": "eV", "mev": "meV",
    "kcal/mol": "kcal/mol", "kcal_mol": "kcal/mol", "kcal mol-1": "kcal/mol", "kcalmol": "kcal/mol",
    "kj/mol": "kJ/mol", "kj_mol": "kJ/mol",
    "hartree": "Hartree", "ha": "Hartree", "eh": "Hartree", "au": "Hartree",
}
_LENGTH_ALIASES = {
    "angstrom": "Angstrom", "a": "Angstrom", "ang": "Angstrom", "å": "Angstrom", "angstroms": "Angstrom",
    "bohr": "Bohr", "a0": "Bohr", "au": "Bohr",
    "nm": "nm", "nanometer": "nm",
}


def canonical_energy_unit(name: str) -> str:
    """Return the canonical spelling of an energy unit name; raise ``ValueError`` if unknown."""
    key = str(name).strip().lower()
    if key not in _ENERGY_ALIASES:
        raise ValueError(f"unknown energy unit {name!r}; expected one of {sorted(ENERGY_UNITS)}")
    return _ENERGY_ALIASES[key]


def canonical_length_unit(name: str) -> str:
    """Return the canonical spelling of a length unit name; raise ``ValueError`` if unknown."""
    key = str(name).strip().lower()
    if key not in _LENGTH_ALIASES:
        raise ValueError(f"unknown length unit {name!r}; expected one of {sorted(LENGTH_UNITS)}")
    return _LENGTH_ALIASES[key]


def energy_factor(name: str) -> float:
    """Multiply an energy in unit ``name`` by this factor to get eV."""
    return ENERGY_UNITS[canonical_energy_unit(name)]


def length_factor(name: str) -> float:
    """Multiply a length in unit ``name`` by this factor to get Angstrom."""
    return LENGTH_UNITS[canonical_length_unit(name)]


def force_factor(energy_unit: str, length_unit: str) -> float:
    """Multiply a force in ``energy_unit/length_unit`` by this factor to get eV/Angstrom."""
    return energy_factor(energy_unit) / length_factor(length_unit)
