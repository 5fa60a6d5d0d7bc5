"""Dataset reading (npz MD17 / rMD17, extxyz), units, error messages, splits, statistics and collation."""
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from deqformer import keys as K
from deqformer.config import parse_config
from deqformer.data import (DataError, build_graph, collate, compute_statistics, load_datasets, make_loader,
                            read_ase_frames, read_npz_frames, split_indices)
from deqformer.units import BOHR, HARTREE, KCAL_PER_MOL

DATA = Path(__file__).resolve().parents[1] / "data"
TYPES = ["H", "C", "O"]
RMD17_MAP = {"nuclear_charges": "atomic_numbers", "coords": "pos", "energies": "total_energy", "forces": "forces"}
MD17_MAP = {"z": "atomic_numbers", "R": "pos", "E": "total_energy", "F": "forces"}


def rmd17(n_frames=4, n_atoms=3, seed=0, **over):
    """A small synthetic rMD17-style dict."""
    rng = np.random.default_rng(seed)
    d = {"nuclear_charges": np.array([8, 1, 1][:n_atoms] + [6] * max(0, n_atoms - 3), dtype=np.int64),
         "coords": rng.normal(size=(n_frames, n_atoms, 3)) * 2.0,
         "energies": rng.normal(size=n_frames) - 100.0,
         "forces": rng.normal(size=(n_frames, n_atoms, 3))}
    d.update(over)
    return {k: v for k, v in d.items() if v is not None}


def save(tmp_path, name="d.npz", **arrays) -> Path:
    p = tmp_path / name
    np.savez(p, **arrays)
    return p


# ------------------------------------------------------------------------------------------- formats


def test_md17_rmd17_extxyz_identical():
    a = read_npz_frames(DATA / "aspirin_5_rmd17.npz", TYPES, RMD17_MAP, ["atomic_numbers"])
    b = read_npz_frames(DATA / "aspirin_5_md17.npz", TYPES, MD17_MAP, ["atomic_numbers"])
    c = read_ase_frames(DATA / "aspirin_5.extxyz", TYPES)
    assert len(a) == len(b) == len(c) == 5
    for fa, fb, fc in zip(a, b, c):
        for f in (fb, fc):
            assert np.array_equal(fa[K.ATOM_TYPES], f[K.ATOM_TYPES])
            assert np.array_equal(fa[K.ATOMIC_NUMBERS], f[K.ATOMIC_NUMBERS])
            assert f[K.POSITIONS].dtype == np.float64 and f[K.POSITIONS].shape == (21, 3)
            assert f[K.ATOM_TYPES].dtype == np.int64
            assert f[K.CELL] is None and not f[K.PBC].any()
        assert np.array_equal(fa[K.POSITIONS], fb[K.POSITIONS]) and np.array_equal(fa[K.FORCES], fb[K.FORCES])
        assert fa[K.TOTAL_ENERGY] == fb[K.TOTAL_ENERGY]
        # extxyz stores 8 decimals for positions and forces
        np.testing.assert_allclose(fa[K.POSITIONS], fc[K.POSITIONS], atol=1e-8)
        np.testing.assert_allclose(fa[K.FORCES], fc[K.FORCES], atol=1e-8)
        assert fa[K.TOTAL_ENERGY] == pytest.approx(fc[K.TOTAL_ENERGY], abs=1e-9)
    # atom order O O O O C x9 H x8 -> types with [H, C, O]
    assert a[0][K.ATOM_TYPES].tolist() == [2] * 4 + [1] * 9 + [0] * 8


def test_default_keys_without_key_mapping():
    a = read_npz_frames(DATA / "aspirin_5_rmd17.npz", TYPES)
    b = read_npz_frames(DATA / "aspirin_5_md17.npz", TYPES)
    assert np.array_equal(a[3][K.FORCES], b[3][K.FORCES]) and a[3][K.TOTAL_ENERGY] == b[3][K.TOTAL_ENERGY]


