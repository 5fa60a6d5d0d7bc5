"""Plots and numbers of the aspirin example (everything under out/).

  training.png      training/validation force MAE and solver iterations per epoch
  nve_drift.png     total energy in NVE (and its linear drift)
  temperature.png   temperature through NVT and NVE
  iterations.png    solver iterations per MD step, cold start vs reuse of the previous fixed point
  force_parity.png  predicted vs reference forces on held-out frames (exact adjoint forces)
  bonds.png         bond-length and C-C-C angle distributions: LAMMPS NVE vs GFN2-xTB NVE from the same
                    microstate (out/xtb_nve.npz from xtb_reference.py) and vs the data's test frames
  vdos.png          vibrational density of states of both NVE runs, with the O-H and C=O stretch peaks
  summary.json      the numbers behind them
usage: analysis.py OUT_DIR [--model OUT_DIR/aspirin.pt] [--test-npz OUT_DIR/data/aspirin_test_md.npz]
"""
import argparse
import csv
import json
import os

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from box_analysis import read_dump  # noqa: E402
from vibrations import stretch_frequencies, stretch_pairs, vdos  # noqa: E402

SYMBOL = {1: "H", 6: "C", 8: "O"}
LAMMPS_TYPES = {1: 1, 2: 6, 3: 8}       # data files: 1=H 2=C 3=O


def load_dat(path):
    if not os.path.exists(path):
        return None
    return np.loadtxt(path, comments="#", ndmin=2)


def read_lammpstrj(path):
    """Positions [frames, atoms, 3] (sorted by atom id) and the atom types of a LAMMPS text dump."""
    _, _, frames, types = read_dump(path)
    return frames, types


def bonds_of(z, pos):
    """Bonded pairs (by distance in a reference geometry) grouped by element pair."""
    out = {}
    for i in range(len(z)):
        for j in range(i + 1, len(z)):
            d = np.linalg.norm(pos[i] - pos[j])
            hyd = 1 in (z[i], z[j])
            if d < (1.2 if hyd else 1.65):
                key = "-".join(sorted((SYMBOL[z[i]], SYMBOL[z[j]])))
                out.setdefault(key, []).append((i, j))
    return out


def ccc_angles(z, pos):
    bonded = {i: set() for i in range(len(z))}
    for pairs in bonds_of(z, pos).values():
        for i, j in pairs:
            bonded[i].add(j)
            bonded[j].add(i)
    return [(a, b, c) for b in range(len(z)) if z[b] == 6 for a in bonded[b] for c in bonded[b]
            if a < c and z[a] == 6 and z[c] == 6]


