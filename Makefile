# Thin shell over the kit's CLI (`transfer-kit`, runner/cli.py).
# `make demo` runs the embedded experiment; `make test` runs the tests. Both
# install what they need first (Debian packages, the venv, the Caffe build).

PYTHON   ?= python3.11
VENV     ?= .venv
WORK     ?= work
DATASET  ?= fa20
SEED     ?= 0
SEEDS    ?= $(SEED)
ITERS    ?=
TREATMENT ?=
FORCE    ?=
# VERBOSE=1: Caffe's output (its glog lines, also in each run's train.log) and the kit's debug lines on the
# terminal too (--verbose); by default the kit prints its own short progress lines only
VERBOSE  ?=
PYTEST_ARGS ?=
# ImageNet (DATASET=imagenet): LISTS = folder with Caffe's synsets.txt, train.txt,
# val.txt; IMAGES = ILSVRC2012 image folder (train/, val/): given, the split
# targets also build the split's LMDBs and means (every image decoded once, into
# $(WORK)/imagenet/dataset); PERCLASS = k of split-reduced; JOBS = decoding processes;
# ENCODED=1 stores JPEG Datums (as convert_imageset --encoded; needs CAFFE_OPENCV=1).
LISTS    ?=
ENCODED  ?=
IMAGES   ?=
PERCLASS ?=
RUNS     ?=
JOBS     ?= 1
# The grid (make grid / make status): PROTOCOL = random, natman, ...; JOBS = local
# runs at a time (compute threads: cores // JOBS); ENGINE = local or slurm;
# TREATMENTS = comma-separated subset; MODE = cpu or gpu (Caffe's mode);
# SLURM_CONFIG = TOML file overriding runner/slurm.toml.
# Replicates (docs/runs.md): REPEAT = r of make train (r >= 1: runs/<treatment>.r<r>, solver
# seed + 1000 * r, the same data, iterations and r = 0 base); REPEATS = R of make grid / status
# (each treatment's r = 0..R-1; default 1); make publish REPEATS=1 publishes the splits'
# runs beyond their grids (replicates, baseB2x) into RECORDS/extra/<split>/ instead.
REPEAT   ?=
REPEATS  ?=
PROTOCOL ?= random
ENGINE   ?= local
TREATMENTS ?=
MODE     ?= cpu
SLURM_CONFIG ?=
# make verify: FULL=1 checks every record of each LMDB (default: record counts, sizes and sampled records)
FULL     ?=
# Analysis: ORIGINAL = an imported authors' results table (make import-original)
# drawn as hollow markers by make plots; RESULTS_DIR = the authors' results/
# folder; RESULTS = a results table CSV (make table1); MODEL/OUT of make filters.
# Run records: RECORDS = a folder of published run records (results/fa20; make publish writes it, make plots
# RECORDS=... draws from it alone; DOCS=1 also rewrites docs/img, docs/results.md and the README's results);
# SPLITS = the split folders make publish takes (default: every finished grid); MIXED=1 allows records of
# several Caffe builds or protocols side by side, and make plots of a work folder to pool runs of other settings.
ORIGINAL ?=
RESULTS_DIR ?=
RESULTS  ?=
MODEL    ?=
OUT      ?=
RECORDS  ?=
DOCS     ?=
SPLITS   ?=
MIXED    ?=
# Toy runs of the paper's CaffeNet (make train / grid / status): BATCH = train and val batch instead of the net
# template's; TEST_ITER = test batches per test instead of the solver's (a run records both: asked with others,
# it is refused as 'other settings')
BATCH    ?=
TEST_ITER ?=
RUN_OPTS = $(if $(PERCLASS),--per-class '$(PERCLASS)') $(if $(MIX),--mix '$(MIX)') $(if $(BATCH),--batch '$(BATCH)') $(if $(TEST_ITER),--test-iter '$(TEST_ITER)')
GRID_ARGS = --work $(WORK) --dataset $(DATASET) --seed $(SEED) --protocol $(PROTOCOL) $(if $(TREATMENTS),--treatments '$(TREATMENTS)') $(RUN_OPTS) $(if $(REPEATS),--repeats '$(REPEATS)')
# Your own images (make dataset DATASET=NAME IMAGES=DIR): NET = small (the CPU-scale net at the
# images' size; the default for 64 px or less) or caffenet (the paper's); VAL_FRACTION = share of
# each class held out as val when DIR has no train/ and val/; GROUPS = class,group CSV of split-groups.
NET      ?=
VAL_FRACTION ?=
GROUPS   ?=
# Task distance (make split-mix, PROTOCOL=mix): MIX = m, the classes swapped between natman's halves (FA-20: 0..5),
# or P% of half A's classes (0%..50%; ImageNet, your GROUPS); split mix<SEED>m<m>; make experiment GRIDS=mix: m,... of
# each seed (default FA-20's 0..5)
MIX      ?=
# make demo: GRIDS = random (the default: each seed's random split), or all (adds natman and the
# whole dataset: Figure 3), or a comma-separated list of random, natman, whole
GRIDS    ?=
# make experiment (docs/runs.md): GRIDS as make demo's plus reduced (ImageNet) and mix (GRIDS=all: every grid of the
# paper the dataset has), PERCLASS = the reduced grid's k, comma-separated (default: the authors' 12); TREATMENTS = only these runs of
# each grid (a toy or partial experiment: every grid keeps one, every transfer its base); DRY_RUN=1 prints the graph,
# the commands or sbatch lines and the cost, and runs nothing; GPU_CHECK = a make gpu-check gpu_check.json (or its
# OUT folder) for the projected GPU-hours (default: $(WORK)/gpu-check); JOBS (given) = local runs at a time
DRY_RUN  ?=
GPU_CHECK ?=
# Caffe: CAFFE_OPENCV=1 builds and wires the variant with OpenCV (convert_imageset, encoded
# Datums); CAFFE_OPENCV=0 goes back to the plain one; unset keeps the one wired now.
CAFFE_OPENCV ?=
# DNNL=1 runs the CPU build's Convolution, InnerProduct, Pooling, LRN and ReLU on oneDNN (the
# default where it runs: x86-64 with SSE4.1); DNNL=0 builds and wires Caffe's own CPU layers;
# unset keeps the engine wired now. The reference and GPU builds never use it.
DNNL     ?=
# GPU Caffe (make caffe CUDA=1; CUDA=0 wires the CPU build back; unset keeps the one wired now):
# CUDA_HOME = the toolkit (else nvcc on PATH, else NVIDIA's CUDA 13 wheels from PyPI);
# CUDA_ARCH = "80 90" (default: every architecture the toolkit builds for from sm_70);
# CUDNN = 0 (off) or 1 (required; default: used when found), CUDNN_HOME = its folder.
CUDA     ?=
CUDA_ARCH ?=
CUDNN    ?=
# make test-cuda builds for this one architecture (each one adds about 25 minutes on 2 cores)
TEST_CUDA_ARCH ?= 90
# make gpu-pack / gpu-check: the folder of what the check carries to a GPU machine
PACK     ?= gpu-pack
CUDA_VARS = CUDA='$(CUDA)' CUDA_ARCH='$(CUDA_ARCH)' CUDNN='$(CUDNN)'
LIST_ARGS = $(if $(LISTS),--lists '$(LISTS)') $(if $(IMAGES),--images '$(IMAGES)') --jobs $(JOBS) $(if $(filter 1,$(ENCODED)),--encoded)
LIST_ARGS_EXPERIMENT = $(if $(LISTS),--lists '$(LISTS)') $(if $(IMAGES),--images '$(IMAGES)') $(if $(filter 1,$(ENCODED)),--encoded)
# split-natural, split-whole and split-reduced default to ImageNet: DATASET is passed on only when given
DATASET_IF_GIVEN = $(if $(filter command line environment,$(origin DATASET)),--dataset $(DATASET))

