"""Collating frames and their graphs into one flat batch of tensors, and a small shuffling loader."""
from __future__ import annotations

import math
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .dataset import Frame, LoadedDataset
from .. import keys as K

__all__ = ["Graph", "collate", "GraphLoader", "make_loader", "batch_to"]

Graph = Tuple[np.ndarray, np.ndarray]  # (edge_index [2, E] int64, edge_shift [E, 3] float64)


def collate(frames: Sequence[Frame], graphs: Sequence[Graph], dtype: torch.dtype = torch.float64,
            dataset_ids: Optional[Sequence[int]] = None) -> Dict[str, torch.Tensor]:
    """Concatenate B frames into one batch (atoms of all frames stacked; edges offset per frame).

    Keys: ``pos`` [N,3], ``atom_types`` [N], ``batch`` [N] (frame of each atom), ``edge_index`` [2,E],
    ``edge_shift`` [E,3], ``num_frames`` (0-dim), ``num_atoms`` [B], ``total_energy`` [B] (NaN if absent),
    ``forces`` [N,3] (NaN rows if absent), ``has_forces`` [B], ``dataset_id`` [B], ``cell`` [B,3,3]
    (zeros without a cell), ``pbc`` [B,3]. Floating tensors have ``dtype``, integer ones int64.
    """
    if len(frames) != len(graphs):
        raise ValueError(f"got {len(frames)} frames but {len(graphs)} graphs")
    if len(frames) == 0:
        raise ValueError("cannot collate an empty list of frames")
    n_atoms = np.array([len(f[K.POSITIONS]) for f in frames], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(n_atoms)[:-1]])
    n_edges = np.array([g[0].shape[1] for g in graphs], dtype=np.int64)

    edge_index = np.concatenate([g[0] + off for g, off in zip(graphs, offsets)], axis=1) \
        if n_edges.sum() else np.zeros((2, 0), dtype=np.int64)
    edge_shift = np.concatenate([g[1] for g in graphs], axis=0) if n_edges.sum() else np.zeros((0, 3))
    forces = [f[K.FORCES] if K.FORCES in f else np.full((len(f[K.POSITIONS]), 3), np.nan) for f in frames]
    cells = [f[K.CELL] if f.get(K.CELL) is not None else np.zeros((3, 3)) for f in frames]
    pbcs = [np.asarray(f.get(K.PBC, [False] * 3), dtype=bool) for f in frames]
    if dataset_ids is None:
        dataset_ids = [0] * len(frames)

    def flt(a) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float64)).to(dtype)

    return {
        K.POSITIONS: flt(np.concatenate([f[K.POSITIONS] for f in frames], axis=0)),
        K.ATOM_TYPES: torch.as_tensor(np.concatenate([f[K.ATOM_TYPES] for f in frames]).astype(np.int64)),
        K.BATCH: torch.as_tensor(np.repeat(np.arange(len(frames), dtype=np.int64), n_atoms)),
        K.EDGE_INDEX: torch.as_tensor(edge_index.astype(np.int64)),
        K.EDGE_SHIFT: flt(edge_shift),
        K.NUM_FRAMES: torch.tensor(len(frames), dtype=torch.int64),
        K.NUM_ATOMS: torch.as_tensor(n_atoms),
        K.TOTAL_ENERGY: flt([f.get(K.TOTAL_ENERGY, math.nan) for f in frames]),
        K.FORCES: flt(np.concatenate(forces, axis=0)),
        K.HAS_FORCES: torch.tensor([K.FORCES in f for f in frames], dtype=torch.bool),
        K.DATASET_ID: torch.as_tensor(np.asarray(dataset_ids, dtype=np.int64)),
        K.CELL: flt(np.stack(cells)),
        K.PBC: torch.as_tensor(np.stack(pbcs)),
    }


def batch_to(batch: Dict[str, torch.Tensor], device: torch.device) -> Dict[str, torch.Tensor]:
    """Move every tensor of a batch to ``device``."""
    return {k: v.to(device) for k, v in batch.items()}


class GraphLoader:
    """Iterates over batches of pre-built (frame, graph, dataset id) items.

    With ``shuffle`` the order of epoch ``e`` is a permutation drawn from
    ``np.random.default_rng([seed, e])``: reproducible, and a resumed run sees the same order.
    """

    def __init__(self, frames: Sequence[Frame], graphs: Sequence[Graph], dataset_ids: Sequence[int],
                 batch_size: int, dtype: torch.dtype = torch.float64, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False):
        if not (len(frames) == len(graphs) == len(dataset_ids)):
            raise ValueError("frames, graphs and dataset_ids must have the same length")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.frames, self.graphs, self.dataset_ids = list(frames), list(graphs), list(dataset_ids)
        self.batch_size, self.dtype = int(batch_size), dtype
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffling order of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.frames)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self) -> np.ndarray:
        n = len(self.frames)
        if self.shuffle:
            return np.random.default_rng([self.seed, self.epoch]).permutation(n)
        return np.arange(n)

    def iter_shard(self, rank: int, world: int
                   ) -> Iterator[Tuple[Optional[Dict[str, torch.Tensor]], Tuple[int, int, int]]]:
        """Data-parallel iteration: the same batches as ``__iter__``, each cut into ``world`` contiguous
        parts; yields (part ``rank`` of the batch, or None when it is empty; (frames with an energy, atoms
        with forces, frames) in the whole batch), so that each process can normalise its loss by the batch's
        counts."""
        order = self.order()
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            n_e = sum(1 for i in idx if math.isfinite(float(self.frames[i].get(K.TOTAL_ENERGY, math.nan))))
            n_f = sum(len(self.frames[i][K.POSITIONS]) for i in idx if K.FORCES in self.frames[i])
            mine = np.array_split(idx, world)[rank]
            if len(mine) == 0:
                yield None, (n_e, n_f, len(idx))
                continue
            batch = collate([self.frames[i] for i in mine], [self.graphs[i] for i in mine], self.dtype,
                            [self.dataset_ids[i] for i in mine])
            batch[K.SAMPLE_INDEX] = torch.as_tensor(np.asarray(mine, dtype=np.int64))
            yield batch, (n_e, n_f, len(idx))

    def __iter__(self) -> Iterator[Dict[str, torch.Tensor]]:
        order = self.order()
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            batch = collate([self.frames[i] for i in idx], [self.graphs[i] for i in idx], self.dtype,
                            [self.dataset_ids[i] for i in idx])
            batch[K.SAMPLE_INDEX] = torch.as_tensor(np.asarray(idx, dtype=np.int64))
            yield batch


def make_loader(datasets: Sequence[LoadedDataset], split: str, r_max: float, batch_size: int,
                dtype: torch.dtype = torch.float64, shuffle: bool = False, seed: int = 0) -> GraphLoader:
    """A :class:`GraphLoader` over ``split`` of all datasets (graphs built once and cached)."""
    frames: List[Frame] = []
    graphs: List[Graph] = []
    ids: List[int] = []
    for ds in datasets:
        idx = ds.indices(split)
        frames.extend(ds.frames[i] for i in idx)
        graphs.extend(ds.graphs(idx, r_max))
        ids.extend([ds.dataset_id] * len(idx))
    return GraphLoader(frames, graphs, ids, batch_size, dtype, shuffle=shuffle, seed=seed)
