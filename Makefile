# The Quickstart: `make demo` runs the main job on the embedded default, `make test` runs the tests.
VENV := .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: requirements.txt requirements-cpu.txt requirements-gpu.txt requirements-deepspeed.txt pyproject.toml setup.sh
	./setup.sh

.PHONY: setup demo test lint bench gpu-check gpu-bench gpu-wheels
setup: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) reproduce.py

test: $(VENV)/.installed
	$(PY) -m pytest -q -n 2

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

bench: $(VENV)/.installed
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

# On any CUDA machine, before a long run: the driver, bf16, vLLM, DeepSpeed ZeRO-2, InternLM2 remote code, the tiny
# grid. REAL=1: the preflight on the real Hub models instead (every kind of step once, minutes; profile=preflight).
# Uses .venv when setup.sh made one, else the image's python (and .gpu-wheels/ from `make gpu-wheels`).
GPU_PY := $(if $(wildcard $(PY)),$(PY),python3)
gpu-check:
	$(GPU_PY) -m reward_transfer.gpu_check $(if $(REAL),--real)

# On any CUDA machine: measure its throughput table (benchmarks/throughput/<device>.json; random-weight 7B-shaped
# models, offline, under 10 minutes) that the dry run's cost estimate reads. Commit the table it writes.
gpu-bench:
	$(GPU_PY) -m reward_transfer.gpu_bench

# Here (package index reachable): wheels of what a preinstalled torch/transformers image lacks, for gpu-check.
PYTHON_VERSION ?= 3.11
gpu-wheels: $(VENV)/.installed
	$(PY) -m reward_transfer.gpu_check wheels $(PYTHON_VERSION)
