# `make run`: the embedded default end to end; `make test`: the test suite.
# Both create .venv on first use and install the project into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all
CONFIG ?= config/config.yaml
EXPERIMENT ?= default
# The versions the tests passed with; `make CONSTRAINTS=` for pyproject's ranges alone.
CONSTRAINTS ?= constraints.txt
PIP_CONSTRAINTS := $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
SNAKEMAKE := $(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG)
# The venv's tools first, so that Snakemake's jobs use its Python too.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run tables report unlock test lint bench slurm-profile clean

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(PIP_CONSTRAINTS) -e '.[test]'
	touch $@

# The SLURM executor plugin, for the SLURM tests and cluster runs only (see pyproject.toml).
$(VENV)/.slurm: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet $(PIP_CONSTRAINTS) -e '.[test,slurm]'
	touch $@

# A run killed with `kill -9` leaves Snakemake's directory lock behind: it is
# removed first when no Snakemake process holds it.
run: $(VENV)/.installed
	@$(BIN)/python -m diffad.locks
	$(SNAKEMAKE)
	@cat results/tables/$(EXPERIMENT).md

tables: $(VENV)/.installed
	$(SNAKEMAKE) tables
	@cat results/tables/$(EXPERIMENT).md

report: $(VENV)/.installed
	$(SNAKEMAKE) --report results/report.html
	@echo "open results/report.html"

unlock: $(VENV)/.installed
	$(BIN)/python -m diffad.locks

test: $(VENV)/.slurm
	$(BIN)/python -m pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests benchmarks workflow/scripts
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile rules

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_metrics.py
	$(BIN)/python benchmarks/bench_coreset.py
	$(BIN)/python benchmarks/bench_dag.py
	$(BIN)/python benchmarks/bench_latent_inversion.py
	$(BIN)/python benchmarks/bench_vlmdiff.py --skip-cpu-steps
	$(BIN)/python benchmarks/bench_datapath.py

# Once per cluster user: `snakemake --profile slurm` then works as typed.
slurm-profile: $(VENV)/.slurm
	$(BIN)/python -m diffad.profiles $(if $(ACCOUNT),--account $(ACCOUNT)) \
	    $(if $(PARTITION),--partition $(PARTITION))

clean:
	rm -rf results logs .snakemake