def test_extxyz_gz_and_mapped_keys(tmp_path):
    src = DATA / "aspirin_5.extxyz"
    gz = tmp_path / "a.extxyz.gz"
    with open(src, "rb") as fi, gzip.open(gz, "wb") as fo:
        shutil.copyfileobj(fi, fo)
    assert len(read_ase_frames(gz, TYPES)) == 5
    # custom names REF_energy / REF_forces via key_mapping
    text = src.read_text().replace("forces:R:3", "REF_forces:R:3").replace("energy=", "REF_energy=")
    p = tmp_path / "ref.extxyz"
    p.write_text(text)
    frames = read_ase_frames(p, TYPES, {"REF_energy": "total_energy", "REF_forces": "forces"})
    ref = read_ase_frames(src, TYPES)
    assert frames[2][K.TOTAL_ENERGY] == ref[2][K.TOTAL_ENERGY]
    assert np.array_equal(frames[2][K.FORCES], ref[2][K.FORCES])
    with pytest.raises(DataError, match=r"no energies or forces"):
        read_ase_frames(p, TYPES)  # without the mapping nothing is found


def test_extxyz_periodic_cell(tmp_path):
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    import ase.io
    cell = [[5.0, 0, 0], [1.0, 6.0, 0], [0.5, 0.3, 7.0]]
    atoms = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.2, 0.9, 0]], cell=cell, pbc=True)
    atoms.calc = SinglePointCalculator(atoms, energy=-1.5, forces=np.ones((3, 3)))
    p = tmp_path / "w.extxyz"
    ase.io.write(p, [atoms, atoms])
    f = read_ase_frames(p, TYPES)[1]
    np.testing.assert_allclose(f[K.CELL], cell)
    assert f[K.PBC].all() and f[K.TOTAL_ENERGY] == -1.5


def test_energy_only_dataset(tmp_path):
    p = save(tmp_path, **rmd17(forces=None))
    frames = read_npz_frames(p, TYPES)
    assert "forces" not in frames[0] and "total_energy" in frames[0]
    g = [build_graph(f[K.POSITIONS], 5.0) for f in frames]
    b = collate(frames, g)
    assert torch.isnan(b[K.FORCES]).all() and not b[K.HAS_FORCES].any()
    stats = compute_statistics(frames, 3)
    assert stats["force_rms"] > 0  # falls back to the per-atom energy residual spread


# ------------------------------------------------------------------------------------------- units


def test_unit_conversion(tmp_path):
    d = rmd17()
    p = save(tmp_path, **d)
    ev = read_npz_frames(p, TYPES)
    kcal = read_npz_frames(p, TYPES, energy_unit="kcal/mol")
    ha_bohr = read_npz_frames(p, TYPES, energy_unit="Hartree", length_unit="Bohr")
    assert kcal[1][K.TOTAL_ENERGY] == pytest.approx(d["energies"][1] * 0.0433641042418, rel=1e-11)
    assert kcal[1][K.TOTAL_ENERGY] == pytest.approx(ev[1][K.TOTAL_ENERGY] * KCAL_PER_MOL, rel=1e-14)
    np.testing.assert_allclose(kcal[1][K.FORCES], ev[1][K.FORCES] * KCAL_PER_MOL, rtol=1e-14)
    np.testing.assert_array_equal(kcal[1][K.POSITIONS], ev[1][K.POSITIONS])
    np.testing.assert_allclose(ha_bohr[2][K.POSITIONS], d["coords"][2] * BOHR, rtol=1e-14)
    np.testing.assert_allclose(ha_bohr[2][K.FORCES], d["forces"][2] * HARTREE / BOHR, rtol=1e-14)


def test_units_via_config(tmp_path):
    p = save(tmp_path, **rmd17(n_frames=6))
    raw = {"dataset": "npz", "dataset_file_name": str(p), "chemical_symbols": TYPES, "r_max": 3.0, "n_train": 3,
           "n_val": 2, "dataset_energy_unit": "kcal/mol"}
    ds = load_datasets(parse_config(raw, tmp_path))[0]
    np.testing.assert_allclose([f[K.TOTAL_ENERGY] for f in ds.frames], np.load(p)["energies"] * KCAL_PER_MOL)


# ------------------------------------------------------------------------------------------- errors


def test_missing_key_lists_file_keys(tmp_path):
    d = rmd17()
    d["positions_xyz"] = d.pop("coords")
    p = save(tmp_path, **d)
    with pytest.raises(DataError) as e:
        read_npz_frames(p, TYPES)
    msg = str(e.value)
    assert str(p) in msg and "'pos'" in msg and "positions_xyz" in msg and "key_mapping" in msg
    # a key_mapping naming a key that is not in the file (MD17 mapping on an rMD17 file)
    p2 = save(tmp_path, "r.npz", **rmd17())
    with pytest.raises(DataError) as e:
        read_npz_frames(p2, TYPES, MD17_MAP)
    msg = str(e.value)
    assert str(p2) in msg and "'z'" in msg and "nuclear_charges" in msg and "coords: pos" in msg


