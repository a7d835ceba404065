#!/usr/bin/env bash
# Create or refresh .venv with everything the project needs. Safe to re-run.
# One resolve per machine kind: requirements.txt with requirements-gpu.txt (torch + vLLM, where an NVIDIA GPU
# is visible) or requirements-cpu.txt (the CPU build of torch). Ends with `pip check` and an import check.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  KIND=gpu
else
  KIND=cpu
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
# A current pip reads the index's separate metadata files (PEP 714): resolving is 2x faster than with 23.x.
"${PIP[@]}" install -U "pip>=25"
"${PIP[@]}" install -r requirements.txt -r "requirements-$KIND.txt"
# On a GPU box: can the host's NVIDIA driver run this torch's CUDA build? If not, say what to rent, stop here.
[ "$KIND" = cpu ] || "$VENV/bin/python" -m reward_transfer.driver_check
# DeepSpeed builds its wheel against the torch already installed; with build isolation pip would
# fetch a second (CUDA, multi-GB) torch into the build environment.
"${PIP[@]}" install --no-build-isolation -r requirements-deepspeed.txt
"${PIP[@]}" install --no-deps -e .
"$VENV/bin/python" -m pip --disable-pip-version-check check
"$VENV/bin/python" -m reward_transfer.install_check
touch "$VENV/.installed"
echo "setup.sh: $KIND environment ready in $VENV"
