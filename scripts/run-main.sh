#!/usr/bin/env bash
# The main job: build what it needs (LAMMPS 29Sep2021 + Kokkos + pair styles, the Python package), then
# run the aspirin example (train, deploy, LAMMPS MD, plots). The compatibility (LAMMPS 4Feb2025) and
# plugin builds are only for the tests: the test command (scripts/run-tests.sh) turns them on again.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$here/scripts/build.sh" -DDEQFORMER_COMPAT_LAMMPS=OFF -DDEQFORMER_PLUGIN=OFF -DDEQFORMER_LAMMPS_TESTS=OFF -DDEQFORMER_SANITIZE=OFF "$@"
exec "$here/examples/aspirin/run.sh"
