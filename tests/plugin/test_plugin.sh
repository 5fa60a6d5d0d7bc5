#!/usr/bin/env bash
# `plugin load deqformerplugin.so` in a LAMMPS with the PLUGIN package, then pair_style deqformer,
# compute deqformer/solver and a short MD run (the per-atom state fix). Checks:
#   - the three styles are registered from the plugin (and, in a LAMMPS that already has them built in,
#     that the plugin overrides them: LAMMPS warns "Overriding built-in ...")
#   - the energy of aspirin_box2.data matches the Python reference (tests/fixtures/make_references.py)
#   - MD steps run and the solver statistics come from the plugin's compute
#   - kokkos: the same with pair_style deqformer/kk from the plugin (lmp -k on t 1), and atoms
#     reneighbored and migrated between the ranks every step (the per-atom state fix moves them)
# usage: test_plugin.sh LMP PLUGIN_SO builtin|plain [cpu|kokkos]   (environment: DEQ_TEST_MODELS,
#        DEQ_TEST_DATA, DEQ_TEST_REFS, DEQ_TEST_TMP; DEQ_LAUNCHER, e.g. "mpiexec -np 2", runs lmp)
set -euo pipefail
lmp=$1; plugin=$2; expect=$3; variant=${4:-cpu}
work=${DEQ_TEST_TMP:-/tmp}/plugin-$expect-$variant
pair=deqformer; lmp_args=()
if [ "$variant" = kokkos ]; then
  pair=deqformer/kk; lmp_args=(-k on t 1 -sf kk -pk kokkos newton on neigh half comm device)
fi
mkdir -p "$work"
cd "$work"
cat > in.plugin <<IN
units           metal
atom_style      atomic
atom_modify     map array
boundary        p p p
read_data       ${DEQ_TEST_DATA}/aspirin_box2.data
plugin          load ${plugin}
plugin          list
pair_style      ${pair} ${DEQ_TEST_MODELS}/model_f64.pt tol 1e-12 adjoint_tol 1e-12 max_iter 100
pair_coeff      * * H C O
neighbor        1.0 bin
neigh_modify    every 1 delay 0 check no
compute         solver all deqformer/solver
thermo_style    custom step pe c_solver[1] c_solver[7]
thermo_modify   format float %20.15g
run             0
variable        e0 equal pe
print           "PLUGIN_TEST_ENERGY \${e0}"
velocity        all create 300 4928459 loop geom
timestep        0.0005
fix             nve all nve
run             5
print           "PLUGIN_TEST_EVALS \$(c_solver[7])"
IN
set +e
${DEQ_LAUNCHER:-} "$lmp" "${lmp_args[@]}" -nocite -in in.plugin -log log.plugin > out.plugin 2>&1
rc=$?
set -e
fail() { echo "FAIL: $*"; echo "---- output"; cat out.plugin; exit 1; }
[ $rc -eq 0 ] || fail "lmp exited with $rc"
styles=("pair_style deqformer" "compute deqformer/solver" "fix DEQFORMER/STATE")
[ "$variant" = kokkos ] && styles+=("pair_style deqformer/kk" "fix DEQFORMER/STATE/kk")
for s in "${styles[@]}"; do
  grep -q "Loading plugin: $s" out.plugin || fail "no 'Loading plugin: $s'"
done
nover=$(grep -c "Overriding built-in" out.plugin || true)
nloaded=$(grep -c "Loading plugin:" out.plugin || true)
if [ "$expect" = builtin ]; then
  # one per style name the plugin registers: 3, or 9 with the KOKKOS styles (deqformer/kk{,/device,/host}
  # and the state fix's three kk names)
  [ "$nover" -eq "$nloaded" ] || fail "expected $nloaded 'Overriding built-in' warnings (one per style name), got $nover"
else
  [ "$nover" -eq 0 ] || fail "this LAMMPS should not have the deqformer styles built in"
fi
e=$(awk '$1=="PLUGIN_TEST_ENERGY" {print $2}' out.plugin | head -n1)
ref=$(awk '$1=="energy" {print $2}' "${DEQ_TEST_REFS}/box2.ref")
[ -n "$e" ] && [ -n "$ref" ] || fail "no energy (got '$e', reference '$ref')"
awk -v e="$e" -v r="$ref" 'BEGIN { d = e - r; if (d < 0) d = -d; r = (r < 0 ? -r : r); exit !(d <= 1e-8 * r) }' \
  || fail "energy $e differs from the Python reference $ref"
evals=$(awk '$1=="PLUGIN_TEST_EVALS" {print $2}' out.plugin | head -n1)
[ -n "$evals" ] && awk -v n="$evals" 'BEGIN { exit !(n >= 5) }' || fail "solver statistics: '$evals' evaluations in run 5"
if [ "$variant" = kokkos ]; then
  grep -q "^pair_style      deqformer/kk" log.plugin || fail "the input did not use pair_style deqformer/kk"
  grep -q "communicated by Kokkos pack/unpack kernels" out.plugin || fail "the states did not go through the Kokkos halo kernels"
fi
echo "OK: plugin ($expect LAMMPS, $variant): energy $e (reference $ref), $evals evaluations in the MD run"
