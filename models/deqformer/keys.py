"""Field names of frames and batches, in one place.

The first six are nequip's (`key_mapping` in a config maps a file's keys onto them, and the trainer,
evaluator and calculators read them back); the rest are the fields the collate step adds to a batch.
Model outputs reuse nequip's names where they mean the same thing (``forces``).
"""
POSITIONS = "pos"
ATOMIC_NUMBERS = "atomic_numbers"
TOTAL_ENERGY = "total_energy"
FORCES = "forces"
CELL = "cell"
PBC = "pbc"

ATOM_TYPES = "atom_types"
EDGE_INDEX = "edge_index"
EDGE_SHIFT = "edge_shift"
BATCH = "batch"
NUM_FRAMES = "num_frames"
NUM_ATOMS = "num_atoms"
DATASET_ID = "dataset_id"
HAS_FORCES = "has_forces"
SAMPLE_INDEX = "sample_index"      # position of each frame in its loader (warm-start cache key)

#: the nequip fields a dataset file can provide (through key_mapping)
NEQUIP_FIELDS = (ATOMIC_NUMBERS, POSITIONS, TOTAL_ENERGY, FORCES, CELL, PBC)
