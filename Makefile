# Gradient Flow: `make lab` to study, `make test` to check everything.
# Needs only Python 3.11 to 3.14 and make; everything else goes into .venv.

# The newest python3.14 … python3.11 on PATH, else python3; or say which: make lab PYTHON=/path/to/python3
PYTHON ?= $(or $(firstword $(foreach v,14 13 12 11,$(shell python3.$(v) -c "import sys; print(sys.executable)" 2>/dev/null))),$(shell command -v python3))
# `make lock` resolves requirements.in into requirements.txt with this uv (installed into .venv).
UV_VERSION := 0.13.8
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
# On a busy machine add OMP_WAIT_POLICY=PASSIVE (idle OpenMP threads sleep instead of
# spinning: torch's fused RNN layers ran ~30x faster under load); on a quiet one it costs
# ~35 %, so it is not the default.
NB_ENV := COURSE_PROGRESS=0 PYTHONHASHSEED=0
NBVAL  := -p no:cacheprovider --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

# Unit tests carry markers (registered in pyproject.toml): browser, slow, distributed, device. MARKS selects
# among them in `make test`, `make unit` and `make test-gpu`, e.g. make unit MARKS="not browser and not slow";
# empty (the default) runs every test.
MARKS ?=
PYTEST_MARKS = $(if $(strip $(MARKS)),-m "$(MARKS)")

.PHONY: help install lab test lint unit nbval float-paths float-paths-full notebooks html browser check-machine check-wheels lock benchmarks determinism test-gpu clean

help:
	@echo "make lab        set up .venv (first time) and open the course in JupyterLab"
	@echo "make test       set up, then ruff + unit tests + notebook hygiene + nbval on every notebook under each CPU float path"
	@echo "                (MARKS=\"not browser\" leaves out the browser test and Chromium; markers: pyproject.toml)"
	@echo "make html       render the executed course to an offline site: site/index.html"
	@echo "make check-machine  check this machine for the course (workshop attendees: run it before the day)"
	@echo "make notebooks  re-execute every notebook in order (maintainers)"
	@echo "make lock       re-resolve requirements.in into the lock, requirements.txt (maintainers; network)"
	@echo "make check-wheels  check that every locked package has wheels for Python 3.11-3.14 on Linux, macOS, Windows (network)"
	@echo "make benchmarks measure every budget (docs/maintainers.md, Measured) into benchmarks/RESULTS.md (quiet machine)"
	@echo "make determinism execute every notebook twice in a scratch copy; fail on any byte of difference"
	@echo "make test-gpu   unit tests and notebooks (nbval-lax) with COURSE_DEVICE=cuda; skipped without CUDA"

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "No python3 found on PATH: install Python 3.11 to 3.14, or pass PYTHON=/path/to/python3"; exit 1; }
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; assert v >= (3, 11), "Python 3.11 or newer is required, found " + sys.version.split()[0]; v > (3, 14) and print("warning: Python %d.%d is newer than the course was tested with (3.11 to 3.14)" % v)'
	$(PYTHON) -m venv $(VENV)

# Bytecode: Python writes it for each module the first time one is imported (the ~2,300 that the course and its
# tests use), so pip is told not to compile all ~12,000 installed files (~40 CPU-seconds). Some machines (this
# course's CI among them) set PYTHONDONTWRITEBYTECODE: then nothing would write it and every kernel would compile
# torch again at each start (9.8 s instead of 6.4 s), so the recipes here run without that variable.
unexport PYTHONDONTWRITEBYTECODE

$(STAMP): requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-compile -r requirements.txt
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

lab: install
	@echo "JupyterLab is starting; stop it with Ctrl-C (twice) in this terminal."
	$(BIN)/jupyter lab --notebook-dir=notebooks $(ROOT_FLAG) $(ARGS)

lint: install
	$(BIN)/ruff check .

unit: install
	$(BIN)/python -m pytest -q -n 2 $(PYTEST_MARKS) tests helpers

# NB= narrows it to some notebooks, e.g. make nbval NB=notebooks/02_vanishing_exploding.ipynb
NB ?= notebooks
# Threads per notebook kernel in nbval runs, and kernels at a time (threads x kernels = the 2 cores:
# more would make OpenMP threads wait for each other and run many times slower).
GATE_THREADS ?= 1
GATE_KERNELS ?= 2
NBVAL_RUN = env $(NB_ENV) OMP_NUM_THREADS=$(GATE_THREADS) MKL_NUM_THREADS=$(GATE_THREADS) \
	$(BIN)/python -m pytest -q $(NBVAL) -n $(GATE_KERNELS) --dist loadfile
