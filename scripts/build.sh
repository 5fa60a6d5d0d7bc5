#!/usr/bin/env bash
# Configure and build everything (Debian sources -> Kokkos -> LAMMPS + pair styles, C++ core and tests,
# Python package in .venv). Sources and LAMMPS/Kokkos builds are cached in $DEQFORMER_CACHE_DIR
# (default ~/.cache/deqformer); pass --clean to drop the cache and the build folder first.
# Extra arguments are passed to cmake (e.g. -DDEQFORMER_KOKKOS=OFF, -DDEQFORMER_COMPAT_LAMMPS=OFF).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${DEQFORMER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/deqformer}
args=()
for a in "$@"; do
  if [ "$a" = "--clean" ]; then
    echo "build: removing $cache and $here/build"
    rm -rf "$cache" "$here/build"
  else
    args+=("$a")
  fi
done
"$here/scripts/install-deps.sh"
export CCACHE_BASEDIR="$here" CCACHE_NOHASHDIR=1
ccache --max-size=5G >/dev/null 2>&1 || true
# by default also the compatibility build (LAMMPS 4Feb2025, CPU, its LAMMPS tests: ctest label compat),
# the plugin (lammps_patch/plugin, ctest label plugin), LAMMPS's force-style harness (label harness) and
# the AddressSanitizer builds of the core tests and the plugin (label sanitize); -DDEQFORMER_COMPAT_LAMMPS=OFF,
# -DDEQFORMER_PLUGIN=OFF, -DDEQFORMER_LAMMPS_TESTS=OFF and -DDEQFORMER_SANITIZE=OFF leave them out
cmake -S "$here" -B "$here/build" -G Ninja -DDEQFORMER_CACHE_DIR="$cache" -DDEQFORMER_COMPAT_LAMMPS=ON \
  -DDEQFORMER_PLUGIN=ON -DDEQFORMER_LAMMPS_TESTS=ON -DDEQFORMER_SANITIZE=ON "${args[@]}"
cmake --build "$here/build" -j "$(nproc)"
