#!/usr/bin/env python3
"""Reference data where a box run went beyond the training data: dimers cut out of a box trajectory.

For every frame of a LAMMPS dump of aspirin molecules (in.aspirin_box), each pair of molecules whose
closest intermolecular contact of some element pair is shorter than the closest such contact in the
dimer training data is cut out (both molecules unwrapped around the first by the minimum image) and
recomputed with GFN2-xTB (single point with gradient). These are the geometries the model had to
extrapolate to; adding them to the training data is one round of active learning.

    contact_dimers.py ../out/box_dense/box_dense.lammpstrj --out contact/ [--max 400] [--workers 2]
        [--dimer-data aspirin_xtb_dimer_train.npz aspirin_xtb_contact_box.npz]

Writes OUT/NAME.npz (rMD17 keys, eV and eV/Angstrom, 2 x --mol-size atoms per frame), NAME_md17.npz and
NAME.extxyz, as generate_xtb.py does. Dump atom types 1, 2, 3 are H, C, O (data/aspirin_27*.data).
"""
import argparse
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from box_analysis import SYMBOL_OF_TYPE, SYMBOL_OF_Z, closest_intermolecular, read_dump  # noqa: E402
from generate_xtb import SYMBOLS, single_point, write_dataset  # noqa: E402


def contact_pairs(pos, box, symbols, mol_size, limits):
    """(m1, m2, pair, r) for each pair of molecules with a contact closer than limits[pair]."""
    n_mol = len(symbols) // mol_size
    found = []
    for m1 in range(n_mol):
        for m2 in range(m1 + 1, n_mol):
            idx = np.r_[m1 * mol_size:(m1 + 1) * mol_size, m2 * mol_size:(m2 + 1) * mol_size]
            sub = closest_intermolecular([pos[idx]], np.array([box]), [symbols[i] for i in idx], mol_size)
            worst = min(((v[0] / limits[k], k, v[0]) for k, v in sub.items() if k in limits), default=None)
            if worst is not None and worst[0] < 1.0:
                found.append((m1, m2, worst[1], float(worst[2])))
    return found


def cut_dimer(pos, box, m1, m2, mol_size):
    """Both molecules, each made whole around its own first atom, the second one moved to the periodic
    image whose centre is closest to the first one's."""
    parts = []
    for m in (m1, m2):
        p = pos[m * mol_size:(m + 1) * mol_size]
        d = p - p[0]
        parts.append(p[0] + d - box * np.round(d / box))
    d = parts[1].mean(axis=0) - parts[0].mean(axis=0)
    parts[1] -= box * np.round(d / box)
    return np.vstack(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dump", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--name", default="aspirin_xtb_contact")
    ap.add_argument("--mol-size", type=int, default=21)
    ap.add_argument("--dimer-data", type=Path, nargs="+", default=[HERE / "aspirin_xtb_dimer_train.npz"],
                    help="the dimer training files (rMD17 keys); the closest contact of each element pair over "
                         "all of them is its limit (give every dimer file the model trained on)")
    ap.add_argument("--max", type=int, default=400, help="at most this many dimers, spread over the frames")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    if shutil.which("xtb") is None:
        sys.exit("xtb not found: apt-get install xtb")
    limits = {}
    for path in a.dimer_data:
        ref = np.load(path)
        for k, v in closest_intermolecular(ref["coords"], None, [SYMBOL_OF_Z[int(z)] for z in ref["nuclear_charges"]],
                                           a.mol_size).items():
            limits[k] = min(limits.get(k, np.inf), float(v.min()))
    steps, boxes, frames, types = read_dump(a.dump)
    symbols = [SYMBOL_OF_TYPE[int(t)] for t in types]
    per_mol = np.array(symbols).reshape(-1, a.mol_size)
    if not (per_mol == per_mol[0]).all():
        sys.exit(f"{a.dump}: the molecules do not all list their atoms in the same order; the npz needs one order")
    picked = []
    for k, (pos, box) in enumerate(zip(frames, boxes)):
        for m1, m2, pair, r in contact_pairs(pos, box, symbols, a.mol_size, limits):
            picked.append((k, m1, m2, pair, r))
    if not picked:
        sys.exit("no contact closer than the training dimers: nothing to add")
    keep = np.unique(np.linspace(0, len(picked) - 1, min(a.max, len(picked))).astype(int))
    picked = [picked[i] for i in keep]
    by_pair = {}
    for p in picked:
        by_pair[p[3]] = by_pair.get(p[3], 0) + 1
    print(f"{len(picked)} dimers from {len(frames)} frames (closest contact kinds: {by_pair}); limits {limits}")
    geoms = [cut_dimer(frames[k], boxes[k], m1, m2, a.mol_size) for k, m1, m2, _, _ in picked]
    dimer_symbols = symbols[:a.mol_size] * 2
    a.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="xtb_contact_") as tmp:
        def job(i):
            try:
                return single_point(dimer_symbols, geoms[i], Path(tmp) / f"sp_{i}", 1)
            except RuntimeError as e:      # xtb crashed or its SCF did not converge: skip it, say so
                return str(e).strip().splitlines()[-1][:200]

        with ThreadPoolExecutor(max_workers=a.workers) as pool:
            results = list(pool.map(job, range(len(geoms))))
    ok = [i for i, r in enumerate(results) if not isinstance(r, str)]
    failed = [(picked[i][0], picked[i][1] + 1, picked[i][2] + 1, results[i]) for i in range(len(results)) if i not in ok]
    for k, m1, m2, why in failed:
        print(f"skipped frame {k}, molecules {m1} and {m2}: xtb failed ({why})")
    if not ok:
        sys.exit("xtb failed on every dimer")
    z = np.array([SYMBOLS[s] for s in dimer_symbols], dtype=np.int64)
    write_dataset(a.out, a.name, z, np.stack([geoms[i] for i in ok]), np.array([results[i][0] for i in ok]),
                  np.stack([results[i][1] for i in ok]))
    print(f"{len(ok)} dimers recomputed, {len(failed)} skipped")


if __name__ == "__main__":
    main()
