"""Equivariant building blocks (e3nn irreps layout, Lmax = 2)."""
