#!/usr/bin/env bash
# Create or refresh .venv with everything the project needs. Safe to re-run.
# GPU extras (vLLM) are installed only when an NVIDIA GPU is visible.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install -r requirements.txt
# DeepSpeed builds its wheel against the torch already installed; with build isolation pip would
# fetch a second (CUDA, multi-GB) torch into the build environment.
"${PIP[@]}" install --no-build-isolation -r requirements-deepspeed.txt
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  "${PIP[@]}" install -r requirements-gpu.txt
fi
"${PIP[@]}" install --no-deps -e .
touch "$VENV/.installed"
echo "setup.sh: environment ready in $VENV"
