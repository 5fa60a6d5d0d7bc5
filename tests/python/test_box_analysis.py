"""examples/aspirin/box_analysis.py: the intermolecular O-O g(r) and the features read off it."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples/aspirin"))
from box_analysis import O_TYPE, intermolecular_rdf, rdf_shape  # noqa: E402


def test_uncorrelated_oxygens_give_g_of_one():
    """O atoms placed uniformly at random (an ideal gas) have g(r) = 1 at every distance, whatever the box."""
    rng = np.random.default_rng(3)
    mol_size, n_mol, box = 3, 200, np.array([30.0, 32.0, 34.0])
    types = np.tile([O_TYPE, 1, 1], n_mol)
    frames = rng.uniform(0.0, 1.0, size=(20, n_mol * mol_size, 3)) * box
    r, g, rmin = intermolecular_rdf(frames, np.tile(box, (20, 1)), types, mol_size, r_max=12.0, nbins=24)
    assert np.all(np.abs(g[r > 4.0] - 1.0) < 0.08), g
    assert abs(g[r > 2.0].mean() - 1.0) < 0.02
    assert 0.0 < rmin < 2.0


def test_same_molecule_pairs_and_periodic_images():
    """Two O atoms of one molecule never count; two of different molecules across the boundary count at their
    minimum-image distance."""
    types = np.array([O_TYPE, O_TYPE, O_TYPE])
    pos = np.array([[[0.5, 5.0, 5.0], [1.5, 5.0, 5.0], [9.5, 5.0, 5.0]]])   # molecules {0, 1} and {2}
    r, g, rmin = intermolecular_rdf(pos, np.array([[10.0, 10.0, 10.0]]), types, mol_size=2, r_max=4.0, nbins=8)
    assert rmin == 1.0                                   # 9.5 -> 0.5 across the boundary, not 1.5 -> 0.5 inside
    assert set(np.nonzero(g)[0]) == {2, 4}               # pairs at 1.0 and 2.0 A only (bins of 0.5 A)


def test_a_liquid_peak_is_found_and_noise_is_not_a_peak():
    r = np.arange(0.05, 8.0, 0.1)
    liquid = np.where(r < 2.5, 0.0, 1.0 + 1.2 * np.exp(-((r - 2.8) / 0.25) ** 2) - 0.3 * np.exp(-((r - 3.6) / 0.4) ** 2))
    shape = rdf_shape(r, liquid)
    assert abs(shape["first_peak_A"] - 2.85) < 0.11 and shape["first_peak_g"] > 1.8
    assert abs(shape["onset_A"] - 2.55) < 0.11 and abs(shape["reaches_1_A"] - 2.55) < 0.11

    # the dense box's shape: a climb to 1 with a shoulder and noise of +-0.05 on the tail: no peak
    rng = np.random.default_rng(0)
    climb = np.clip((r - 2.3) / 3.5, 0.0, 1.0) + np.where(r > 2.3, 0.05 * rng.standard_normal(len(r)), 0.0)
    shape = rdf_shape(r, climb)
    assert shape["first_peak_A"] is None and shape["first_peak_g"] is None
    assert 2.5 < shape["onset_A"] < 3.0 and shape["reaches_1_A"] > 5.0

    assert rdf_shape(r, np.zeros_like(r)) == {"onset_A": None, "reaches_1_A": None, "first_peak_A": None,
                                              "first_peak_g": None}


def test_a_low_peak_above_bulk_density_counts_if_it_stands_out():
    """Round 0's dense box: g climbs to 1.13 at 3.05 A and falls to 0.74 -- a peak, though a low one."""
    r = np.arange(0.05, 8.0, 0.1)
    g = np.interp(r, [0.0, 2.2, 3.05, 3.6, 5.5, 8.0], [0.0, 0.0, 1.1, 0.74, 1.0, 1.0])
    shape = rdf_shape(r, g)
    assert abs(shape["first_peak_A"] - 3.05) < 0.11 and 1.0 < shape["first_peak_g"] < 1.1
