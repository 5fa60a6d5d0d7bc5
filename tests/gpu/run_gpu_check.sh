#!/usr/bin/env bash
# GPU check of pair_style deqformer/kk (Kokkos CUDA) and of pair_style deqformer ... device cuda.
#
# STATUS: PREPARED, NEVER RUN. It was written on a machine without a GPU (and without nvcc or a CUDA
# LibTorch), so nothing below has been executed on a GPU; expect to fix details on first use. In
# particular Kokkos 3.4.01 (the Kokkos of the project's Debian sources) predates CUDA 12/13 and Hopper:
# the build may fail with a recent nvcc. The script then still runs the fallback (the CPU style with
# 'device cuda', which needs only the CUDA LibTorch) and records the Kokkos build failure.
#
# What it does (results under $OUT):
#   1. finds a CUDA LibTorch (Torch_DIR from $TORCH_DIR, else from the python3 that has torch:
#      <site-packages>/torch/share/cmake/Torch) and nvcc;
#   2. builds Kokkos (CUDA, architecture $KOKKOS_ARCH, default HOPPER90; Kokkos 3.4.01 has none newer
#      than AMPERE86, so the superbuild falls back to AMPERE80 = PTX JIT-compiled by the driver) and
#      LAMMPS with both pair styles through the superbuild options
#        -DDEQFORMER_CUDA=ON -DDEQFORMER_CUDA_ARCH=$KOKKOS_ARCH -DTorch_DIR=...   (build log: build.log)
#      into $WORK (default /tmp/deqformer-gpu), with sources from $DEQFORMER_CACHE_DIR (the machine
#      may have no network: copy ~/.cache/deqformer/{lammps-29Sep2021,kokkos-3.4.01,src} there);
#   3. writes the test models (tests/fixtures/make_test_models.py, float64 and float32);
#   4. agreement: the aspirin molecule, the periodic aspirin box and a triclinic box, energy and forces
#      of  deqformer (CPU)  vs  deqformer/kk (GPU)  vs  deqformer device cuda  -> agreement.csv
#      (float64: expect <= 1e-10 relative; float32 model: ~1e-5);
#   5. speed: 27 aspirin in a 45 A box (examples/aspirin/data/aspirin_27_dilute.data), NVE MD,
#      atom-steps/s of each variant (and nvidia-smi) -> speed.csv.
#
# usage: OUT=/path/to/results tests/gpu/run_gpu_check.sh
#        tests/gpu/run_gpu_check.sh --pack-sources FILE.tar.xz   (on a machine with the source cache:
#            the LAMMPS and Kokkos sources the build needs, ~10 MB, to carry to a machine without network;
#            there: SOURCES_TAR=FILE.tar.xz tests/gpu/run_gpu_check.sh)
# env:   KOKKOS_ARCH (HOPPER90), TORCH_DIR, PYTHON (python3 with torch), DEQFORMER_CACHE_DIR,
#        SOURCES_TAR, WORK (/tmp/deqformer-gpu), NSTEPS (100), JOBS (nproc), MODEL (a deployed model to
#        time; default: the float64 test model)
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
if [ "${1:-}" = "--pack-sources" ]; then
  cache=${DEQFORMER_CACHE_DIR:-$HOME/.cache/deqformer}
  tar -C "$cache" -cJf "$2" lammps-29Sep2021/.unpacked lammps-29Sep2021/cmake lammps-29Sep2021/src \
      lammps-29Sep2021/doc/lammps.1 lammps-29Sep2021/potentials lammps-29Sep2021/LICENSE \
      kokkos-3.4.01 && ls -la "$2"
  exit $?
fi
if [ -n "${SOURCES_TAR:-}" ]; then
  export DEQFORMER_CACHE_DIR=${DEQFORMER_CACHE_DIR:-/tmp/deqformer-gpu/cache}
  mkdir -p "$DEQFORMER_CACHE_DIR" && tar -C "$DEQFORMER_CACHE_DIR" -xJf "$SOURCES_TAR"
fi
OUT=${OUT:-$PWD/gpu-check-out}
WORK=${WORK:-/tmp/deqformer-gpu}
KOKKOS_ARCH=${KOKKOS_ARCH:-HOPPER90}
NSTEPS=${NSTEPS:-100}
JOBS=${JOBS:-$(nproc)}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT" "$WORK"
log() { echo "[gpu-check] $*" | tee -a "$OUT/summary.txt"; }

# ---------------------------------------------------------------- 1. tools
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true; } > "$OUT/gpu.txt" 2>&1
log "GPU: $(head -1 "$OUT/gpu.txt")"
if ! command -v nvcc >/dev/null; then
  for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do [ -x "$d/nvcc" ] && export PATH="$d:$PATH" && break; done
