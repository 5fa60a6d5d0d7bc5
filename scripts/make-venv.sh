#!/usr/bin/env bash
# Make .venv from Debian's interpreter (which has python3-torch) with --system-site-packages,
# and install the deqformer package (editable) into it, offline.
set -euo pipefail
py=$1; venv=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$py" -c 'import torch' 2>/dev/null || { echo "make-venv: $py cannot import torch; install python3-torch (Debian) or pass -DDEQFORMER_PYTHON=..." >&2; exit 1; }
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv --system-site-packages "$venv"
fi
"$venv/bin/python" -m pip install -q --no-index --no-build-isolation --no-deps -e "$here/models"
touch "$venv/.deqformer-installed"