def test_shape_mismatch(tmp_path):
    d = rmd17(n_frames=4, n_atoms=21)
    d["forces"] = d["forces"][:, :20]
    p = save(tmp_path, **d)
    with pytest.raises(DataError) as e:
        read_npz_frames(p, TYPES)
    msg = str(e.value)
    assert str(p) in msg and "'forces'" in msg and "(4, 20, 3)" in msg and "(4, 21, 3)" in msg
    for bad in [{"energies": np.zeros(3)}, {"nuclear_charges": np.ones(5, dtype=int)},
                {"coords": np.zeros((4, 3, 2))}]:
        p = save(tmp_path, "b.npz", **rmd17(**bad))
        with pytest.raises(DataError, match=r"shape"):
            read_npz_frames(p, TYPES)


def test_fixed_field_declared_but_per_frame(tmp_path):
    d = rmd17()
    d["nuclear_charges"] = np.tile(d["nuclear_charges"], (4, 1))
    p = save(tmp_path, **d)
    frames = read_npz_frames(p, TYPES)  # per-frame atomic numbers are fine ...
    assert frames[0][K.ATOM_TYPES].tolist() == [2, 0, 0]
    with pytest.raises(DataError, match="npz_fixed_field_keys"):  # ... unless declared fixed
        read_npz_frames(p, TYPES, fixed_field_keys=["atomic_numbers"])


@pytest.mark.parametrize("key", ["coords", "energies", "forces"])
def test_nan_names_frame(tmp_path, key):
    d = rmd17(n_frames=6)
    d[key] = d[key].copy()
    d[key][4] = np.nan if key != "forces" else d[key][4]
    if key == "forces":
        d[key][4, 1, 2] = np.inf
    p = save(tmp_path, **d)
    with pytest.raises(DataError) as e:
        read_npz_frames(p, TYPES)
    msg = str(e.value)
    assert str(p) in msg and f"'{key}'" in msg and "frame 4" in msg and ("NaN" in msg)


def test_nan_in_extxyz(tmp_path):
    lines = (DATA / "aspirin_5.extxyz").read_text().splitlines(True)
    lines[2 * 23 + 5] = lines[2 * 23 + 5].replace(lines[2 * 23 + 5].split()[4], "nan", 1)  # frame 2, a force
    p = tmp_path / "nan.extxyz"
    p.write_text("".join(lines))
    with pytest.raises(DataError, match=r"frame 2"):
        read_ase_frames(p, TYPES)


def test_unknown_element(tmp_path):
    d = rmd17(nuclear_charges=np.array([8, 1, 17]))
    p = save(tmp_path, **d)
    with pytest.raises(DataError) as e:
        read_npz_frames(p, TYPES)
    msg = str(e.value)
    assert str(p) in msg and "Cl" in msg and "Z=17" in msg and "chemical_symbols" in msg
    with pytest.raises(DataError, match=r"aspirin_5.extxyz: frame 0.*C \(Z=6\).*'chemical_symbols'"):
        read_ase_frames(DATA / "aspirin_5.extxyz", ["H", "O", "Cl"])  # no carbon


def test_too_few_frames(tmp_path):
    p = save(tmp_path, **rmd17(n_frames=5))
    raw = {"dataset": "npz", "dataset_file_name": str(p), "chemical_symbols": TYPES, "r_max": 3.0, "n_train": 4,
           "n_val": 2}
    with pytest.raises(DataError) as e:
        load_datasets(parse_config(raw, tmp_path))
    msg = str(e.value)
    assert str(p) in msg and "5 frames" in msg and "n_train + n_val" in msg


@pytest.mark.parametrize("content", [b"", b"this is not a zip file", b"PK\x03\x04garbage" * 10])
def test_corrupt_npz(tmp_path, content):
    p = tmp_path / "bad.npz"
    p.write_bytes(content)
    with pytest.raises(DataError, match=str(p)):
        read_npz_frames(p, TYPES)


