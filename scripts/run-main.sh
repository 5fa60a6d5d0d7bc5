#!/usr/bin/env bash
# The main job: build what it needs (LAMMPS 29Sep2021 + Kokkos + pair styles, the Python package), then
# run the aspirin example (train, deploy, LAMMPS MD, plots). The compatibility (LAMMPS 4Feb2025) and
# plugin builds are only for the tests: the test command (scripts/run-tests.sh) turns them on again. With
# ALLEGRO_DIR set (the comparison with Allegro) the LAMMPS 4Feb2025 build stays: pair_allegro needs it.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
compat=-DDEQFORMER_COMPAT_LAMMPS=OFF
[ -n "${ALLEGRO_DIR:-}" ] && compat=-DDEQFORMER_COMPAT_LAMMPS=ON
"$here/scripts/build.sh" "$compat" -DDEQFORMER_PLUGIN=OFF -DDEQFORMER_LAMMPS_TESTS=OFF -DDEQFORMER_SANITIZE=OFF "$@"
exec "$here/examples/aspirin/run.sh"