KIT      := $(VENV)/bin/transfer-kit$(if $(filter 1,$(VERBOSE)), --verbose)
STAMP    := $(VENV)/.kit-venv-complete
export GLOG_logtostderr := 1

.PHONY: help setup system venv caffe caffe-opencv caffe-cuda caffe-reference caffe-nodnnl dataset split-random split-natural split-whole split-reduced split-small split-mix split-groups train grid status verify plots publish publish-evidence import-original table1 filters bench bench-import demo experiment experiment-status lint test test-cuda test-fast gpu-pack gpu-check compare-original

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

system:  ## install missing Debian packages (apt-get); CAFFE_OPENCV=1 adds OpenCV's core/imgproc/imgcodecs
	@CAFFE_OPENCV='$(CAFFE_OPENCV)' bash caffe_build/install_system.sh

$(STAMP): requirements.txt setup.py
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null || { echo "error: the kit needs Python 3.11 as '$(PYTHON)'; fix: make PYTHON=/path/to/python3.11" >&2; exit 1; }
	@rm -f $(STAMP)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -qq --disable-pip-version-check --no-deps -r requirements.txt
	$(VENV)/bin/pip install -qq --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)  ## the Python venv with the pinned packages and the kit

caffe: system venv  ## build Caffe + pycaffe once into ~/.cache and wire it in (CAFFE_ROOT=... uses yours; CAFFE_OPENCV=1: with OpenCV; CUDA=1 [CUDA_ARCH="80 90"]: for NVIDIA GPUs)
	@CAFFE_OPENCV='$(CAFFE_OPENCV)' DNNL='$(DNNL)' $(CUDA_VARS) bash caffe_build/build_caffe.sh $(VENV)