fi
command -v nvcc >/dev/null && log "nvcc: $(nvcc --version | tail -1)" || log "nvcc: not found (Kokkos CUDA cannot be built)"
if [ -z "${TORCH_DIR:-}" ]; then
  TORCH_DIR=$("$PYTHON" -c 'import torch, os; print(os.path.join(torch.utils.cmake_prefix_path, "Torch"))' 2>/dev/null)
fi
torch_info=$("$PYTHON" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1)
log "LibTorch: $TORCH_DIR ($torch_info)"
[ -f "$TORCH_DIR/TorchConfig.cmake" ] || { log "no TorchConfig.cmake in '$TORCH_DIR': set TORCH_DIR"; exit 2; }
export DEQFORMER_CACHE_DIR=${DEQFORMER_CACHE_DIR:-$HOME/.cache/deqformer}

# ---------------------------------------------------------------- 2. build (Kokkos CUDA + LAMMPS)
kk_ok=0
build="$WORK/build-cuda"
log "building Kokkos CUDA ($KOKKOS_ARCH) + LAMMPS in $build (log: build.log)"
( cmake -S "$here" -B "$build" -G Ninja -DDEQFORMER_CACHE_DIR="$DEQFORMER_CACHE_DIR" \
      -DDEQFORMER_CUDA=ON -DDEQFORMER_CUDA_ARCH="$KOKKOS_ARCH" -DTorch_DIR="$TORCH_DIR" \
      -DDEQFORMER_PYTHON="$(command -v "$PYTHON")" &&
  cmake --build "$build" --target lammps -j "$JOBS" ) > "$OUT/build.log" 2>&1 && kk_ok=1
lmp_dir=$(sed -n 's/^DEQFORMER_LAMMPS_BUILD_DIR:INTERNAL=//p' "$build/CMakeCache.txt" 2>/dev/null)
lmp="$lmp_dir/lmp"
if [ $kk_ok = 1 ] && [ -x "$lmp" ]; then
  log "build: ok ($lmp)"
else
  kk_ok=0
  log "build: FAILED (tail of build.log below); only the CPU style can run"
  tail -30 "$OUT/build.log" | tee -a "$OUT/summary.txt"
  # fallback binary: LAMMPS without KOKKOS, linked to the CUDA LibTorch (deqformer device cuda)
  build="$WORK/build-nokokkos"
  ( cmake -S "$here" -B "$build" -G Ninja -DDEQFORMER_CACHE_DIR="$DEQFORMER_CACHE_DIR" -DDEQFORMER_KOKKOS=OFF \
        -DTorch_DIR="$TORCH_DIR" -DDEQFORMER_PYTHON="$(command -v "$PYTHON")" &&
    cmake --build "$build" --target lammps -j "$JOBS" ) > "$OUT/build-nokokkos.log" 2>&1
  lmp_dir=$(sed -n 's/^DEQFORMER_LAMMPS_BUILD_DIR:INTERNAL=//p' "$build/CMakeCache.txt" 2>/dev/null)
  lmp="$lmp_dir/lmp"
  [ -x "$lmp" ] || { log "fallback build failed too (build-nokokkos.log)"; exit 1; }
fi

# ---------------------------------------------------------------- 3. models
models="$WORK/models"
PYTHONPATH="$here/models" "$PYTHON" "$here/tests/fixtures/make_test_models.py" "$models" > "$OUT/models.log" 2>&1 \
  || { log "make_test_models.py failed (models.log)"; exit 1; }
MODEL=${MODEL:-$models/model_f64.pt}

