#!/usr/bin/env bash
# Condensed-phase aspirin (an example, not part of the main job): a model trained on monomers + dimers
# (+ the contact dimers of one round of active learning) and the dense 27-molecule box on 2 MPI ranks.
# Everything lands in examples/aspirin/out/.
#   data split (monomer and dimer trajectories, in time) -> train PRESET (<= 40 min)
#   -> deploy (float32 and float64) -> evaluate on unseen monomer, dimer (and contact) frames -> dense box: minimise, NVT 500 K
#   2 ps, NVE 1 ps on 2 ranks (benchmarks/soak.py watches its memory) -> plots (box_analysis.py)
# Environment: PRESET (aspirin_contact.yaml: monomers + dimers + contact dimers; aspirin_condensed.yaml, monomers +
# dimers only, is round 0 of the active learning, whose box run the contact dimers were cut from),
# BOX_NVT (4000 steps), BOX_NVE (2000), BOX_TOL (1e-5), RETRAIN=1.
# Names follow the preset: aspirin_NAME.yaml -> out/train_NAME, out/aspirin_NAME{,_f32}.pt, out/eval_NAME_*.json
# and the box run out/box_NAME (out/box_dense for the condensed preset).
# Measured on the 2-core development machine: see docs/results.md, "Condensed phase".
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$here"
out="$here/out"
venv="$root/.venv/bin"
[ -x "$root/build/bin/lmp" ] || "$root/scripts/build.sh" -DDEQFORMER_COMPAT_LAMMPS=OFF -DDEQFORMER_PLUGIN=OFF \
  -DDEQFORMER_LAMMPS_TESTS=OFF -DDEQFORMER_SANITIZE=OFF
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
# shellcheck source=train_once.sh
source "$here/train_once.sh"

stamp "1/5 data: monomer and dimer trajectories split in time"
"$venv/python" prepare_split.py data/aspirin_xtb_train.npz "$out/data" data/aspirin_xtb_dimer_train.npz

preset=${PRESET:-aspirin_contact.yaml}
name=$(basename "$preset" .yaml)
name=${name#aspirin_}
tag=box_$name
[ "$name" = condensed ] && tag=box_dense
train_once 2/5 "$preset" "train_$name"

stamp "3/5 deploy (float32 for the box, float64 for checks)"
"$venv/deqformer-deploy" "$out/train_$name/best.pth" "$out/aspirin_${name}_f32.pt" --dtype float32 --max-iter 60 \
  --tol 1e-5 > "$out/deploy_$name.log"
"$venv/deqformer-deploy" "$out/train_$name/best.pth" "$out/aspirin_$name.pt" --dtype float64 --max-iter 60 \
  --tol 1e-6 >> "$out/deploy_$name.log"

stamp "4/5 evaluate on unseen monomer frames (4000-4899) and unseen dimer frames (last 50 of each trajectory)"
: > "$out/eval_$name.txt"
summarize() {
  "$venv/python" -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%s: %d frames, E MAE %.1f meV, F MAE %.1f meV/A, F RMSE %.1f meV/A" % (sys.argv[2], r["n_frames"], 1e3*r["e_mae"], 1e3*r["f_mae"], 1e3*r["f_rmse"]))' \
    "$1" "$2" | tee -a "$out/eval_$name.txt"
}
for part in aspirin_test_md dimer_test; do
  "$venv/deqformer-evaluate" --model "$out/aspirin_$name.pt" --dataset-file "$out/data/$part.npz" \
    --key-mapping nuclear_charges=atomic_numbers coords=pos energies=total_energy forces=forces \
    --fixed-fields atomic_numbers --split all --json > "$out/eval_${name}_$part.json"
  summarize "$out/eval_${name}_$part.json" "$part"
done
dimer_files=(data/aspirin_xtb_dimer_train.npz)
if grep -q aspirin_xtb_contact_box "$preset"; then   # contact dimers it did not train on
  "$venv/deqformer-evaluate" --model "$out/aspirin_$name.pt" --dataset-config "$preset" --datasets contact \
    --split test --json > "$out/eval_${name}_contact_test.json"
  summarize "$out/eval_${name}_contact_test.json" contact_test
  dimer_files+=(data/aspirin_xtb_contact_box.npz)
fi

stamp "5/5 dense box on 2 MPI ranks: minimise, NVT ${BOX_NVT:-4000} steps, NVE ${BOX_NVE:-2000} steps"
"$venv/python" "$root/benchmarks/soak.py" box --tag "$tag" --model "$out/aspirin_${name}_f32.pt" \
  --nvt "${BOX_NVT:-4000}" --steps "${BOX_NVE:-2000}" --var tol "${BOX_TOL:-1e-5}" --out "$out" || true
"$venv/python" box_analysis.py "$out/$tag" --tag "$tag" --dimer-data "${dimer_files[@]}"
stamp "done: see $out/$tag (*.png, ${tag}_summary.json) and $out/eval_$name.txt"