caffe-cuda: system venv  ## build GPU Caffe without wiring it in (its root: $(VENV)/caffe_cuda_root; make test-cuda uses it)
	@CAFFE_OPENCV=0 CUDA=1 CUDA_ARCH='$(CUDA_ARCH)' CUDNN='$(CUDNN)' CAFFE_WIRE=0 bash caffe_build/build_caffe.sh $(VENV) >/dev/null

caffe-opencv: venv  ## build the OpenCV variant without wiring it in (its root: $(VENV)/caffe_opencv_root; the tests use it)
	@CAFFE_OPENCV=1 bash caffe_build/install_system.sh
	@CAFFE_OPENCV=1 DNNL='$(DNNL)' CAFFE_WIRE=0 bash caffe_build/build_caffe.sh $(VENV) >/dev/null

caffe-nodnnl: system venv  ## build the fast CPU Caffe with its own layers (DNNL=0), never wired: make bench compares the oneDNN build with it
	@CAFFE_OPENCV=0 DNNL=0 CAFFE_WIRE=0 bash caffe_build/build_caffe.sh $(VENV) >/dev/null

caffe-reference: system venv  ## build the kit's Caffe as before its speed work (Debian's OpenBLAS, -O2), never wired: make bench and the tests compare with it
	@CAFFE_OPENCV=0 CAFFE_REFERENCE=1 bash caffe_build/build_caffe.sh $(VENV) >/dev/null

setup: caffe  ## everything the kit needs

dataset: setup  ## build the embedded FA-20 (and its contact sheet), or add your images: DATASET=NAME IMAGES=DIR [NET=small|caffenet] [VAL_FRACTION=0.2]
	$(KIT) dataset --work $(WORK) --dataset $(DATASET) $(if $(IMAGES),--images '$(IMAGES)' --jobs $(JOBS) $(if $(NET),--net $(NET)) $(if $(VAL_FRACTION),--val-fraction $(VAL_FRACTION)) $(if $(FORCE),--force))

split-groups: setup  ## your dataset's dissimilar split, two groups of classes: DATASET=NAME GROUPS=file.csv (lines class,group)
	$(KIT) split-groups --work $(WORK) --dataset $(DATASET) --groups '$(GROUPS)' $(if $(FORCE),--force)

split-random: setup  ## a random A/B split with its LMDBs and means: DATASET=fa20 SEED=0 (imagenet: LISTS=dir [IMAGES=dir])
	$(KIT) split-random --work $(WORK) --dataset $(DATASET) --seed $(SEED) $(if $(FORCE),--force) $(LIST_ARGS)

split-natural: setup  ## natural (A) / man-made (B) split: LISTS=dir [IMAGES=dir], or DATASET=fa20
	$(KIT) split-natural --work $(WORK) $(DATASET_IF_GIVEN) $(LIST_ARGS) $(if $(FORCE),--force)

split-whole: setup  ## all classes as one half 'all' (random frozen weights): DATASET=fa20, or LISTS=dir [IMAGES=dir]
	$(KIT) split-whole --work $(WORK) $(DATASET_IF_GIVEN) $(LIST_ARGS) $(if $(FORCE),--force)

split-reduced: setup  ## ImageNet, first PERCLASS train images of every class: PERCLASS=k LISTS=dir [IMAGES=dir]
	$(KIT) split-reduced --work $(WORK) $(DATASET_IF_GIVEN) $(if $(PERCLASS),--per-class '$(PERCLASS)') $(LIST_ARGS) $(if $(FORCE),--force)

split-small: setup  ## a small target: SEED's random halves, B's train set cut to its first PERCLASS images per class: DATASET=fa20 SEED=0 PERCLASS=k
	$(KIT) split-small --work $(WORK) --dataset $(DATASET) --seed $(SEED) $(if $(PERCLASS),--per-class '$(PERCLASS)') $(if $(FORCE),--force) $(LIST_ARGS)

