# Gradient Flow: `make lab` to study, `make test` to check everything.
# Needs only Python 3.11 and make; everything else goes into .venv.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Extra arguments for JupyterLab, e.g. make lab ARGS="--no-browser --port 8899"
ARGS   ?=
# Jupyter refuses to start as root (common in containers) unless told it may
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
# Threads for `make notebooks`; `make test` checks them with 1 thread per kernel, 2 kernels at a time.
THREADS ?= 2

# Regression runs must not store progress bars, and must pin thread counts.
# OMP_WAIT_POLICY=PASSIVE: idle OpenMP threads sleep instead of spinning, which on a busy
# 2-core machine made torch's fused RNN layers ~30x slower; results are unchanged.
NB_ENV := COURSE_PROGRESS=0 PYTHONHASHSEED=0 OMP_WAIT_POLICY=PASSIVE
NBVAL  := -p no:cacheprovider --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: help install lab test lint unit nbval notebooks benchmarks clean

help:
	@echo "make lab        set up .venv (first time) and open the course in JupyterLab"
	@echo "make test       set up, then ruff + unit tests + notebook hygiene + nbval on every notebook"
	@echo "make notebooks  re-execute every notebook in order (maintainers)"
	@echo "make benchmarks time each notebook and the overhead of fit() and GradientMonitor"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.txt
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

lab: install
	@echo "JupyterLab is starting; stop it with Ctrl-C (twice) in this terminal."
	$(BIN)/jupyter lab --notebook-dir=notebooks $(ROOT_FLAG) $(ARGS)

lint: install
	$(BIN)/ruff check .

unit: install
	$(BIN)/python -m pytest -q tests helpers

nbval: install
	env $(NB_ENV) OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -q $(NBVAL) -n 2 --dist loadfile notebooks

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q tests helpers
	env $(NB_ENV) OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -q $(NBVAL) -n 2 --dist loadfile notebooks

notebooks: install
	env $(NB_ENV) OMP_NUM_THREADS=$(THREADS) MKL_NUM_THREADS=$(THREADS) $(BIN)/python tools/run_notebooks.py notebooks/*.ipynb

benchmarks: install
	env $(NB_ENV) OMP_NUM_THREADS=$(THREADS) MKL_NUM_THREADS=$(THREADS) $(BIN)/python benchmarks/notebooks.py
	env OMP_NUM_THREADS=$(THREADS) MKL_NUM_THREADS=$(THREADS) $(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
