"""examples/aspirin/vibrations.py (stretch frequencies, VDOS) and xtb_reference.py (GFN2-xTB NVE from a
LAMMPS microstate)."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples/aspirin"))

from vibrations import CM1_PER_THZ, peak, power_spectrum, stretch_frequencies, stretch_pairs, vdos  # noqa: E402
from xtb_reference import AU_VEL_A_PER_PS, fortran_d, read_trj  # noqa: E402
from modelkit import ASPIRIN_Z, aspirin_geometry  # noqa: E402


def _oscillate(pos0, pairs, freqs_cm1, amp, n=2000, dt_fs=1.0):
    """A trajectory in which each pair's second atom moves along the bond at the given wavenumber."""
    t = np.arange(n) * dt_fs * 1e-3                    # ps
    traj = np.repeat(pos0[None], n, axis=0)
    for (i, j), nu in zip(pairs, freqs_cm1):
        u = (pos0[j] - pos0[i]) / np.linalg.norm(pos0[j] - pos0[i])
        traj[:, j] += amp * np.sin(2 * np.pi * nu / CM1_PER_THZ * t)[:, None] * u
    return traj


def test_peak_of_a_sampled_sinusoid():
    dt = 1.0
    t = np.arange(2000) * dt * 1e-3
    nu0 = 3512.0
    nu, spec = power_spectrum(np.cos(2 * np.pi * nu0 / CM1_PER_THZ * t + 0.3), dt)
    assert peak(nu, spec, (2500, 4500)) == pytest.approx(nu0, rel=2e-3)
    with pytest.raises(ValueError, match="no points"):
        peak(nu, spec, (20000, 30000))


def test_stretch_bands_of_aspirin_and_their_frequencies():
    z, pos = np.array(ASPIRIN_Z), aspirin_geometry()
    pairs = stretch_pairs(z, pos)
    assert pairs["O-H stretch"] == [(20, 1)]                  # the carboxyl hydrogen on its oxygen
    assert sorted(pairs["C=O stretch"]) == [(10, 2), (11, 3)]  # acid and ester carbonyls, not the C-O single bonds
    traj = _oscillate(pos, [(1, 20), (10, 2), (11, 3)], [3550.0, 1790.0, 1790.0], 0.01)
    f = stretch_frequencies(z, traj, 1.0, pairs)
    assert f["O-H stretch"] == pytest.approx(3550.0, rel=3e-3)
    assert f["C=O stretch"] == pytest.approx(1790.0, rel=3e-3)


def test_vdos_is_a_normalised_density_with_the_motion_s_peak():
    z, pos = np.array(ASPIRIN_Z), aspirin_geometry()
    traj = _oscillate(pos, [(1, 20)], [3400.0], 0.02)
    vel = np.gradient(traj, 1e-3, axis=0)                # Å/ps
    nu, g = vdos(z, vel, 1.0)
    assert np.trapz(g, nu) == pytest.approx(1.0)
    assert nu[np.argmax(g)] == pytest.approx(3400.0, rel=5e-3)


def test_fortran_d_reads_back_exactly():
    for x in (2.3917373286319, -1.5712122582560e-4, 0.0, 1.0, -9.999999999999999, 123.4, 7.3e-12):
        s = fortran_d(x)
        assert len(s) == 22 and "D" in s
        assert float(s.replace("D", "E")) == pytest.approx(x, rel=1e-13, abs=0)


def test_read_trj_with_velocities(tmp_path):
    n = 2
    lines = []
    for f in range(3):
        lines += [str(n), f" energy: {-1.0 - f} gnorm: 0.1"]
        lines += [f"O {f}.0 0.0 0.0", f"H {f}.0 1.0 0.0"]
        lines += [f"  {1e-4 * (f + 1)} 0.0 0.0", "  0.0 0.0 0.0"]
    (tmp_path / "xtb.trj").write_text("\n".join(lines) + "\n")
    pos, vel = read_trj(tmp_path / "xtb.trj", n)
    assert pos.shape == vel.shape == (3, 2, 3)
    assert pos[2, 1].tolist() == [2.0, 1.0, 0.0]
    assert vel[1, 0, 0] == pytest.approx(2e-4 * AU_VEL_A_PER_PS)


@pytest.mark.skipif(subprocess.run(["which", "xtb"], capture_output=True).returncode != 0,
                    reason="xtb not installed (scripts/install-deps.sh installs it)")
def test_xtb_nve_starts_from_the_lammps_microstate(tmp_path):
    """A LAMMPS-style dump (metal units) -> xtb NVE: its first frame is the dumped positions and
    velocities, and its later frames move along them."""
    pos = aspirin_geometry()
    mass = {1: 1.008, 6: 12.011, 8: 15.999}
    rng = np.random.default_rng(3)
    vel = np.array([rng.normal(size=3) * np.sqrt(8.617e-5 * 500 / mass[k]) * 98.2269 for k in ASPIRIN_Z])  # Å/ps
    ltype = {1: 1, 6: 2, 8: 3}
    rows = "".join(f"{i + 1} {ltype[k]} {p[0]} {p[1]} {p[2]} {v[0]} {v[1]} {v[2]}\n"
                   for i, (k, p, v) in enumerate(zip(ASPIRIN_Z, pos, vel)))
    dump = tmp_path / "md.lammpstrj"
    dump.write_text(f"ITEM: TIMESTEP\n0\nITEM: NUMBER OF ATOMS\n{len(pos)}\nITEM: BOX BOUNDS pp pp pp\n0 30\n0 30\n0 30\n"
                    f"ITEM: ATOMS id type x y z vx vy vz\n{rows}")
    out = tmp_path / "xtb_nve.npz"
    p = subprocess.run([sys.executable, str(ROOT / "examples/aspirin/xtb_reference.py"), str(dump), str(out),
                        "--time-ps", "0.01"], capture_output=True, text=True, timeout=600,
                       cwd=str(ROOT / "examples/aspirin"))
    assert p.returncode == 0, p.stdout + p.stderr
    r = np.load(out)
    assert r["pos"].shape == r["vel"].shape == (10, 21, 3) and float(r["dt_fs"]) == 1.0
    np.testing.assert_allclose(r["pos"][0], pos, atol=1e-8)
    np.testing.assert_allclose(r["vel"][0], vel, rtol=1e-8, atol=1e-8)
    # after 1 fs the atoms moved by about v * 1 fs
    moved = (r["pos"][1] - pos) / 1e-3
    assert np.sum(moved * vel) / (np.linalg.norm(moved) * np.linalg.norm(vel)) > 0.95