split-mix: setup  ## task distance: natman's halves with MIX classes swapped, drawn with SEED: SEED=0 MIX=m [DATASET=fa20] [GROUPS=file.csv: your dataset's] (imagenet: LISTS=dir [IMAGES=dir])
	$(KIT) split-mix --work $(WORK) --dataset $(DATASET) --seed $(SEED) $(if $(MIX),--mix '$(MIX)') $(if $(GROUPS),--groups '$(GROUPS)') $(if $(FORCE),--force) $(LIST_ARGS)

train: setup  ## train one treatment: TREATMENT=A3B+ DATASET=fa20 SEED=0 [PROTOCOL=random] [MODE=gpu] [PERCLASS=k] [MIX=m] [REPEAT=r: replicate r] [BATCH=b] [TEST_ITER=t]
	$(KIT) train --work $(WORK) --dataset $(DATASET) --seed $(SEED) --protocol $(PROTOCOL) --treatment '$(TREATMENT)' --$(MODE) $(if $(ITERS),--iters $(ITERS)) $(RUN_OPTS) $(if $(REPEAT),--repeat '$(REPEAT)') $(if $(FORCE),--force)

grid: setup  ## every treatment of a protocol, bases first: PROTOCOL=random DATASET=fa20 SEED=0 [JOBS=2] [ENGINE=slurm] [REPEATS=R: r = 0..R-1 of each]
	$(KIT) grid $(GRID_ARGS) --jobs $(JOBS) --engine $(ENGINE) --$(MODE) $(if $(ITERS),--iters $(ITERS)) $(if $(SLURM_CONFIG),--slurm-config '$(SLURM_CONFIG)')

status: setup  ## the state of every run of a grid (and its Slurm jobs): PROTOCOL=random DATASET=fa20 SEED=0 [PERCLASS=k] [REPEATS=R]
	$(KIT) status $(GRID_ARGS) $(if $(ITERS),--iters $(ITERS))

verify: setup  ## check a prepared split's LMDBs, means and manifest: DATASET=fa20 PROTOCOL=random SEED=0 [PERCLASS=k] [FULL=1: every record]
	$(KIT) verify --work $(WORK) --dataset $(DATASET) --protocol $(PROTOCOL) --seed $(SEED) $(if $(PERCLASS),--per-class '$(PERCLASS)') $(if $(MIX),--mix '$(MIX)') $(if $(filter 1,$(FULL)),--full)

plots: $(if $(RECORDS),venv,setup)  ## results table, Figures 2 and 3, Table 1, curves from the runs' logs [ORIGINAL=authors.csv]; RECORDS=results/fa20: from the published records alone [OUT=dir] [DOCS=1: into docs/ and the README]
	$(KIT) plots --work $(WORK) --dataset $(DATASET) --seed $(SEED) $(if $(ORIGINAL),--original '$(ORIGINAL)') $(if $(RECORDS),--records '$(RECORDS)' $(if $(OUT),--out '$(OUT)') $(if $(filter 1,$(DOCS)),--docs docs)) $(if $(filter 1,$(MIXED)),--allow-mixed)

publish: venv  ## publish WORK's finished grids (each split's every run) as run records into RECORDS=results/DATASET [SPLITS=random0,natman] [MIXED=1] [REPEATS=1: the runs beyond the grids instead (replicates, baseB2x), into RECORDS/extra/]
	$(KIT) publish --work $(WORK) --dataset $(DATASET) $(if $(RECORDS),--records '$(RECORDS)') $(if $(SPLITS),--splits '$(SPLITS)') $(if $(filter 1,$(MIXED)),--allow-mixed) $(if $(REPEATS),--repeats)

publish-evidence: venv  ## publish retrained published runs that ended in their records' models (evidence that this build trains the same nets): RUNS=small0k5/baseB,... [WORK=dir] [RECORDS=results/DATASET]
	$(KIT) publish-evidence --work $(WORK) --dataset $(DATASET) --runs '$(RUNS)' $(if $(RECORDS),--records '$(RECORDS)')

import-original: venv  ## the authors' results/ folder as a results table: RESULTS_DIR=DIR [OUT=FILE.csv] [DOCS=1: their reduced-data figure into docs/ and the README]
	$(KIT) import-original '$(RESULTS_DIR)' --out '$(or $(OUT),$(WORK)/original/results.csv)' --curves '$(WORK)/original/curves' $(if $(filter 1,$(DOCS)),--docs docs)

table1: setup  ## print the paper's Table 1 from a results table: RESULTS=FILE.csv
	$(KIT) table1 '$(RESULTS)'

filters: setup  ## conv1 filters of a model as an image grid: MODEL=X.caffemodel OUT=X.png
	$(KIT) filters '$(MODEL)' --out '$(OUT)'

