# Everything a fresh clone needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
KERNEL_C := $(wildcard pow/kernels/c/*.c pow/kernels/c/*.h)

.PHONY: run test lint bench clean

# Stamps re-run the install whenever the project definition or the kernel's C code changes.
$(VENV)/.stamp-run: pyproject.toml setup.py $(KERNEL_C)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.stamp-dev: pyproject.toml setup.py $(KERNEL_C)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.stamp-run

run: $(VENV)/.stamp-run
	$(BIN)/pow-mcp

lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

bench: $(VENV)/.stamp-run
	$(BIN)/python benchmarks/hashrate.py

clean:
	rm -rf $(VENV) build *.egg-info
