#!/usr/bin/env bash
# The aspirin example, end to end (the README's main job):
#   data split -> train (small CPU preset, <= 40 min) -> evaluate on a later, unseen part of the
#   trajectory -> deploy -> LAMMPS MD (NVT 500 K then NVE; reuse on and off) -> 27-molecule box on
#   2 MPI ranks -> plots -> side-by-side comparison (out/comparison.md; with Allegro when ALLEGRO_DIR is
#   set). Everything lands in examples/aspirin/out/.
# Environment: NVT_STEPS (1000), NVE_STEPS (4000), COLD_STEPS (400), BOX_STEPS (40), BOX_NVE_STEPS (20),
# BOX_MIN_STEPS (20), RETRAIN=1 (train again even if out/train finished), ALLEGRO_DIR (a venv made by
# Allegro's setup.sh: adds Allegro to the comparison, training it by the same rules into out/allegro unless
# ALLEGRO_MODEL names a deployed one; 40 more minutes). The defaults keep the whole job
# (cold build and 40-minute training included) inside 75 minutes on 2 cores (measured cold: 60 min; parts:
# build 14.5 min, training 39.7 min, the rest of this script 5.9 min; the current, larger preset with a
# warm build: 47.0 min, of which 6.8 min after training); longer runs: raise them.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$here"
out="$here/out"
mkdir -p "$out"
venv="$root/.venv/bin"
lmp="$root/build/bin/lmp"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OMP_WAIT_POLICY=PASSIVE
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
# shellcheck source=train_once.sh
source "$here/train_once.sh"

stamp "1/7 data: split the trajectory in time (training pool / independent test trajectory)"
"$venv/python" prepare_split.py data/aspirin_xtb_train.npz "$out/data"

train_once 2/7 aspirin.yaml train

stamp "3/7 deploy (float64 for MD, float32 for speed)"
# tolerance 3e-5 for both: the loosest whose forces differ from converged ones by < 1 % of the model's
# error and whose NVE drift matches theirs (benchmarks/tolerance_scan.py, docs/performance.md)
"$venv/deqformer-deploy" "$out/train/best.pth" "$out/aspirin.pt" --dtype float64 --tol 3e-5 --max-iter 60 > "$out/deploy.log"
"$venv/deqformer-deploy" "$out/train/best.pth" "$out/aspirin_f32.pt" --dtype float32 --tol 3e-5 --max-iter 60 >> "$out/deploy.log"

stamp "4/7 evaluate on the unseen test trajectory (frames 4000-4899) and on the validation split"
"$venv/deqformer-evaluate" --model "$out/aspirin.pt" --dataset-file "$out/data/aspirin_test_md.npz" \
  --key-mapping nuclear_charges=atomic_numbers coords=pos energies=total_energy forces=forces \
  --fixed-fields atomic_numbers --split all --fixed-point-frames 20 --json > "$out/eval_test.json"
"$venv/python" -c 'import json,sys; r=json.load(open(sys.argv[1])); f=r["fixed_point"]; print("test trajectory: %d frames, E MAE %.1f meV, F MAE %.1f meV/A, F RMSE %.1f meV/A, solver iterations %.1f per batch; cold single-frame solves: forward %.1f, adjoint %.1f; largest singular value of df/dz at z* %.3f" % (r["n_frames"], 1e3*r["e_mae"], 1e3*r["f_mae"], 1e3*r["f_rmse"], r["solver_iters_mean"], f["cold_forward_iters_mean"], f["cold_adjoint_iters_mean"], f["sigma_max_mean"]))' "$out/eval_test.json" | tee "$out/eval_test.txt"

stamp "5/7 LAMMPS: one molecule, NVT 500 K then NVE, reuse on; and a cold-start (reuse no) NVT run"
"$lmp" -in in.aspirin -log "$out/log.aspirin" -screen none -var model "$out/aspirin.pt" -var reuse yes \
  -var nvt "${NVT_STEPS:-1000}" -var nve "${NVE_STEPS:-4000}" -var tag reuse
"$lmp" -in in.aspirin -log "$out/log.aspirin_cold" -screen none -var model "$out/aspirin.pt" -var reuse no \
  -var nvt "${COLD_STEPS:-400}" -var nve 0 -var tag cold
stamp "   27 molecules (dilute box) on 2 MPI ranks"
mpirun -np 2 --oversubscribe $( [ "$(id -u)" = 0 ] && echo --allow-run-as-root ) -x OMP_NUM_THREADS=1 \
  "$lmp" -in in.aspirin_box -log "$out/log.aspirin_box" -screen none -var model "$out/aspirin.pt" \
  -var nvt "${BOX_STEPS:-40}" -var nve "${BOX_NVE_STEPS:-20}" -var minsteps "${BOX_MIN_STEPS:-20}" -var tag box

stamp "   GFN2-xTB NVE from the same microstate as the LAMMPS NVE run (reference for bonds and stretch frequencies)"
"$venv/python" xtb_reference.py "$out/md_reuse.lammpstrj" "$out/xtb_nve.npz" \
  --time-ps "$(awk -v n="${NVE_STEPS:-4000}" 'BEGIN { print n * 0.0005 }')" > "$out/xtb_nve.log" 2>&1 \
  || { cat "$out/xtb_nve.log"; exit 1; }
stamp "6/7 plots"
"$venv/python" analysis.py "$out"
stamp "7/7 comparison: deqformer float64/float32, reuse on/off${ALLEGRO_DIR:+, Allegro} (out/comparison.md)"
allegro=()
if [ -n "${ALLEGRO_DIR:-}" ]; then
  allegro_model=${ALLEGRO_MODEL:-$out/allegro/allegro.pth}
  if [ -z "${ALLEGRO_MODEL:-}" ] && { [ ! -f "$allegro_model" ] || [ "${RETRAIN:-0}" = 1 ]; }; then
    stamp "   training Allegro by the same rules (same frames, same wall-clock budget; train_allegro.py)"
    "$venv/python" train_allegro.py --allegro-dir "$ALLEGRO_DIR" --deqformer-config aspirin.yaml
  fi
  allegro=(--allegro-dir "$ALLEGRO_DIR" --allegro-model "$allegro_model")
fi
"$venv/python" compare.py --out "$out" "${allegro[@]}" > "$out/compare.log" 2>&1 || { tail -40 "$out/compare.log"; exit 1; }
sed -n '/^| variant/,$p' "$out/comparison.md"
stamp "done: see $out (*.png, summary.json, eval_test.txt, log.*)"
