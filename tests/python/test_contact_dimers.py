"""examples/aspirin/data/contact_dimers.py: dimers cut out of a box dump where contacts are closer than
the training data's, recomputed with GFN2-xTB."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deqformer import keys as K
from deqformer.data.dataset import read_npz_frames

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples/aspirin/data/contact_dimers.py"
DATA = ROOT / "examples/aspirin/data"
RMD17 = {"nuclear_charges": "atomic_numbers", "coords": "pos", "energies": "total_energy", "forces": "forces"}
TYPE_OF_Z = {1: 1, 6: 2, 8: 3}


def write_dump(path: Path, frames, types, box: float) -> None:
    with open(path, "w") as f:
        for step, pos in enumerate(frames):
            f.write(f"ITEM: TIMESTEP\n{step}\nITEM: NUMBER OF ATOMS\n{len(pos)}\nITEM: BOX BOUNDS pp pp pp\n")
            f.write(f"0 {box}\n0 {box}\n0 {box}\nITEM: ATOMS id type x y z\n")
            for i, (t, p) in enumerate(zip(types, pos)):
                f.write(f"{i + 1} {t} {p[0]:.8f} {p[1]:.8f} {p[2]:.8f}\n")


def pushed_dimer_dump(tmp_path: Path, contact: float = 1.0):
    """A dump of one frame: a training dimer with its closest contact (H-O) pushed to `contact` A, split across
    the boundary, and a third molecule far away. Returns (dump, m1, m2, i, j) with i, j the contact's atoms."""
    d = np.load(DATA / "aspirin_xtb_dimer_train.npz")
    z = d["nuclear_charges"][:21]
    dimer = d["coords"][0]
    box = 20.0
    types = [TYPE_OF_Z[int(v)] for v in np.r_[z, z, z]]
    # a training dimer with molecule 2 pushed rigidly towards molecule 1 along their closest contact until
    # that contact is 1.0 A (every contact in the training dimers is longer); molecule 3 far away.
    # Everything is wrapped into the box with molecule 1 on the boundary, so it arrives split.
    r = np.linalg.norm(dimer[:21, None] - dimer[None, 21:], axis=-1)
    i, j = np.unravel_index(np.argmin(r), r.shape)
    u = (dimer[21 + j] - dimer[i]) / r[i, j]
    m1 = dimer[:21] - dimer[:21].mean(axis=0) + np.array([0.5, 10.0, 10.0])
    m2 = dimer[21:] - dimer[:21].mean(axis=0) + np.array([0.5, 10.0, 10.0]) - (r[i, j] - contact) * u
    m3 = dimer[:21] - dimer[:21].mean(axis=0) + np.array([10.5, 10.0, 10.0])
    pos = np.vstack([m1, m2, m3]) % box
    dump = tmp_path / "box.lammpstrj"
    write_dump(dump, [pos], types, box)
    return dump, m1, m2, i, j


def test_contact_dimer_is_cut_whole_across_the_boundary_and_recomputed(tmp_path):
    dump, m1, m2, i, j = pushed_dimer_dump(tmp_path)
    p = subprocess.run([sys.executable, str(SCRIPT), str(dump), "--out", str(tmp_path / "out"), "--name", "c",
                        "--workers", "1"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "1 dimers from 1 frames" in p.stdout
    frames = read_npz_frames(tmp_path / "out/c.npz", ["H", "C", "O"], RMD17, fixed_field_keys=["atomic_numbers"])
    assert len(frames) == 1 and len(frames[0][K.POSITIONS]) == 42
    got = frames[0][K.POSITIONS]
    # each molecule whole (its internal distances as built) and the contact as built
    for part, ref in ((got[:21], m1), (got[21:], m2)):
        np.testing.assert_allclose(np.linalg.norm(part[:, None] - part[None], axis=-1),
                                   np.linalg.norm(ref[:, None] - ref[None], axis=-1), atol=1e-6)
    assert np.linalg.norm(got[21 + j] - got[i]) == pytest.approx(1.0, abs=1e-6)
    # GFN2-xTB energy of two aspirin molecules (eV), finite forces
    assert abs(frames[0][K.TOTAL_ENERGY] - 2 * (-1077.17)) < 5.0
    assert np.all(np.isfinite(frames[0][K.FORCES]))


def test_limits_are_the_closest_contacts_over_all_training_files(tmp_path):
    # a 1.2 A H-O contact (the other pairs then >= 2.1 A) is closer than any in the training dimers (1.40 A)
    # but not closer than those in the contact dimers of the first round (0.88 A; O-O 2.11): with both files
    # it is known ground, nothing to add
    dump, *_ = pushed_dimer_dump(tmp_path, contact=1.2)

    def run(*files):
        return subprocess.run([sys.executable, str(SCRIPT), str(dump), "--out", str(tmp_path / "out"), "--name", "c",
                               "--workers", "1", "--dimer-data", *[str(DATA / f) for f in files]],
                              capture_output=True, text=True, timeout=600)

    p = run("aspirin_xtb_dimer_train.npz")
    assert p.returncode == 0 and "1 dimers from 1 frames" in p.stdout, p.stdout + p.stderr
    p = run("aspirin_xtb_dimer_train.npz", "aspirin_xtb_contact_box.npz")
    assert p.returncode != 0
    assert "no contact closer than the training dimers" in p.stdout + p.stderr
