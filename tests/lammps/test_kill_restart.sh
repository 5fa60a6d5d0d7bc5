#!/usr/bin/env bash
# A LAMMPS run with pair_style deqformer killed (SIGKILL) mid-run and continued from its last restart
# file ends where an uninterrupted run ends, and starts again from the stored fixed points (not cold).
#   1. reference: 80 MD steps of aspirin_box2.data on 2 ranks, writing restart files every 20 steps
#   2. the same run, killed with SIGKILL as soon as the restart file of step 40 appears (often while it
#      is still being written: then it does not read, and the run continues from the one before)
#   3. read_restart of the newest restart file that reads, then `run 80 upto`
# Checks: the continued run's final energy and forces equal the reference's (relative 1e-8; solver tol
# 1e-10), and its first evaluation needs at most 3 forward iterations (a cold start needs ~15 here).
# usage: test_kill_restart.sh LMP   (environment: DEQ_TEST_MODELS, DEQ_TEST_DATA, DEQ_TEST_TMP, DEQ_LAUNCHER)
set -euo pipefail
lmp=$1
work=${DEQ_TEST_TMP:-/tmp}/kill-restart
rm -rf "$work"
mkdir -p "$work"
cd "$work"
launch=${DEQ_LAUNCHER:-}
fail() { echo "FAIL: $*"; for f in out.*; do echo "---- $f"; tail -n 30 "$f"; done; exit 1; }

style="pair_style deqformer ${DEQ_TEST_MODELS}/model_f64.pt tol 1e-10 adjoint_tol 1e-10 max_iter 200"
common="units metal
atom_style atomic
atom_modify map array
boundary p p p"
tail_cmds="compute solver all deqformer/solver
thermo_style custom step pe etotal c_solver[1]
thermo_modify format float %20.15g
thermo 10
timestep 0.0005"

# 1 and 2: the run (reference, or to be killed); restart files every 30 steps; a slow pace for run 2
make_run() {
  cat > "in.$1" <<IN
$common
read_data ${DEQ_TEST_DATA}/aspirin_box2.data
$style
pair_coeff * * H C O
$tail_cmds
velocity all create 400 4928459 loop geom
fix nve all nve
restart 20 $1.*.restart
run 80
write_dump all custom final_$1.dump id fx fy fz modify sort id format float %20.15g
print "FINAL_PE \$(pe:%20.15g)"
IN
}
make_run ref
make_run killed
$launch "$lmp" -nocite -in in.ref -log log.ref > out.ref 2>&1 || fail "reference run failed"

$launch "$lmp" -nocite -in in.killed -log log.killed > out.killed 2>&1 &
pid=$!
for _ in $(seq 1 3000); do
  { [ -e killed.40.restart ] || [ -e killed.60.restart ] || ! kill -0 $pid 2>/dev/null; } && break
  sleep 0.05
done
kill -0 $pid 2>/dev/null || fail "the run ended before it could be killed"
# SIGKILL the whole job (mpirun and its ranks)
pkill -KILL -P $pid 2>/dev/null || true
kill -KILL $pid 2>/dev/null || true
wait $pid 2>/dev/null || true
[ -e killed.80.restart ] && fail "the run reached step 80 before the kill"
files=$(ls killed.*.restart | sort -t. -k2,2n | tr '\n' ' ')

# 3: continue from the newest restart file that LAMMPS can read
newest=""
for f in $(ls killed.*.restart | sort -t. -k2,2n -r); do
  cat > in.probe <<IN
$common
read_restart $f
IN
  if $launch "$lmp" -nocite -in in.probe -log none > out.probe 2>&1; then newest=$f; break; fi
done
[ -n "$newest" ] || fail "no readable restart file"
step=$(echo "$newest" | cut -d. -f2)
cat > in.cont <<IN
$common
read_restart $newest
$style
pair_coeff * * H C O
$tail_cmds
fix nve all nve
run 0
print "FIRST_ITERS \$(c_solver[1])"
run 80 upto
write_dump all custom final_cont.dump id fx fy fz modify sort id format float %20.15g
print "FINAL_PE \$(pe:%20.15g)"
IN
$launch "$lmp" -nocite -in in.cont -log log.cont > out.cont 2>&1 || fail "continued run failed"

iters=$(awk '$1=="FIRST_ITERS" {print $2}' out.cont | head -n1)
[ -n "$iters" ] && awk -v n="$iters" 'BEGIN { exit !(n <= 3) }' \
  || fail "first solve after read_restart took '$iters' forward iterations: the fixed-point state was not restored"
pe_ref=$(awk '$1=="FINAL_PE" {print $2}' out.ref | head -n1)
pe_cont=$(awk '$1=="FINAL_PE" {print $2}' out.cont | head -n1)
awk -v a="$pe_ref" -v b="$pe_cont" 'BEGIN { d = a - b; if (d < 0) d = -d; s = (a < 0 ? -a : a); exit !(d <= 1e-8 * s) }' \
  || fail "final energy after the kill ($pe_cont) differs from the uninterrupted run ($pe_ref)"
paste <(tail -n +10 final_ref.dump) <(tail -n +10 final_cont.dump) | awk '
  { for (k = 2; k <= 4; k++) { d = $k - $(k + 4); if (d < 0) d = -d; if (d > m) m = d } }
  END { if (m > 1e-7) { print "max force difference " m; exit 1 } }' \
  || fail "final forces after the kill differ from the uninterrupted run"
echo "OK: killed with restart files $files on disk; continued from $newest (step $step, the newest that reads) with $iters forward iteration(s) in the first solve; final energy $pe_cont (uninterrupted run: $pe_ref)"
