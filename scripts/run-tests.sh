#!/usr/bin/env bash
# The test command: builds what is missing, then runs every test
# (C++ GoogleTest + LAMMPS integration incl. mpirun on 2 and 4 ranks via ctest, then pytest).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
"$here/scripts/build.sh" "$@" || { echo "run-tests: build failed"; exit 1; }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OMP_WAIT_POLICY=PASSIVE
rc=0
echo "== ctest (C++ core, LAMMPS, MPI) =="
ctest --test-dir "$here/build" --output-on-failure -j 1 || rc=1
echo "== pytest (trainer, model, deploy) =="
"$here/.venv/bin/python" -m pytest "$here/tests/python" -q -p no:cacheprovider || rc=1
exit $rc