def geometry_samples(z, traj, ref_pos):
    bonds = bonds_of(z, ref_pos)
    res = {k: np.concatenate([np.linalg.norm(traj[:, i] - traj[:, j], axis=1) for i, j in v]) for k, v in bonds.items()}
    ang = []
    for a, b, c in ccc_angles(z, ref_pos):
        u, v = traj[:, a] - traj[:, b], traj[:, c] - traj[:, b]
        ang.append(np.degrees(np.arccos(np.sum(u * v, 1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1))))
    res["C-C-C angle"] = np.concatenate(ang) if ang else np.zeros(0)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--model", default=None)
    ap.add_argument("--test-npz", default=None)
    ap.add_argument("--parity-frames", type=int, default=150)
    ap.add_argument("--timestep-fs", type=float, default=0.5, help="the MD timestep of in.aspirin")
    a = ap.parse_args()
    out = a.out
    model = a.model or os.path.join(out, "aspirin.pt")
    test_npz = a.test_npz or os.path.join(out, "data", "aspirin_test_md.npz")
    summary = {}

    # training curve
    csv_path = os.path.join(out, "train", "metrics_epoch.csv")
    if os.path.exists(csv_path):
        rows = list(csv.DictReader(open(csv_path)))
        ep = [int(r["epoch"]) for r in rows]
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        ax[0].plot(ep, [1000 * float(r["train_f_mae"]) for r in rows], label="train")
        ax[0].plot(ep, [1000 * float(r["val_f_mae"]) for r in rows], label="validation")
        ax[0].set_yscale("log"); ax[0].set_xlabel("epoch"); ax[0].set_ylabel("force MAE (meV/Å)"); ax[0].legend()
        ax[1].plot(ep, [float(r["mean_solver_iters"]) for r in rows], label="train (warm-started)")
        ax[1].plot(ep, [float(r["val_mean_solver_iters"]) for r in rows], label="validation")
        ax[1].set_xlabel("epoch"); ax[1].set_ylabel("forward solver iterations"); ax[1].legend()
        fig.tight_layout(); fig.savefig(os.path.join(out, "training.png"), dpi=110); plt.close(fig)
        summary["training_wall_time_s"] = float(rows[-1]["wall_time_s"])
        summary["epochs"] = ep[-1]

    nvt, nve = load_dat(os.path.join(out, "md_reuse_nvt.dat")), load_dat(os.path.join(out, "md_reuse_nve.dat"))
    cold = load_dat(os.path.join(out, "md_cold_nvt.dat"))
    if nve is not None and len(nve) > 2:
        t, etot = nve[:, 1], nve[:, 5]
        slope = np.polyfit(t, etot, 1)[0]              # eV / ps
        summary["nve_ps"] = float(t[-1] - t[0])
        summary["nve_drift_eV_per_ps"] = float(slope)
        summary["nve_drift_meV_per_atom_per_ps"] = float(1000 * slope / 21)
        summary["nve_etotal_std_meV"] = float(1000 * np.std(etot))
        summary["nve_etotal_max_dev_meV"] = float(1000 * np.max(np.abs(etot - etot[0])))
        fig, (ax, ax2) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
        ax.plot(t, 1000 * (etot - etot[0]), lw=0.8, label="E_total - E_total(0)")
        ax.plot(t, 1000 * slope * (t - t[0]), "k--", label=f"drift {1000 * slope / 21:.3f} meV/atom/ps")
        ax.set_ylabel("meV"); ax.set_title("NVE, 0.5 fs, deqformer (exact adjoint forces)")
        ax.legend()
        ax2.plot(t, 1000 * (nve[:, 3] - nve[0, 3]), lw=0.5, color="tab:orange", label="E_pot - E_pot(0)")
        ax2.set_xlabel("time (ps)"); ax2.set_ylabel("meV"); ax2.legend()
        fig.tight_layout(); fig.savefig(os.path.join(out, "nve_drift.png"), dpi=110); plt.close(fig)
    if nvt is not None:
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(nvt[:, 1], nvt[:, 2], lw=0.6, label="NVT 500 K")
        if nve is not None:
            ax.plot(nve[:, 1], nve[:, 2], lw=0.6, label="NVE")
        ax.axhline(500, color="k", lw=0.5)
        ax.set_xlabel("time (ps)"); ax.set_ylabel("T (K)"); ax.legend()
        fig.tight_layout(); fig.savefig(os.path.join(out, "temperature.png"), dpi=110); plt.close(fig)
        summary["nvt_mean_T"] = float(np.mean(nvt[len(nvt) // 2:, 2]))
    if nvt is not None and cold is not None:
        n = min(len(nvt), len(cold))
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(cold[:n, 0], cold[:n, 6], lw=0.7, label=f"cold start: forward {cold[1:n, 6].mean():.1f}, adjoint {cold[1:n, 7].mean():.1f}")
        ax.plot(nvt[:n, 0], nvt[:n, 6], lw=0.7, label=f"reuse: forward {nvt[1:n, 6].mean():.1f}, adjoint {nvt[1:n, 7].mean():.1f}")
        ax.set_xlabel("MD step"); ax.set_ylabel("forward iterations per step"); ax.legend()
        ax.set_title("fixed-point iterations per MD step (mean in legend)")
        fig.tight_layout(); fig.savefig(os.path.join(out, "iterations.png"), dpi=110); plt.close(fig)
        summary["iters_cold_forward"] = float(cold[1:n, 6].mean())
        summary["iters_cold_adjoint"] = float(cold[1:n, 7].mean())
        summary["iters_reuse_forward"] = float(nvt[1:n, 6].mean())
        summary["iters_reuse_adjoint"] = float(nvt[1:n, 7].mean())

    # cold single-frame solves and the contraction of the fixed-point map (deqformer-evaluate --fixed-point-frames)
    eval_path = os.path.join(out, "eval_test.json")
    if os.path.exists(eval_path):
        fp = json.load(open(eval_path)).get("fixed_point")
        if fp:
            summary["fixed_point_test_frames"] = fp

    # force parity with the deployed model on held-out frames
    if os.path.exists(model) and os.path.exists(test_npz):
        from deqformer.data.batch import collate
        from deqformer import keys as K
        from deqformer.data.neighbors import build_graph
        from deqformer.deploy import load_deployed
        dm = load_deployed(model)
        d = np.load(test_npz)
        z = d["nuclear_charges"]
        tmap = {n: dm.type_names.index(SYMBOL[int(n)]) for n in set(z.tolist())}
        sel = np.linspace(0, len(d["energies"]) - 1, a.parity_frames).astype(int)
        fp, fr, ep, er = [], [], [], []
        for k in sel:
            pos = d["coords"][k]
            ei, sh = build_graph(pos, dm.r_max)
            frame = {K.POSITIONS: pos, K.ATOM_TYPES: np.array([tmap[int(v)] for v in z]), K.TOTAL_ENERGY: d["energies"][k],
                     K.FORCES: d["forces"][k], K.CELL: None, K.PBC: np.zeros(3, bool)}
            o = dm(collate([frame], [(ei, sh)], dm.dtype))
            fp.append(o[K.FORCES].detach().numpy()); fr.append(d["forces"][k])
            ep.append(float(o["energy"][0])); er.append(float(d["energies"][k]))
        fp, fr = np.concatenate(fp), np.concatenate(fr)
        summary["parity_frames"] = len(sel)
        summary["parity_f_mae_meV_per_A"] = float(1000 * np.abs(fp - fr).mean())
        fig, ax = plt.subplots(1, 2, figsize=(10, 4.5))
        ax[0].plot(fr.ravel(), fp.ravel(), ".", ms=1, alpha=0.4)
        lim = np.abs(fr).max() * 1.05
        ax[0].plot([-lim, lim], [-lim, lim], "k-", lw=0.5)
        ax[0].set_xlabel("GFN2-xTB force (eV/Å)"); ax[0].set_ylabel("deqformer force (eV/Å)")
        ax[0].set_title(f"held-out MD frames: MAE {1000 * np.abs(fp - fr).mean():.1f} meV/Å")
        ep, er = np.array(ep), np.array(er)
        ax[1].plot(er - er.mean(), ep - er.mean(), ".", ms=3)
        ax[1].plot([(er - er.mean()).min(), (er - er.mean()).max()], [(er - er.mean()).min(), (er - er.mean()).max()], "k-", lw=0.5)
        ax[1].set_xlabel("GFN2-xTB energy - mean (eV)"); ax[1].set_ylabel("deqformer energy - mean (eV)")
        ax[1].set_title(f"energy MAE {1000 * np.abs(ep - er).mean():.1f} meV")
        fig.tight_layout(); fig.savefig(os.path.join(out, "force_parity.png"), dpi=110); plt.close(fig)

    # geometry and vibrations: the LAMMPS NVE run against GFN2-xTB NVE from the same microstate
    # (xtb_reference.py), and, for context, against the test trajectory of the data
    traj_path = os.path.join(out, "md_reuse.lammpstrj")
    ref_path = os.path.join(out, "xtb_nve.npz")
    if os.path.exists(traj_path) and os.path.exists(test_npz):
        steps, _, frames, types = read_dump(traj_path, ("x", "y", "z", "vx", "vy", "vz"))
        traj, vel = frames[:, :, :3], frames[:, :, 3:]
        dt_fs = float(steps[1] - steps[0]) * a.timestep_fs if len(steps) > 1 else a.timestep_fs
        d = np.load(test_npz)
        zl = np.array([LAMMPS_TYPES[t] for t in types])
        # the LAMMPS data file and the npz list atoms in the same order (O O O O C x9 H x8)
        assert (zl == d["nuclear_charges"]).all(), "atom order of the LAMMPS data file differs from the reference"
        ref0 = d["coords"][0]
        md = geometry_samples(zl, traj, ref0)
        data = geometry_samples(zl, d["coords"], ref0)
        xtb = None
        if os.path.exists(ref_path):
            r = np.load(ref_path)
            assert (r["z"] == zl).all(), f"{ref_path} is not of this molecule"
            xtb = geometry_samples(zl, r["pos"], ref0)
        keys = list(md)
        fig, axs = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.4))
        summary["geometry"], summary["geometry_dataset"] = {}, {}
        for ax, k in zip(np.atleast_1d(axs), keys):
            both = np.concatenate([md[k], data[k]] + ([xtb[k]] if xtb else []))
            bins = np.linspace(*np.percentile(both, [0.5, 99.5]), 50)
            if xtb:
                ax.hist(xtb[k], bins, density=True, alpha=0.5, label="GFN2-xTB NVE, same start")
            ax.hist(data[k], bins, density=True, histtype="step", ls="--", color="gray", label="data: test frames")
            ax.hist(md[k], bins, density=True, histtype="step", lw=1.5, label="deqformer NVE (LAMMPS)")
            ax.set_title(k + (" (deg)" if "angle" in k else " (Å)"))
            summary["geometry_dataset"][k] = {"md_mean": float(md[k].mean()), "md_std": float(md[k].std()),
                                              "ref_mean": float(data[k].mean()), "ref_std": float(data[k].std())}
            if xtb:
                summary["geometry"][k] = {"md_mean": float(md[k].mean()), "md_std": float(md[k].std()),
                                          "ref_mean": float(xtb[k].mean()), "ref_std": float(xtb[k].std()),
                                          "std_ratio": float(md[k].std() / xtb[k].std()),
                                          "mean_diff": float(md[k].mean() - xtb[k].mean())}
        np.atleast_1d(axs)[0].legend(fontsize=7)
        fig.tight_layout(); fig.savefig(os.path.join(out, "bonds.png"), dpi=110); plt.close(fig)
        if xtb:
            bonds = {k: v for k, v in summary["geometry"].items() if "angle" not in k}
            summary["geometry_checks"] = {
                "reference": "GFN2-xTB NVE from the LAMMPS NVE start, same length and step",
                "max_std_ratio": max(max(v["std_ratio"], 1 / v["std_ratio"]) for v in bonds.values()),
                "max_abs_mean_diff_A": max(abs(v["mean_diff"]) for v in bonds.values())}
            summary["geometry_checks"]["spreads_within_1.3x"] = summary["geometry_checks"]["max_std_ratio"] <= 1.3
            summary["geometry_checks"]["means_within_0.005_A"] = \
                summary["geometry_checks"]["max_abs_mean_diff_A"] <= 0.005

            # stretch frequencies and the vibrational density of states
            pairs = stretch_pairs(zl, ref0)
            f_md = stretch_frequencies(zl, traj, dt_fs, pairs)
            f_ref = stretch_frequencies(zl, r["pos"], float(r["dt_fs"]), pairs)
            summary["stretch_peaks_cm1"] = {k: {"md": f_md[k], "ref": f_ref[k], "rel_diff": f_md[k] / f_ref[k] - 1}
                                            for k in f_md}
            summary["stretch_peaks_within_3pct"] = all(abs(v["rel_diff"]) <= 0.03
                                                       for v in summary["stretch_peaks_cm1"].values())
            nu_m, g_m = vdos(zl, vel, dt_fs)
            nu_r, g_r = vdos(zl, r["vel"], float(r["dt_fs"]))
            fig, ax = plt.subplots(figsize=(9, 4))
            ax.plot(nu_r, g_r, lw=0.8, label="GFN2-xTB NVE, same start")
            ax.plot(nu_m, g_m, lw=0.8, label="deqformer NVE (LAMMPS)")
            for k, v in summary["stretch_peaks_cm1"].items():
                ax.axvline(v["ref"], color="tab:blue", lw=0.5, ls=":")
                ax.axvline(v["md"], color="tab:orange", lw=0.5, ls=":")
                ax.text(v["ref"], ax.get_ylim()[1] * 0.9, f" {k}\n {v['md']:.0f} vs {v['ref']:.0f}", fontsize=7)
            ax.set_xlim(0, 4000); ax.set_xlabel("wavenumber (cm$^{-1}$)"); ax.set_ylabel("VDOS (normalised)")
            ax.set_title(f"vibrational density of states, {summary.get('nve_ps', len(traj) * dt_fs / 1000):.1f} ps NVE")
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0.55, 0.8))
            fig.tight_layout(); fig.savefig(os.path.join(out, "vdos.png"), dpi=110); plt.close(fig)

    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
