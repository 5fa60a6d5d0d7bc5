"""Why a box run blew up: scan the distance between two atoms of different molecules, model vs GFN2-xTB.

Takes a frame of a box dump, the two atoms that collapsed (LAMMPS atom IDs, as the pair style's
overlapping-atoms error names them) and cuts out their two molecules (unwrapped by the minimum image).
Atom J's molecule is moved rigidly along the I-J line so that r(I, J) takes each value of --r; each
geometry is evaluated by the deployed model and by xtb (GFN2, the reference method). Writes
OUT/contact_scan.png (E(r) of both, relative to the largest r) and OUT/contact_scan.json, and prints the
closest intermolecular distances of the same atom kinds in the dimer training data for comparison.
usage: contact_scan.py DUMP MODEL I J OUT [--frame -1] [--mol-size 21] [--r 2.4 2.0 ...]
"""
import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from ase import Atoms  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from box_analysis import read_dump  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent / "data"))
from generate_xtb import single_point  # noqa: E402

SYMBOL = {1: "H", 2: "C", 3: "O"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dump")
    ap.add_argument("model")
    ap.add_argument("i", type=int)
    ap.add_argument("j", type=int)
    ap.add_argument("out")
    ap.add_argument("--frame", type=int, default=-1)
    ap.add_argument("--mol-size", type=int, default=21)
    ap.add_argument("--r", type=float, nargs="+",
                    default=[2.6, 2.2, 2.0, 1.8, 1.6, 1.4, 1.2, 1.0, 0.8, 0.6, 0.4, 0.2])
    ap.add_argument("--dimer-data", default=str(Path(__file__).resolve().parent / "data" / "aspirin_xtb_dimer_train.npz"))
    a = ap.parse_args()
    from deqformer.ase_calculator import DeqformerCalculator

    _, boxes, frames, types = read_dump(a.dump)
    pos, box = frames[a.frame], boxes[a.frame]
    i, j = a.i - 1, a.j - 1
    mi, mj = i // a.mol_size, j // a.mol_size
    if mi == mj:
        raise SystemExit("atoms I and J are in the same molecule")

    def molecule(m, anchor):
        idx = np.arange(m * a.mol_size, (m + 1) * a.mol_size)
        p = pos[idx] - anchor
        p -= box * np.round(p / box)
        return idx, p + anchor

    ii, pi_ = molecule(mi, pos[i])
    jj, pj = molecule(mj, pos[i])      # both unwrapped around atom I
    sym = [SYMBOL[t] for t in types[ii]] + [SYMBOL[t] for t in types[jj]]
    ri, rj = pi_[i - ii[0]], pj[j - jj[0]]
    u = (rj - ri) / np.linalg.norm(rj - ri)
    r0 = float(np.linalg.norm(rj - ri))
    calc = DeqformerCalculator(a.model)
    rows = []
    work = Path(tempfile.mkdtemp(prefix="contact_scan_"))
    for r in a.r:
        shifted = pj + (r - r0) * u
        geo = np.vstack([pi_, shifted])
        atoms = Atoms(sym, positions=geo)
        atoms.calc = calc
        e_model = float(atoms.get_potential_energy())
        f_model = atoms.get_forces()
        e_ref, f_ref = single_point(sym, geo, work / f"r{r:.2f}", 1)
        rows.append({"r": r, "e_model": e_model, "e_xtb": e_ref,
                     "f_model_J_along": float(f_model[a.mol_size + (j - jj[0])] @ u),
                     "f_xtb_J_along": float(np.asarray(f_ref)[a.mol_size + (j - jj[0])] @ u)})
        print(f"r = {r:.2f} A: model {e_model:.4f} eV, xtb {e_ref:.4f} eV", flush=True)
    rs = np.array([x["r"] for x in rows])
    em = np.array([x["e_model"] for x in rows])
    ex = np.array([x["e_xtb"] for x in rows])
    k = int(np.argmax(rs))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(rs, em - em[k], "o-", label="deqformer model")
    ax.plot(rs, ex - ex[k], "s-", label="GFN2-xTB")
    ax.set_xlabel(f"r(atom {a.i}, atom {a.j}) (Angstrom)")
    ax.set_ylabel(f"E - E(r = {rs[k]:.1f} A) (eV)")
    ax.set_title(f"{sym[i - ii[0]]}-{sym[a.mol_size + j - jj[0]]} contact between two molecules")
    ax.set_ylim(min((em - em[k]).min(), -1.0) - 0.5, max(10.0, 0.0))
    ax.legend()
    fig.tight_layout()
    os.makedirs(a.out, exist_ok=True)
    fig.savefig(os.path.join(a.out, "contact_scan.png"), dpi=120)
    result = {"atoms": [a.i, a.j], "r_in_frame": r0, "scan": rows}
    if os.path.exists(a.dimer_data):
        d = np.load(a.dimer_data)
        z = d["nuclear_charges"]
        zi = {"H": 1, "C": 6, "O": 8}
        si, sj = sym[i - ii[0]], sym[a.mol_size + j - jj[0]]
        n = len(z) // 2
        A = np.where(z[:n] == zi[si])[0]
        B = n + np.where(z[n:] == zi[sj])[0]
        dd = np.linalg.norm(d["coords"][:, A][:, :, None] - d["coords"][:, B][:, None, :], axis=-1)
        result["training_dimers_min_intermolecular_" + si + sj] = float(dd.min())
    with open(os.path.join(a.out, "contact_scan.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({k: v for k, v in result.items() if k != "scan"}))


if __name__ == "__main__":
    main()
