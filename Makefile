# The Quickstart: `make demo` runs the main job on the embedded default, `make test` runs the tests.
VENV := .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: requirements.txt requirements-cpu.txt requirements-gpu.txt requirements-deepspeed.txt pyproject.toml setup.sh
	./setup.sh

.PHONY: setup demo test lint bench
setup: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) reproduce.py

test: $(VENV)/.installed
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

bench: $(VENV)/.installed
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done
