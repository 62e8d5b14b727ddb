# `make run`: the embedded default end to end; `make test`: the test suite.
# Both create .venv on first use and install the project into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all
EXPERIMENT ?= default
# The venv's tools first, so that Snakemake's jobs use its Python too.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/snakemake --cores $(CORES) --configfile config/config.yaml
	@cat results/tables/$(EXPERIMENT).md

test: $(VENV)/.installed
	$(BIN)/python -m pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests benchmarks workflow/scripts
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile rules

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_metrics.py
	$(BIN)/python benchmarks/bench_dag.py
	$(BIN)/python benchmarks/bench_latent_inversion.py

clean:
	rm -rf results logs .snakemake