def test_truncated_npz(tmp_path):
    good = save(tmp_path, **rmd17(n_frames=50, n_atoms=10))
    p = tmp_path / "trunc.npz"
    p.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match="trunc.npz"):
        read_npz_frames(p, TYPES)


def test_corrupt_extxyz_and_missing_file(tmp_path):
    p = tmp_path / "bad.extxyz"
    p.write_text("3\nenergy=1.0\nO 0 0 0\nH 1 0\n")
    with pytest.raises(DataError, match="bad.extxyz"):
        read_ase_frames(p, TYPES)
    with pytest.raises(DataError, match="not found"):
        read_npz_frames(tmp_path / "missing.npz", TYPES)
    with pytest.raises(DataError, match="not found"):
        read_ase_frames(tmp_path / "missing.extxyz", TYPES)


def test_empty_split(tmp_path):
    p = save(tmp_path, **rmd17(n_frames=5))
    base = {"dataset": "npz", "dataset_file_name": str(p), "chemical_symbols": TYPES, "r_max": 3.0}
    with pytest.raises(DataError, match=r"'train' split is empty"):
        load_datasets(parse_config(dict(base, n_train=0, n_val=3), tmp_path))
    with pytest.raises(DataError, match=r"'val' split is empty.*n_val"):
        load_datasets(parse_config(dict(base, n_train=3, n_val=0), tmp_path))
    with pytest.raises(DataError, match=r"'test' split is empty"):
        load_datasets(parse_config(dict(base, n_train=3, n_val=2), tmp_path), require=("test",))


# ------------------------------------------------------------------------------------------- splits


def test_split_reproducible_and_disjoint():
    a = split_indices(100, 60, 15, seed=7)
    b = split_indices(100, 60, 15, seed=7)
    c = split_indices(100, 60, 15, seed=8)
    for k in ("train", "val", "test"):
        assert np.array_equal(a[k], b[k])
    assert not np.array_equal(a["train"], c["train"])
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (60, 15, 25)
    allidx = np.concatenate([a["train"], a["val"], a["test"]])
    assert sorted(allidx.tolist()) == list(range(100))
    # the documented recipe
    perm = np.random.default_rng(7).permutation(100)
    assert set(a["train"].tolist()) == set(perm[:60].tolist())
    assert set(a["val"].tolist()) == set(perm[60:75].tolist())
    seq = split_indices(10, 3, 2, seed=0, mode="sequential")
    assert seq["train"].tolist() == [0, 1, 2] and seq["val"].tolist() == [3, 4]


def test_split_uses_dataset_seed(tmp_path):
    p = DATA / "aspirin_monomer_30.npz"
    raw = {"dataset": "npz", "dataset_file_name": str(p), "key_mapping": RMD17_MAP, "chemical_symbols": TYPES,
           "r_max": 4.0, "n_train": 10, "n_val": 5, "seed": 1, "dataset_seed": 99}
    ds = load_datasets(parse_config(raw, tmp_path))[0]
    assert np.array_equal(ds.indices("train"), split_indices(30, 10, 5, 99)["train"])
    raw2 = dict(raw, seed=2)  # the model seed does not change the split
    ds2 = load_datasets(parse_config(raw2, tmp_path))[0]
    assert np.array_equal(ds.indices("val"), ds2.indices("val"))


# ------------------------------------------------------------------------------------------- statistics


def test_statistics_fit():
    rng = np.random.default_rng(0)
    true = np.array([-13.6, -1030.0, -2040.0])
    frames = []
    for k in range(40):
        types = rng.integers(0, 3, size=rng.integers(3, 8))
        frames.append({K.ATOM_TYPES: types, K.POSITIONS: np.zeros((len(types), 3)),
                       K.TOTAL_ENERGY: float(np.bincount(types, minlength=3) @ true),
                       K.FORCES: np.full((len(types), 3), 2.0)})
    s = compute_statistics(frames, 3)
    np.testing.assert_allclose(s["energy_per_atom_shift"], true, rtol=1e-7)
    assert s["force_rms"] == pytest.approx(2.0)
    # single composition (monomers) and collinear compositions (monomers + dimers) still work
    mono = read_npz_frames(DATA / "aspirin_monomer_30.npz", TYPES)
    dim = read_npz_frames(DATA / "aspirin_dimer_10.npz", TYPES)
    s = compute_statistics(mono + dim, 3)
    counts = np.array([8, 9, 4])
    mean_e = np.mean([f[K.TOTAL_ENERGY] for f in mono])
    assert counts @ np.array(s["energy_per_atom_shift"]) == pytest.approx(mean_e, abs=0.5)
    assert all(np.isfinite(s["energy_per_atom_shift"]))
    assert 0.5 < s["force_rms"] < 2.0
    assert isinstance(s["force_rms"], float) and isinstance(s["energy_per_atom_shift"][0], float)


