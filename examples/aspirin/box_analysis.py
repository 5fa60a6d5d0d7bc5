"""Plots and numbers of a box of aspirin molecules (in.aspirin_box), under OUT_DIR:

  TAG_temperature.png   temperature through NVT and NVE (target 500 K)
  TAG_nve_drift.png     total energy per atom in NVE and its linear drift
  TAG_rdf_OO.png        intermolecular O-O radial distribution function (last NVT picosecond + NVE)
  TAG_iterations.png    forward/adjoint solver iterations per step
  TAG_summary.json      the numbers behind them (mean/std temperature, drift, iterations, closest contacts:
                        per element pair, the closest two atoms of different molecules in the run and in
                        the dimer training data, and how many frames came closer than the data ever did;
                        the O-O g(r)'s onset, where it reaches 1 and its first peak if it has one)
usage: box_analysis.py OUT_DIR [--tag box_dense] [--mol-size 21] [--rdf-from-ps 1.0] [--dimer-data NPZ ...]

Molecules are consecutive runs of --mol-size atom IDs (as in data/aspirin_27*.data); atom types 3 are O.
"""
import argparse
import json
import os

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

O_TYPE = 3
SYMBOL_OF_TYPE = {1: "H", 2: "C", 3: "O"}          # the LAMMPS types of data/aspirin_27*.data
SYMBOL_OF_Z = {1: "H", 6: "C", 8: "O"}
DIMER_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "aspirin_xtb_dimer_train.npz")


def closest_intermolecular(frames, boxes, symbols, mol_size):
    """Per frame and element pair ('H-O', ...), the closest two atoms of different molecules
    (minimum image when boxes is given). Returns {pair: array [frames]}."""
    symbols = np.asarray(symbols)
    mol = np.arange(len(symbols)) // mol_size
    other = mol[:, None] != mol[None, :]
    order = "HCO"
    out = {}
    for k, pos in enumerate(frames):
        d = pos[:, None, :] - pos[None, :, :]
        if boxes is not None:
            d -= boxes[k] * np.round(d / boxes[k])
        r = np.linalg.norm(d, axis=-1)
        for a in order:
            for b in order[order.index(a):]:
                m = other & (symbols[:, None] == a) & (symbols[None, :] == b)
                if m.any():
                    out.setdefault(f"{a}-{b}", np.full(len(frames), np.inf))[k] = r[m].min()
    return out


def load_dat(path):
    return np.loadtxt(path, comments="#", ndmin=2) if os.path.exists(path) else None


def read_dump(path, columns=("x", "y", "z")):
    """Frames [frames, atoms, len(columns)] of the named per-atom columns of a LAMMPS text dump (its header
    must list id and type), sorted by id, with their timesteps, box lengths and the atom types."""
    steps, boxes, frames, types = [], [], [], None
    with open(path) as fh:
        while True:
            line = fh.readline()
            if not line:
                break
            if line.startswith("ITEM: TIMESTEP"):
                steps.append(int(fh.readline()))
            elif line.startswith("ITEM: NUMBER OF ATOMS"):
                n = int(fh.readline())
            elif line.startswith("ITEM: BOX BOUNDS"):
                if "xy" in line:
                    raise SystemExit(f"{path}: triclinic boxes are not supported here")
                lo_hi = [list(map(float, fh.readline().split()[:2])) for _ in range(3)]
                boxes.append([hi - lo for lo, hi in lo_hi])
            elif line.startswith("ITEM: ATOMS"):
                names = line.split()[2:]
                missing = [c for c in ("id", "type") + tuple(columns) if c not in names]
                if missing:
                    raise SystemExit(f"{path}: the dump has no column {', '.join(missing)} (it has {' '.join(names)})")
                rows = np.array([fh.readline().split() for _ in range(n)], dtype=float)
                rows = rows[np.argsort(rows[:, names.index("id")])]
                types = rows[:, names.index("type")].astype(int)
                frames.append(rows[:, [names.index(c) for c in columns]])
    return np.array(steps), np.array(boxes), np.array(frames), types


