"""benchmarks/heldout_coverage.py: the frame descriptor, the distance to the training set, the binning,
the shifted coordinates, and the script end to end on a tiny deployed model."""
import json
import os
import sys

import numpy as np
import pytest
import yaml

from deqformer import keys as K
from deqformer.deploy import deploy
from modelkit import tiny_model

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import heldout_coverage as hc  # noqa: E402

DATA = os.path.join(ROOT, "tests", "data", "aspirin_5_rmd17.npz")


def _frames():
    d = np.load(DATA)
    return [{K.POSITIONS: d["coords"][k], K.ATOMIC_NUMBERS: d["nuclear_charges"]} for k in range(len(d["coords"]))], \
        np.asarray(d["nuclear_charges"])


def _rotation(seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q


def test_descriptor_ignores_rotation_and_translation():
    frames, z = _frames()
    moved = [{K.POSITIONS: f[K.POSITIONS] @ _rotation(1).T + np.array([3.0, -2.0, 7.5]), K.ATOMIC_NUMBERS: z}
             for f in frames]
    a, b = hc.distance_descriptor(frames, z), hc.distance_descriptor(moved, z)
    assert a.shape == (len(frames), 21 * 20 // 2)
    np.testing.assert_allclose(a, b, atol=1e-10)


def test_nearest_distance_is_the_rms_difference_to_the_closest_reference():
    frames, z = _frames()
    d = hc.distance_descriptor(frames, z)
    np.testing.assert_allclose(hc.nearest_distance(d, d), 0.0, atol=1e-6)
    shifted = [dict(f) for f in frames[:1]]
    pos = shifted[0][K.POSITIONS].copy()
    pos[20] += np.array([0.3, 0.0, 0.0])             # one hydrogen moved
    shifted[0][K.POSITIONS] = pos
    q = hc.distance_descriptor(shifted, z)
    by_hand = min(np.sqrt(((q[0] - r) ** 2).mean()) for r in d)
    assert hc.nearest_distance(q, d)[0] == pytest.approx(by_hand, rel=1e-9)
    assert by_hand > 0.0


def test_frames_of_other_atoms_are_refused():
    frames, z = _frames()
    other = [{K.POSITIONS: frames[0][K.POSITIONS], K.ATOMIC_NUMBERS: z[::-1].copy()}]
    with pytest.raises(SystemExit, match="same atoms in the same order"):
        hc.distance_descriptor(other, z)


def test_bins_hold_every_frame_and_their_means():
    dist = np.array([0.05, 0.16, 0.17, 0.22, 0.5])
    err = {"f_mae": np.array([0.01, 0.02, 0.04, 0.05, 0.10]), "e_err": np.array([0.0, -0.01, 0.03, 0.02, 0.2])}
    rows = hc.binned(dist, err)
    assert sum(r["frames"] for r in rows) == len(dist)
    mid = next(r for r in rows if r["dist_lo"] == 0.15)
    assert mid["frames"] == 2 and mid["f_mae_meV_A"] == pytest.approx(30.0)
    assert mid["e_mae_meV"] == pytest.approx(20.0) and mid["e_mean_error_meV"] == pytest.approx(10.0)


def test_shifted_coordinates_name_the_pair_that_moved():
    _, z = _frames()
    iu = np.triu_indices(len(z), 1)
    k = int(np.flatnonzero((iu[0] == 3) & (iu[1] == 20))[0])          # the O3-H20 distance
    rng = np.random.default_rng(0)
    train = 3.0 + 0.1 * rng.normal(size=(200, len(iu[0])))
    test = 3.0 + 0.1 * rng.normal(size=(50, len(iu[0])))
    test[:, k] += 1.0                                                  # ten training standard deviations
    rows = hc.shifted_coordinates(train, test, z, {1: "H", 6: "C", 8: "O"})
    assert rows[0]["atoms"] == "O3-H20"
    assert rows[0]["shift_in_train_std"] == pytest.approx(10.0, rel=0.3)
    assert abs(rows[1]["shift_in_train_std"]) < 5.0


def test_script_end_to_end(tmp_path):
    model = tmp_path / "m.pt"
    deploy(tiny_model(), str(model))
    cfg = {"dataset": "npz", "dataset_file_name": DATA, "chemical_symbols": ["H", "C", "O"], "r_max": 4.0,
           "key_mapping": {"nuclear_charges": "atomic_numbers", "coords": "pos", "energies": "total_energy",
                           "forces": "forces"},
           "npz_fixed_field_keys": ["atomic_numbers"], "n_train": 3, "n_val": 2}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert hc.main(["--model", str(model), "--config", str(tmp_path / "config.yaml"), "--test-file", DATA,
                    "--key-mapping", "nuclear_charges=atomic_numbers", "coords=pos", "energies=total_energy",
                    "forces=forces", "--fixed-fields", "atomic_numbers", "--out", "cov",
                    "--out-dir", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "cov.json").read_text())
    assert summary["train_frames"] == 3 and summary["val"]["frames"] == 2 and summary["test"]["frames"] == 5
    # the test file holds the training frames themselves: three of its frames are at distance 0
    rows = [r.split(",") for r in (tmp_path / "cov.csv").read_text().splitlines()[1:] if r.startswith("test,")]
    assert sum(int(r[3]) for r in rows) == 5
    assert float(rows[0][1]) == 0.0 and int(rows[0][3]) >= 3
    assert summary["test"]["dist_median_A"] >= 0.0 and (tmp_path / "cov.png").stat().st_size > 0