# ------------------------------------------------------------------------------------------- batches


def test_collate_offsets():
    frames = read_npz_frames(DATA / "aspirin_monomer_30.npz", TYPES)[:2] + \
        read_npz_frames(DATA / "aspirin_dimer_10.npz", TYPES)[:1]
    del frames[1][K.FORCES]
    frames[1] = dict(frames[1])
    graphs = [build_graph(f[K.POSITIONS], 3.0) for f in frames]
    b = collate(frames, graphs, torch.float32, dataset_ids=[0, 0, 1])
    n = [21, 21, 42]
    assert b[K.POSITIONS].shape == (84, 3) and b[K.POSITIONS].dtype == torch.float32
    assert b[K.EDGE_SHIFT].dtype == torch.float32 and b[K.TOTAL_ENERGY].dtype == torch.float32
    assert b[K.ATOM_TYPES].dtype == b[K.BATCH].dtype == b[K.EDGE_INDEX].dtype == torch.int64
    assert b[K.NUM_FRAMES].dim() == 0 and int(b[K.NUM_FRAMES]) == 3
    assert b[K.NUM_ATOMS].tolist() == n
    assert b[K.BATCH].tolist() == [0] * 21 + [1] * 21 + [2] * 42
    assert b[K.DATASET_ID].tolist() == [0, 0, 1]
    assert b[K.HAS_FORCES].tolist() == [True, False, True]
    assert torch.isnan(b[K.FORCES][21:42]).all() and torch.isfinite(b[K.FORCES][:21]).all()
    e = [g[0].shape[1] for g in graphs]
    ei = b[K.EDGE_INDEX]
    assert ei.shape == (2, sum(e))
    assert torch.equal(ei[:, :e[0]], torch.as_tensor(graphs[0][0]))
    assert torch.equal(ei[:, e[0]:e[0] + e[1]], torch.as_tensor(graphs[1][0]) + 21)
    assert torch.equal(ei[:, e[0] + e[1]:], torch.as_tensor(graphs[2][0]) + 42)
    # edges never cross frames
    assert torch.equal(b[K.BATCH][ei[0]], b[K.BATCH][ei[1]])
    # edge vectors reproduce the per-frame distances
    vec = b[K.POSITIONS].double()[ei[1]] - b[K.POSITIONS].double()[ei[0]] + b[K.EDGE_SHIFT].double()
    assert float(vec.norm(dim=1).max()) < 3.0


def test_loader_shuffle_reproducible(tmp_path):
    raw = {"datasets": [{"dataset": "npz", "dataset_file_name": str(DATA / "aspirin_monomer_30.npz"), "n_train": 12,
                         "n_val": 3},
                        {"dataset": "npz", "dataset_file_name": str(DATA / "aspirin_dimer_10.npz"), "n_train": 4,
                         "n_val": 2}],
           "chemical_symbols": TYPES, "r_max": 4.0}
    dsets = load_datasets(parse_config(raw, tmp_path))
    la = make_loader(dsets, "train", 4.0, 5, shuffle=True, seed=3)
    lb = make_loader(dsets, "train", 4.0, 5, shuffle=True, seed=3)
    assert len(la) == 4
    la.set_epoch(2)
    lb.set_epoch(2)
    for x, y in zip(la, lb):
        assert torch.equal(x[K.POSITIONS], y[K.POSITIONS])
    lb.set_epoch(3)
    assert not np.array_equal(la.order(), lb.order())
    seen = torch.cat([b[K.DATASET_ID] for b in la])
    assert sorted(seen.tolist()) == [0] * 12 + [1] * 4
    # graphs are cached: a second loader reuses the same arrays
    lc = make_loader(dsets, "train", 4.0, 5)
    assert lc.graphs[0][0] is la.graphs[0][0]
