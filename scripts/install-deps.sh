#!/usr/bin/env bash
# Install the Debian 12 packages deqformer needs (only those missing). Runs as root or through sudo.
set -euo pipefail
pkgs=(build-essential cmake ninja-build ccache git xz-utils dpkg-dev
      libtorch-dev python3-torch python3-venv python3-pip python3-setuptools
      libopenmpi-dev openmpi-bin libgtest-dev googletest libyaml-cpp-dev libyaml-dev
      python3-numpy python3-ase python3-yaml python3-matplotlib python3-tqdm python3-pytest
      xtb)   # xtb: examples/aspirin/data/generate_xtb.py (GFN2-xTB reference data) and its test
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