# NB must lie inside the repository: pytest names the cells of a notebook outside it "::Cell 3", without the
# file, and with -n 2 the cells of several such notebooks collide and only some of them run.
nbval: install
	@for nb in $(NB); do case "$$(cd "$$(dirname "$$nb")" 2>/dev/null && pwd -P)/" in "$(CURDIR)"/*) ;; \
	  *) echo "make nbval: NB must be inside the repository $(CURDIR), got $$nb"; exit 2 ;; esac; done
	$(NBVAL_RUN) $(NB)

# The cross-CPU gate (tools/float_paths.py): nbval under each CPU float path this machine can take,
# ATen, MKL and oneDNN capped together: native, avx2 (on AVX-512 CPUs) and default (scalar ATen).
# All pairs run in one pytest session, longest first; every one must pass. PROFILES="native default"
# narrows it; `make float-paths-full` adds sse (a CPU without AVX2) and runs every path with 1 and
# then 2 threads per kernel (maintainers, before re-executing the notebooks).
float-paths: install
	PROFILES="$(PROFILES)" $(BIN)/python tools/float_paths.py $(NBVAL_RUN) $(NB)

float-paths-full: install
	$(MAKE) float-paths GATE_THREADS=1 PROFILES=all
	$(MAKE) float-paths GATE_THREADS=2 GATE_KERNELS=1 PROFILES=all

# `make test` needs headless Chromium and a CJK font for the site's browser test (tests/test_site.py): as root
# with apt-get this installs Debian's chromium and fonts-wqy-microhei, otherwise it says how. MARKS="not browser"
# deselects the browser tests (marked `browser`) instead, and this checks nothing. Learners never need it
# (`make lab` does not depend on it).
browser:
	@MARKS="$(MARKS)" bash tools/install_browser.sh

# The two set-up steps run side by side: on a fresh CI machine Chromium's apt-get install (~30 s, mostly
# download and unpacking) overlaps pip's, which uses one core.
test:
	$(MAKE) --no-print-directory -j2 install browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 $(PYTEST_MARKS) tests helpers
	$(BIN)/python tools/float_paths.py $(NBVAL_RUN) notebooks

# The executed notebooks as committed (nothing is run), to a static site that works offline.
html: install
	$(BIN)/python tools/build_site.py --out site notebooks/*.ipynb

# Maintainers: re-resolve the lock after editing requirements.in. One universal resolution for
# Python 3.11+ on every OS (markers), minus torch's CUDA-only packages (see requirements.in).
UV_COMPILE = $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --custom-compile-command "make lock" requirements.in
lock: install
	$(BIN)/python -m pip install --disable-pip-version-check -q uv==$(UV_VERSION)
	$(UV_COMPILE) -o requirements.txt
	$(UV_COMPILE) -o requirements.txt $$(grep -oE '^(nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+|triton)==' requirements.txt | sed 's/==$$//; s/^/--no-emit-package /')
	@echo "make lock: $$(grep -c '==' requirements.txt) packages locked in requirements.txt"

# Maintainers, before changing a pin or the Python range: every locked package has a wheel
# (or is pure Python) for Python 3.11-3.14 on Linux x86_64, macOS arm64 and Windows (asks PyPI).
check-wheels: install
	$(BIN)/python tools/check_wheels.py requirements.txt

# For workshop attendees: Python, pinned packages, device, disk, and a timed training step.
check-machine: install
	$(BIN)/python tools/check_machine.py

notebooks: install
	env $(NB_ENV) OMP_NUM_THREADS=$(THREADS) MKL_NUM_THREADS=$(THREADS) $(BIN)/python tools/run_notebooks.py notebooks/*.ipynb

# Writes benchmarks/RESULTS.md: every budget of docs/maintainers.md's "Measured" table with its measured figure (about
# 3 x the course + one fresh-clone `make test`; run it on a quiet machine).
# BENCH_ARGS="--skip-fresh-clone" or "--repeat 5" to change it; "--quick" is a smoke test that writes nothing.
BENCH_ARGS ?=
benchmarks: install
	env $(NB_ENV) OMP_NUM_THREADS=$(THREADS) MKL_NUM_THREADS=$(THREADS) $(BIN)/python benchmarks/results.py $(BENCH_ARGS)

# Byte-stability: two executions of every notebook, in a scratch copy (the committed files are not
# touched), must be identical; a difference from the committed notebooks is reported too
# (it means they were not re-executed after a change). Takes two full `make notebooks`.
determinism: install
	@set -e; dir=$$(mktemp -d); \
	for run in first second; do \
	  cp -r notebooks $$dir/$$run; \
	  env $(NB_ENV) OMP_NUM_THREADS=$(THREADS) MKL_NUM_THREADS=$(THREADS) $(BIN)/python tools/run_notebooks.py $$dir/$$run/*.ipynb; \
	done; \
	if diff -rq $$dir/first $$dir/second; then echo "determinism: two executions are byte-identical"; \
	else echo "determinism: FAILED, the notebooks above differ between two executions (kept in $$dir)"; exit 1; fi; \
	if diff -rq notebooks $$dir/first; then echo "determinism: the committed notebooks equal a fresh execution"; \
	else echo "determinism: FAILED, the committed notebooks above differ from a fresh execution (kept in $$dir)"; exit 1; fi; \
	rm -rf $$dir

# On a machine with an NVIDIA GPU (and a CUDA build of torch): the unit tests with
# COURSE_DEVICE=cuda (the tests marked `device`, tests/test_on_device.py, then run on the GPU; MARKS=device runs
# only those, MARKS="not browser" all but the browser test), and every notebook on the
# GPU compared loosely (--nbval-lax: only cells marked NBVAL_CHECK_OUTPUT are compared, since
# GPU kernels round differently). Not part of `make test`; nothing requires a GPU.
test-gpu: install
	@if $(BIN)/python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then \
	  env COURSE_DEVICE=cuda $(BIN)/python -m pytest -q $(PYTEST_MARKS) tests helpers && \
	  env $(NB_ENV) COURSE_DEVICE=cuda OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -q $(NBVAL) --nbval-lax -n 2 --dist loadfile notebooks; \
	else \
	  echo "make test-gpu: skipped, torch $$($(BIN)/python -c 'import torch; print(torch.__version__)') sees no CUDA device here."; \
	  echo "Run it on a machine with an NVIDIA GPU and a CUDA build of torch (pip install torch==<pinned> from the CUDA index)."; \
	fi

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