def intermolecular_rdf(frames, boxes, types, mol_size, r_max=8.0, nbins=80):
    """g(r) of O-O pairs in different molecules, minimum image, averaged over frames."""
    o = np.where(types == O_TYPE)[0]
    mol = o // mol_size
    other = mol[:, None] != mol[None, :]
    iu = np.triu_indices(len(o), 1)
    pair_other = other[iu]
    edges = np.linspace(0.0, r_max, nbins + 1)
    hist = np.zeros(nbins)
    rmin = np.inf
    for pos, box in zip(frames, boxes):
        d = pos[o][:, None, :] - pos[o][None, :, :]
        d -= box * np.round(d / box)
        r = np.linalg.norm(d, axis=-1)[iu][pair_other]
        rmin = min(rmin, float(r.min()))
        hist += np.histogram(r, bins=edges)[0]
    n_pairs = pair_other.sum()
    vol = np.mean(np.prod(boxes, axis=1))
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    g = hist / len(frames) / (n_pairs / vol * shell)
    return 0.5 * (edges[1:] + edges[:-1]), g, rmin


def rdf_shape(r, g, smooth: int = 3, prominence: float = 0.2):
    """The features of g(r) that survive noise: where it first reaches 0.1 (onset) and 1 (bulk density), and
    its first peak: the first local maximum of the `smooth`-bin moving average that stands above bulk
    density (1) and at least `prominence` above the lowest point after it (before g climbs higher again).
    None where absent, e.g. a curve that climbs to 1 with shoulders but no peak; the global maximum of a
    noisy tail is not a peak (0.2 is 4-10x the bin-to-bin noise of 11-41 frames of the 27-molecule box)."""
    r, g = np.asarray(r, float), np.asarray(g, float)
    gs = np.convolve(np.pad(g, smooth // 2, mode="edge"), np.ones(smooth) / smooth, mode="valid")

    def first_at_least(level):
        hit = np.nonzero(gs >= level)[0]
        return float(r[hit[0]]) if len(hit) else None

    peak = None
    for i in range(1, len(gs) - 1):
        if gs[i] < 1.0 or not (gs[i] >= gs[i - 1] and gs[i] > gs[i + 1]):
            continue
        after = gs[i + 1:]
        higher = np.nonzero(after > gs[i])[0]
        dip = after[: higher[0]] if len(higher) else after
        if gs[i] - dip.min() >= prominence:
            peak = (float(r[i]), float(gs[i]))
            break
    return {"onset_A": first_at_least(0.1), "reaches_1_A": first_at_least(1.0),
            "first_peak_A": peak[0] if peak else None, "first_peak_g": peak[1] if peak else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--tag", default="box_dense")
    ap.add_argument("--mol-size", type=int, default=21)
    ap.add_argument("--rdf-from-ps", type=float, default=1.0, help="RDF frames from this time on (ps)")
    ap.add_argument("--dimer-data", nargs="+", default=[DIMER_DATA],
                    help="rMD17-keyed npz files of dimers (two molecules of --mol-size atoms) the model was trained on")
    a = ap.parse_args()
    out, tag = a.out, a.tag
    nvt, nve = load_dat(f"{out}/{tag}_nvt.dat"), load_dat(f"{out}/{tag}_nve.dat")
    if nvt is None:
        raise SystemExit(f"{out}/{tag}_nvt.dat not found: run in.aspirin_box with -var tag {tag} first")
    natoms = None
    summary = {"tag": tag}

    # temperature
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(nvt[:, 1], nvt[:, 2], lw=0.8, label="NVT (Nose-Hoover, 500 K)")
    if nve is not None:
        ax.plot(nve[:, 1], nve[:, 2], lw=0.8, label="NVE")
    ax.axhline(500.0, color="k", ls=":", lw=0.8)
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("temperature (K)")
    ax.set_title(f"{tag}: temperature")
    ax.legend()
    fig.tight_layout()
    fig.savefig(f"{out}/{tag}_temperature.png", dpi=120)
    plt.close(fig)
    half = nvt[nvt[:, 1] >= nvt[-1, 1] / 2]
    summary["nvt_ps"] = float(nvt[-1, 1] - nvt[0, 1])
    summary["nvt_temperature_second_half_mean_K"] = float(half[:, 2].mean())
    summary["nvt_temperature_second_half_std_K"] = float(half[:, 2].std())
    summary["nvt_temperature_max_K"] = float(nvt[:, 2].max())

    # iterations
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for dat, name in ((nvt, "NVT"), (nve, "NVE")):
        if dat is not None:
            ax.plot(dat[:, 1], dat[:, 5], lw=0.6, label=f"{name} forward")
            ax.plot(dat[:, 1], dat[:, 6], lw=0.6, label=f"{name} adjoint")
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("solver iterations")
    ax.legend(ncol=2)
    fig.tight_layout()
    fig.savefig(f"{out}/{tag}_iterations.png", dpi=120)
    plt.close(fig)
    summary["fwd_iters_mean"] = float(np.concatenate([d[:, 5] for d in (nvt, nve) if d is not None]).mean())
    summary["adj_iters_mean"] = float(np.concatenate([d[:, 6] for d in (nvt, nve) if d is not None]).mean())

    # dump: RDF and closest contacts
    dump = f"{out}/{tag}.lammpstrj"
    steps, boxes, frames, types = read_dump(dump) if os.path.exists(dump) else (None, None, [], None)
    if types is None:
        print(f"note: no frames in {dump} (a run shorter than the dump interval): no RDF or contact figures")
    else:
        natoms = len(types)
        dt_ps = float(nvt[1, 1] - nvt[0, 1]) / float(nvt[1, 0] - nvt[0, 0]) if len(nvt) > 1 else 0.0005
        t0 = nvt[0, 1] - nvt[0, 0] * dt_ps
        times = t0 + steps * dt_ps
        keep = times >= t0 + a.rdf_from_ps
        if keep.sum() == 0:
            keep[:] = True
        r, g, rmin = intermolecular_rdf(frames[keep], boxes[keep], types, a.mol_size)
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(r, g)
        ax.axhline(1.0, color="k", ls=":", lw=0.8)
        ax.set_xlabel("r (Angstrom)")
        ax.set_ylabel("g(r), O-O between molecules")
        ax.set_title(f"{tag}: {int(keep.sum())} frames from {times[keep][0]:.2f} ps to {times[keep][-1]:.2f} ps")
        fig.tight_layout()
        fig.savefig(f"{out}/{tag}_rdf_OO.png", dpi=120)
        plt.close(fig)
        summary["rdf_frames"] = int(keep.sum())
        summary["rdf_OO"] = rdf_shape(r, g)
        summary["closest_intermolecular_OO_A"] = rmin
        run = closest_intermolecular(frames, boxes, [SYMBOL_OF_TYPE[t] for t in types], a.mol_size)
        summary["closest_intermolecular_A"] = {k: round(float(v.min()), 4) for k, v in run.items()}
        ref = {}
        for path in [p for p in a.dimer_data if os.path.exists(p)]:
            dimers = np.load(path)
            part = closest_intermolecular(dimers["coords"], None, [SYMBOL_OF_Z[int(z)] for z in dimers["nuclear_charges"]],
                                          a.mol_size)
            for k, v in part.items():
                ref[k] = np.concatenate([ref[k], v]) if k in ref else v
        if ref:
            summary["training_dimer_files"] = [os.path.basename(p) for p in a.dimer_data]
            summary["training_dimers_closest_intermolecular_A"] = {k: round(float(v.min()), 4) for k, v in ref.items()}
            summary["frames_closer_than_training_dimers"] = {
                k: int((v < ref[k].min()).sum()) for k, v in run.items() if k in ref}
            summary["frames_total"] = len(frames)

    # NVE drift
    if nve is not None and len(nve) > 2:
        n = natoms or 1
        t = nve[:, 1] - nve[0, 1]
        e = (nve[:, 4] - nve[0, 4]) / n * 1000.0   # meV/atom
        slope = float(np.polyfit(t, e, 1)[0]) if t[-1] > 0 else 0.0
        fig, ax = plt.subplots(figsize=(7, 3.2))
        ax.plot(t, e, lw=0.8, label="total energy")
        ax.plot(t, slope * t, ls="--", label=f"drift {slope:.3f} meV/atom/ps")
        ax.set_xlabel("NVE time (ps)")
        ax.set_ylabel("E - E(0) (meV/atom)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(f"{out}/{tag}_nve_drift.png", dpi=120)
        plt.close(fig)
        summary["nve_ps"] = float(t[-1])
        summary["nve_drift_meV_per_atom_per_ps"] = slope
        summary["nve_max_deviation_meV_per_atom"] = float(np.abs(e).max())
        summary["nve_temperature_mean_K"] = float(nve[:, 2].mean())
    summary["atoms"] = natoms
    with open(f"{out}/{tag}_summary.json", "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
