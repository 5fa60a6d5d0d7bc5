"""examples/aspirin/data/generate_xtb.py: xtb MD + single points -> npz / extxyz the trainer reads."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deqformer import keys as K
from deqformer.data.dataset import read_ase_frames, read_npz_frames

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples/aspirin/data/generate_xtb.py"
RMD17 = {"nuclear_charges": "atomic_numbers", "coords": "pos", "energies": "total_energy", "forces": "forces"}


def test_generate_xtb_tiny_run_is_readable_and_consistent(tmp_path):
    p = subprocess.run([sys.executable, str(SCRIPT), "--start", str(ROOT / "examples/aspirin/data/aspirin_opt.xyz"),
                        "--out", str(tmp_path), "--name", "tiny", "--time-ps", "0.03", "--skip-ps", "0.01",
                        "--workers", "1"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    npz = read_npz_frames(tmp_path / "tiny.npz", ["H", "C", "O"], RMD17, fixed_field_keys=["atomic_numbers"])
    md17 = read_npz_frames(tmp_path / "tiny_md17.npz", ["H", "C", "O"], fixed_field_keys=["z"])
    xyz = read_ase_frames(tmp_path / "tiny.extxyz", ["H", "C", "O"])
    assert len(npz) == len(md17) == len(xyz) == 2
    for a, b, c in zip(npz, md17, xyz):
        assert a[K.TOTAL_ENERGY] == pytest.approx(b[K.TOTAL_ENERGY]) == pytest.approx(c[K.TOTAL_ENERGY])
        np.testing.assert_allclose(a[K.FORCES], c[K.FORCES], atol=1e-6)  # extxyz: 8 decimals
        np.testing.assert_allclose(a[K.POSITIONS], b[K.POSITIONS])
    # the same level of theory as the shipped data (GFN2-xTB aspirin, eV): energy near their mean, forces ~1 eV/A
    e = np.array([f[K.TOTAL_ENERGY] for f in npz])
    assert np.all(np.abs(e - (-1077.17)) < 1.0)
    rms = np.sqrt(np.mean(np.concatenate([f[K.FORCES] for f in npz]) ** 2))
    assert 0.3 < rms < 3.0


def test_single_point_reproduces_shipped_frame(tmp_path):
    sys.path.insert(0, str(SCRIPT.parent))
    from generate_xtb import single_point
    d = np.load(ROOT / "examples/aspirin/data/aspirin_xtb_train.npz")
    sym = {1: "H", 6: "C", 8: "O"}
    e, f = single_point([sym[int(v)] for v in d["nuclear_charges"]], d["coords"][100], tmp_path, 1)
    assert e == pytest.approx(float(d["energies"][100]), abs=1e-5)      # eV
    np.testing.assert_allclose(f, d["forces"][100], atol=2e-3)          # eV/A
