#!/usr/bin/env bash
# Speed of pair_style deqformer/kk (KOKKOS OpenMP) vs pair_style deqformer on the CPU, same thread
# count: NVE MD of 27 aspirin in a 45 A box (examples/aspirin/data/aspirin_27_dilute.data, 567 atoms),
# tol 1e-6, reuse on. The two variants alternate, REPS times each, so that load from other processes
# hits both alike; the CSV has every run (with the 1-minute load average) and a summary with the
# minimum and median loop times and their ratios.
# Not part of ctest (it takes minutes); run after a build:
#   tests/lammps/measure_kk_speed.sh [THREADS=2] [STEPS=10] [REPS=3] [MODEL ...]
# MODEL defaults to the float64 test model of the ctest fixture (build/tests/models/model_f64.pt).
# Output: build/tests/lammps/kk_speed.csv (runs) and kk_speed_summary.csv.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
threads=${1:-2}
steps=${2:-10}
reps=${3:-3}
shift $(( $# > 3 ? 3 : $# ))
models=("$@")
[ ${#models[@]} -gt 0 ] || models=("$here/build/tests/models/model_f64.pt")
lmp="$here/build/bin/lmp"
data="$here/examples/aspirin/data/aspirin_27_dilute.data"
out="$here/build/tests/lammps"
work=$(mktemp -d)
mkdir -p "$out"
csv="$out/kk_speed.csv"
summary="$out/kk_speed_summary.csv"
echo "variant,threads,model,rep,atom_steps_per_s,loop_time_s,model_time_s,mean_iters_fwd,mean_iters_adj,load1" > "$csv"

run() {    # $1 variant, $2 model, $3 rep, $4.. lammps args
  local variant=$1 model=$2 rep=$3; shift 3
  cat > "$work/in.speed" <<EOF
units metal
atom_style atomic
read_data $data
pair_style deqformer $model tol 1e-6
pair_coeff * * H C O
neighbor 1.0 bin
velocity all create 300 4928459 loop geom
fix nve all nve
timestep 0.0005
compute solver all deqformer/solver
thermo_style custom step pe c_solver[5] c_solver[6] c_solver[14]
thermo $steps
run 5
run $steps
EOF
  "$lmp" -nocite -log "$work/log" -in "$work/in.speed" "$@" > "$work/out" 2>&1 || { cat "$work/out" >&2; return 1; }
  local loop natoms last
  loop=$(grep "^Loop time of" "$work/log" | tail -1 | awk '{print $4}')
  natoms=$(grep "^Loop time of" "$work/log" | tail -1 | awk '{print $(NF-1)}')
  last=$(awk '/^Loop time of/{print prev} {prev=$0}' "$work/log" | tail -1)
  printf "%s,%s,%s,%s,%.1f,%s,%s,%s,%s,%s\n" "$variant" "$threads" "$(basename "$model")" "$rep" \
    "$(echo "$natoms * $steps / $loop" | bc -l)" "$loop" "$(echo "$last" | awk '{print $5}')" \
    "$(echo "$last" | awk '{print $3}')" "$(echo "$last" | awk '{print $4}')" "$(cut -d' ' -f1 /proc/loadavg)" >> "$csv"
}

export OMP_PROC_BIND=false OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=$threads
for model in "${models[@]}"; do
  for rep in $(seq 1 "$reps"); do
    run deqformer "$model" "$rep"
    run deqformer/kk "$model" "$rep" -k on t "$threads" -sf kk -pk kokkos newton on neigh full
  done
done
rm -rf "$work"

python3 - "$csv" "$summary" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
out = open(sys.argv[2], "w")
out.write("model,threads,cpu_min_loop_s,kk_min_loop_s,kk_over_cpu_speed_min,cpu_median_loop_s,kk_median_loop_s,"
          "kk_over_cpu_speed_median,mean_load1\n")
for model in sorted({r["model"] for r in rows}):
    t = {v: [float(r["loop_time_s"]) for r in rows if r["model"] == model and r["variant"] == v]
         for v in ("deqformer", "deqformer/kk")}
    load = statistics.mean(float(r["load1"]) for r in rows if r["model"] == model)
    c, k = t["deqformer"], t["deqformer/kk"]
    out.write(f"{model},{rows[0]['threads']},{min(c):.3f},{min(k):.3f},{min(c) / min(k):.3f},"
              f"{statistics.median(c):.3f},{statistics.median(k):.3f},{statistics.median(c) / statistics.median(k):.3f},"
              f"{load:.2f}\n")
EOF
cat "$csv" "$summary"
