# Thin shell over the kit's CLI (`transfer-kit`, runner/cli.py).
# `make demo` runs the embedded experiment; `make test` runs the tests. Both
# install what they need first (Debian packages, the venv, the Caffe build).

PYTHON   ?= python3.11
VENV     ?= .venv
WORK     ?= work
DATASET  ?= fa20
SEED     ?= 0
ITERS    ?=
TREATMENT ?=
FORCE    ?=
PYTEST_ARGS ?=

KIT      := $(VENV)/bin/transfer-kit
STAMP    := $(VENV)/.kit-venv-complete
export GLOG_logtostderr := 1

.PHONY: help setup system venv caffe dataset split-random train plots demo test test-fast

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

system:  ## install missing Debian packages (apt-get)
	@bash runner/install_system.sh

$(STAMP): requirements.txt setup.py
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null || { echo "error: the kit needs Python 3.11 as '$(PYTHON)'; fix: make PYTHON=/path/to/python3.11" >&2; exit 1; }
	@rm -f $(STAMP)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps -r requirements.txt
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)  ## the Python venv with the pinned packages and the kit

caffe: system venv  ## build CPU Caffe + pycaffe once into ~/.cache (CAFFE_ROOT=... uses yours)
	@bash runner/build_caffe.sh $(VENV)

setup: caffe  ## everything the kit needs

dataset: setup  ## build the embedded FA-20 dataset (and its contact sheet)
	$(KIT) dataset --work $(WORK) --dataset $(DATASET)

split-random: setup  ## a random A/B split with its LMDBs and means: DATASET=fa20 SEED=0
	$(KIT) split-random --work $(WORK) --dataset $(DATASET) --seed $(SEED) $(if $(FORCE),--force)

train: setup  ## train one treatment: TREATMENT=A3B+ DATASET=fa20 SEED=0
	$(KIT) train --work $(WORK) --dataset $(DATASET) --seed $(SEED) --treatment '$(TREATMENT)' $(if $(ITERS),--iters $(ITERS)) $(if $(FORCE),--force)

plots: setup  ## redraw the figures from the logs of the runs that exist
	$(KIT) plots --work $(WORK) --dataset $(DATASET) --seed $(SEED)

demo: setup  ## the whole experiment on FA-20: split, 2 bases, 28 transfers, plot
	$(KIT) demo --work $(WORK) --dataset $(DATASET) --seed $(SEED) $(if $(ITERS),--iters $(ITERS))

test: setup  ## install everything, then run the whole test suite
	$(VENV)/bin/python -m pytest tests $(PYTEST_ARGS)

test-fast: setup  ## the tests without the slow end-to-end ones
	$(VENV)/bin/python -m pytest tests -m "not slow" $(PYTEST_ARGS)
