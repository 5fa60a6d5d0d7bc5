#!/usr/bin/env bash
# The main job: build everything, then run the aspirin example (train, deploy, LAMMPS MD, plots).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$here/scripts/build.sh" "$@"
exec "$here/examples/aspirin/run.sh"
