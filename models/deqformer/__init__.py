"""deqformer: a deep-equilibrium equivariant transformer interatomic potential.

Data flow: ``data`` (nequip-format datasets -> frames -> graphs) -> ``nn`` + ``model``
(the implicit equivariant attention block and its fixed-point solvers) -> ``deploy``
(TorchScript file obeying docs/contract.md) -> ``pair_deqformer`` (LAMMPS).
"""

__version__ = "0.1.0"
CONTRACT_VERSION = 2
