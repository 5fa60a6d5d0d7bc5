"""Vibrational checks of an MD trajectory against a reference one: bond-stretch frequencies from the
power spectra of bond lengths, and the vibrational density of states (mass-weighted velocity spectrum).

Both trajectories must be sampled densely (1 fs gives spectra up to 16,700 cm^-1; the O-H stretch sits
near 3,500 cm^-1, so 10 fs frames alias it). Peak positions are located on a zero-padded, Hann-windowed
spectrum and refined by a parabola through the highest bin and its neighbours.
"""
from typing import Dict, List, Tuple

import numpy as np

CM1_PER_THZ = 33.35641
MASS = {1: 1.008, 6: 12.011, 8: 15.999}

# stretch bands: (name, element pair, rule on the reference length, search window in cm^-1)
STRETCHES = (
    ("O-H stretch", (1, 8), lambda r: r < 1.2, (2400.0, 4300.0)),
    ("C=O stretch", (6, 8), lambda r: r < 1.26, (1350.0, 2200.0)),
)


def stretch_pairs(z: np.ndarray, pos: np.ndarray) -> Dict[str, List[Tuple[int, int]]]:
    """The bonded pairs of each stretch band, found in a reference geometry."""
    out = {}
    for name, (za, zb), rule, _ in STRETCHES:
        pairs = []
        for i in range(len(z)):
            for j in range(len(z)):
                if (z[i], z[j]) == (za, zb) and rule(float(np.linalg.norm(pos[i] - pos[j]))):
                    pairs.append((i, j))
        out[name] = pairs
    return out


def power_spectrum(series: np.ndarray, dt_fs: float, pad: int = 8) -> Tuple[np.ndarray, np.ndarray]:
    """(wavenumbers in cm^-1, power) of a series [T, ...] sampled every dt_fs, summed over the other axes;
    mean removed, Hann window, zero-padded ``pad`` times."""
    x = series - series.mean(axis=0)
    w = np.hanning(len(x)).reshape((-1,) + (1,) * (x.ndim - 1))
    n = pad * len(x)
    spec = np.abs(np.fft.rfft(x * w, n=n, axis=0)) ** 2
    spec = spec.reshape(spec.shape[0], -1).sum(axis=1)
    nu = np.fft.rfftfreq(n, d=dt_fs * 1e-3) * CM1_PER_THZ     # 1/ps = THz
    return nu, spec


def peak(nu: np.ndarray, spec: np.ndarray, window: Tuple[float, float]) -> float:
    """Position (cm^-1) of the highest peak of spec inside window."""
    sel = np.where((nu >= window[0]) & (nu <= window[1]))[0]
    if len(sel) < 3:
        raise ValueError(f"spectrum has no points in {window} cm^-1 (sampling too coarse?)")
    k = sel[np.argmax(spec[sel])]
    if 0 < k < len(spec) - 1:
        a, b, c = spec[k - 1], spec[k], spec[k + 1]
        den = a - 2 * b + c
        if den != 0:
            return float(nu[k] + 0.5 * (a - c) / den * (nu[1] - nu[0]))
    return float(nu[k])


def stretch_frequencies(z: np.ndarray, traj: np.ndarray, dt_fs: float,
                        pairs: Dict[str, List[Tuple[int, int]]]) -> Dict[str, float]:
    """Peak of each band's bond-length power spectrum (cm^-1), summed over the band's bonds."""
    out = {}
    for name, _, _, window in STRETCHES:
        if not pairs.get(name):
            continue
        r = np.stack([np.linalg.norm(traj[:, i] - traj[:, j], axis=1) for i, j in pairs[name]], axis=1)
        nu, spec = power_spectrum(r, dt_fs)
        out[name] = peak(nu, spec, window)
    return out


def vdos(z: np.ndarray, vel: np.ndarray, dt_fs: float) -> Tuple[np.ndarray, np.ndarray]:
    """Mass-weighted velocity power spectrum [T, N, 3] -> (cm^-1, normalised density)."""
    m = np.array([MASS[int(k)] for k in z])
    nu, spec = power_spectrum(vel * np.sqrt(m)[None, :, None], dt_fs)
    return nu, spec / np.trapz(spec, nu)
