"""Datasets (npz / extxyz) -> frames -> radius graphs -> batches of tensors."""
from .batch import GraphLoader, batch_to, collate, make_loader
from .dataset import (DataError, Frame, LoadedDataset, load_datasets, load_frames, read_ase_frames,
                      read_npz_frames, split_indices, type_map_from_names)
from .neighbors import brute_force_graph, build_graph
from .statistics import compute_statistics, fit_energy_shifts, pair_min_distances

__all__ = [
    "DataError", "Frame", "LoadedDataset", "load_datasets", "load_frames", "read_ase_frames", "read_npz_frames",
    "split_indices", "type_map_from_names", "build_graph", "brute_force_graph", "collate", "GraphLoader",
    "make_loader", "batch_to", "compute_statistics", "fit_energy_shifts", "pair_min_distances",
]