# ---------------------------------------------------------------- 4. agreement
run_lmp() {    # $1 tag, $2 data, $3 model, $4 extra pair args, $5.. lammps args; writes $WORK/$1.{dump,log}
  local tag=$1 data=$2 model=$3 extra=$4; shift 4
  cat > "$WORK/$tag.in" <<EOF
units metal
atom_style atomic
atom_modify map array
boundary p p p
read_data $data
pair_style deqformer $model tol 1e-12 adjoint_tol 1e-12 max_iter 100 $extra
pair_coeff * * H C O
neighbor 1.0 bin
thermo_style custom step pe press
thermo_modify format float %20.15g
run 0
variable e equal pe
print "ENERGY \${e}"
write_dump all custom $WORK/$tag.dump id fx fy fz modify sort id format float %20.15g
EOF
  "$lmp" -nocite -log "$WORK/$tag.log" -in "$WORK/$tag.in" "$@" > "$WORK/$tag.out" 2>&1
}
compare() {    # $1 reference tag, $2 tag -> "energy_rel,force_rel"
  "$PYTHON" - "$WORK/$1" "$WORK/$2" <<'EOF'
import sys, numpy as np
def read(p):
    e = [float(l.split()[1]) for l in open(p + ".log") if l.startswith("ENERGY")][0]
    rows = [l.split() for l in open(p + ".dump")]
    i = [k for k, r in enumerate(rows) if r[:2] == ["ITEM:", "ATOMS"]][0]
    f = np.array([[float(x) for x in r[1:4]] for r in rows[i + 1:]])
    return e, f
(ea, fa), (eb, fb) = read(sys.argv[1]), read(sys.argv[2])
print(f"{abs(eb - ea) / abs(ea):.3e},{np.abs(fb - fa).max() / np.abs(fa).max():.3e}")
EOF
}
echo "structure,model,variant,energy_rel_diff_vs_cpu,force_rel_diff_vs_cpu" > "$OUT/agreement.csv"
kk_args=(-k on g 1 -sf kk -pk kokkos newton on neigh full)
for s in aspirin_1 aspirin_box2 aspirin_tri2; do
  for m in model_f64 model_f32; do
    data="$here/tests/data/$s.data"
    run_lmp "${s}_${m}_cpu" "$data" "$models/$m.pt" "" || log "$s $m cpu: failed ($WORK/${s}_${m}_cpu.out)"
    run_lmp "${s}_${m}_torchcuda" "$data" "$models/$m.pt" "device cuda" \
      && echo "$s,$m,deqformer device cuda,$(compare "${s}_${m}_cpu" "${s}_${m}_torchcuda")" >> "$OUT/agreement.csv" \
      || log "$s $m device cuda: failed ($WORK/${s}_${m}_torchcuda.out)"
    if [ $kk_ok = 1 ]; then
      run_lmp "${s}_${m}_kk" "$data" "$models/$m.pt" "" "${kk_args[@]}" \
        && echo "$s,$m,deqformer/kk (Kokkos CUDA),$(compare "${s}_${m}_cpu" "${s}_${m}_kk")" >> "$OUT/agreement.csv" \
        || log "$s $m kk: failed ($WORK/${s}_${m}_kk.out)"
    fi
  done
done
log "agreement.csv:"; cat "$OUT/agreement.csv" | tee -a "$OUT/summary.txt"

# ---------------------------------------------------------------- 5. speed (atom-steps/s)
data27="$here/examples/aspirin/data/aspirin_27_dilute.data"
speed() {    # $1 variant, $2 extra pair args, $3.. lammps args
  local tag="speed_$1" extra=$2; shift 2
  cat > "$WORK/$tag.in" <<EOF
units metal
atom_style atomic
read_data $data27
pair_style deqformer $MODEL tol 1e-6 $extra
pair_coeff * * H C O
neighbor 1.0 bin
velocity all create 300 4928459 loop geom
fix nve all nve
timestep 0.0005
compute solver all deqformer/solver
thermo_style custom step pe c_solver[5] c_solver[6]
thermo 50
run 10
run $NSTEPS
EOF
  "$lmp" -nocite -log "$WORK/$tag.log" -in "$WORK/$tag.in" "$@" > "$WORK/$tag.out" 2>&1 || { echo "$1,failed,,"; return; }
  # the last run's loop time
  local loop=$(grep "^Loop time of" "$WORK/$tag.log" | tail -1 | awk '{print $4}')
  local natoms=$(grep "^Loop time of" "$WORK/$tag.log" | tail -1 | awk '{print $(NF-1)}')
  local iters=$(awk '/^Loop time of/{print prev} {prev=$0}' "$WORK/$tag.log" | tail -1 | awk '{print $3 "/" $4}')
  "$PYTHON" -c "print('$1,%.1f,%s,%s' % ($natoms * $NSTEPS / $loop, '$loop', '$iters'))"
}
echo "variant,atom_steps_per_s,loop_time_s,mean_iters_fwd_adj" > "$OUT/speed.csv"
OMP_NUM_THREADS=$(nproc) speed cpu "" >> "$OUT/speed.csv"
speed torch_cuda "device cuda" >> "$OUT/speed.csv"
[ $kk_ok = 1 ] && speed kk_cuda "" "${kk_args[@]}" >> "$OUT/speed.csv"
log "speed.csv ($NSTEPS steps, $(basename "$data27"), model $(basename "$MODEL")):"; cat "$OUT/speed.csv" | tee -a "$OUT/summary.txt"
cp "$WORK"/*.log "$OUT/" 2>/dev/null || true
log "done"