bench: setup caffe-reference caffe-nodnnl  ## print the kit's speed figures: (a) kit vs bare caffe, (b) frozen A7B vs baseB, (c) data prep, (d) grid, (e) Caffe vs sgemm and the reference build, (f) per-layer times, (g) checking a split before a run, (h) the report from the run records
	$(VENV)/bin/python bench/bench_kit.py
	$(VENV)/bin/python bench/bench_verify.py
	$(VENV)/bin/python bench/bench_records.py

bench-import: setup  ## time import-original on a synthetic folder the size of the authors' (354 logs, 213 MB)
	$(VENV)/bin/python bench/bench_import.py --jobs 2

demo: setup  ## the experiment on FA-20: the random split's 30 runs and the figures [SEEDS=0,1,2,3] [GRIDS=all: also natural/man-made, random weights]
	$(KIT) demo --work $(WORK) --dataset $(DATASET) --seeds '$(SEEDS)' $(if $(ITERS),--iters $(ITERS)) $(if $(GRIDS),--grids '$(GRIDS)')

experiment: setup  ## the whole experiment as one graph: splits prepared, every grid, the figures; here, or ENGINE=slurm: one job graph submitted in seconds (again: only what is missing) [SEEDS=0,1,2,3] [GRIDS=all] [DATASET=imagenet LISTS=dir IMAGES=dir] [PERCLASS=k,...] [GRIDS=mix MIX=m,...] [MODE=gpu] [DRY_RUN=1]
	$(KIT) experiment --work $(WORK) --dataset $(DATASET) --seeds '$(SEEDS)' --engine $(ENGINE) --$(MODE) $(if $(GRIDS),--grids '$(GRIDS)') $(if $(PERCLASS),--per-class '$(PERCLASS)') $(if $(MIX),--mix '$(MIX)') $(if $(TREATMENTS),--treatments '$(TREATMENTS)') $(if $(ITERS),--iters $(ITERS)) $(if $(REPEATS),--repeats '$(REPEATS)') $(LIST_ARGS_EXPERIMENT) $(if $(GROUPS),--groups '$(GROUPS)') $(if $(SLURM_CONFIG),--slurm-config '$(SLURM_CONFIG)') $(if $(GPU_CHECK),--gpu-check '$(GPU_CHECK)') $(if $(filter command line environment,$(origin JOBS)),--jobs $(JOBS)) $(if $(filter 1,$(DRY_RUN)),--dry-run)

experiment-status: setup  ## the last make experiment in WORK: each preparation step and grid finished / running / pending / failed (with its fix) / not submitted, and its Slurm jobs [DATASET=imagenet]
	$(KIT) experiment-status --work $(WORK) --dataset $(DATASET)

compare-original: setup  ## the kit's CaffeNet files against authors' run folders: RUNS="DIR ..."
	$(KIT) compare-original $(RUNS)

lint: venv  ## ruff over the kit's Python (rules: ruff.toml); make test runs it first
	$(VENV)/bin/ruff check .

test: setup caffe-opencv caffe-reference lint  ## install everything (the OpenCV variant and the reference build too), lint, then run the whole test suite
	$(VENV)/bin/python -m pytest tests $(PYTEST_ARGS)

test-cuda: setup  ## build GPU Caffe for TEST_CUDA_ARCH (about 25 min on 2 cores, 1.2 GB of NVIDIA wheels if no toolkit has them) and run its tests; no GPU needed
	@$(MAKE) --no-print-directory caffe-cuda CUDA_ARCH='$(TEST_CUDA_ARCH)'
	KIT_TEST_CUDA=1 $(VENV)/bin/python -m pytest tests/test_caffe_cuda.py tests/test_cuda_toolkit.py $(PYTEST_ARGS)

gpu-pack: setup  ## pack what make gpu-check needs beyond the repo into PACK=gpu-pack (sdist, host .debs, FA-20 B half, nets; about 50 MiB) [FORCE=1]
	$(VENV)/bin/python bench/gpu_pack.py '$(PACK)' --work $(WORK) $(if $(FORCE),--force)

gpu-check:  ## on a GPU machine, no venv needed: GPU Caffe built from PACK, its GPU unit tests, CPU vs GPU training, caffe time of the paper's nets: PACK=gpu-pack OUT=dir [CAFFE_ROOT=build]
	bash bench/gpu_check.sh '$(PACK)' '$(or $(OUT),$(WORK)/gpu-check)' $(if $(CAFFE_ROOT),--root '$(CAFFE_ROOT)')

test-fast: setup lint  ## lint, then the tests without the slow end-to-end ones
	$(VENV)/bin/python -m pytest tests -m "not slow" $(PYTEST_ARGS)
