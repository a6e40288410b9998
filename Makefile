# The two commands of the README:
#   make demo   install everything and build the atlas + circuit report of the shipped model
#   make test   install everything and run the tests
# Both create and reuse the virtual environment in $(VENV). For working on the code:
#   make lint       ruff check and ruff format --check (what CI runs before the tests)
#   make test-fast  the tests not marked slow
#   make test-gpu   the CUDA tests (needs_cuda), on a machine with a GPU and the CUDA kernels built
#   make bench      the benchmarks, each a side-by-side run (slow; results are printed)

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
OUT ?= atlas

# The CUDA kernels are built when a CUDA toolkit is found and a GPU is visible or FORCE_CUDA=1.
# CUDA_HOME: as given, else the conventional /usr/local/cuda, else the folder above nvcc.
NVCC := $(shell command -v nvcc 2>/dev/null)
ifeq ($(CUDA_HOME),)
CUDA_HOME := $(firstword $(wildcard /usr/local/cuda) $(patsubst %/bin/nvcc,%,$(NVCC)))
endif
ifneq ($(CUDA_HOME),)
export CUDA_HOME
endif
export MAX_JOBS ?= 2

CSRC := $(shell find csrc -name '*.cpp' -o -name '*.h' -o -name '*.cu')

.PHONY: demo test test-fast test-gpu lint bench install build clean

$(VENV)/.deps:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q torch torchvision
	$(PIP) install -q numpy pillow tqdm scikit-learn matplotlib ninja pytest hypothesis nbformat nbclient ipykernel selenium "ruff==0.17.6"
	# lucent is the reference we measure against; its pinned kornia is installed without its stale dependency pins.
	$(PIP) install -q --no-deps "torch-lucent==0.1.8" "kornia<=0.4.1"
	$(PIP) install -q decorator
	touch $@

$(VENV)/.installed: $(VENV)/.deps pyproject.toml setup.py
	CIRCUITS_VISION_SKIP_EXT=1 $(PIP) install -q --no-build-isolation --no-deps -e .
	touch $@

# The extension is rebuilt in place, incrementally, whenever a source changes.
$(VENV)/.built: $(VENV)/.installed $(CSRC) setup.py
	$(PY) setup.py -q build_ext --inplace
	touch $@

# The atlas viewer's end-to-end test drives Debian's headless Chromium through chromedriver.
$(VENV)/.browser: $(VENV)/.deps
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then \
	  echo "chromium: $$(command -v chromium)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) \
	    || echo "could not install chromium; the browser test will be skipped"; \
	else \
	  echo "chromium and chromedriver are missing (install Debian's chromium chromium-driver); the browser test will be skipped"; \
	fi
	touch $@

install: $(VENV)/.built

build: $(VENV)/.built

demo: install
	$(PY) -m circuits_vision.cli demo --out $(OUT)

test: install $(VENV)/.browser
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

test-gpu: install
	$(PY) -m pytest -q -m needs_cuda -rs

# ruff check must pass; ruff format --check lists the files the formatter would change. ruff is pinned
# (here, in the test extra and in .pre-commit-config.yaml) because the formatter's output changes between versions.
$(VENV)/bin/ruff: $(VENV)/.deps
	$(PIP) install -q "ruff==0.17.6"

lint: $(VENV)/bin/ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

BENCHMARKS := image_pipeline expanded_weights equivariance feature_vis compile_step activation_atlas atlas
bench: install
	@for b in $(BENCHMARKS); do echo "== benchmarks/$$b.py"; OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(PY) benchmarks/$$b.py || exit 1; done

clean:
	rm -rf build $(VENV) circuits_vision/_C*.so
