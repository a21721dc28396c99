# One virtual environment serves every target; each target installs what it needs first.
# torch and torchvision are pinned here to the releases that lie on the development
# machines' disk (other versions download gigabytes); pyproject.toml keeps a normal range.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH  := torch==2.14.1 torchvision==0.29.1
EXTRAS := dev,plot,grib,simulation,tables

.PHONY: install demo test test-fast lint bench clean fluidgpt-sample fluidgpt-dataset openfoam pretrained

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: install
	$(VENV)/bin/geoformer info --preset pangu
	$(VENV)/bin/geoformer demo --config experiments/geoformer/demo.yaml --overwrite
	$(VENV)/bin/fluidgpt demo --overwrite

# Rebuild geoformer's shipped Held-Suarez checkpoints (geoformer/pretrained/, what the demo
# scores): fixed seeded steps on the CPU, about 45 minutes on 2 idle cores.
pretrained: install
	OMP_NUM_THREADS=2 $(VENV)/bin/geoformer demo --config experiments/geoformer/demo.yaml \
	  --plan experiments/geoformer/pretrained_plan.yaml --overwrite

test: install
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow"

lint: install
	$(VENV)/bin/ruff check geoformer fluidgpt tests

# The benchmark suite (docs/benchmarks.md), side by side with NVIDIA physicsnemo's Pangu: run
# it alone on the machine (about half an hour on 2 cores); JSON lines go to bench.jsonl.
bench: install
	$(PY) -m pip install --quiet "nvidia-physicsnemo>=2.2"
	$(PY) experiments/benchmarks/run.py --output bench.jsonl

# The fluidgpt datasets need OpenFOAM (Debian's openfoam package, GPL, installed as root).
openfoam:
	command -v icoUncoupledKinematicParcelFoam >/dev/null || \
	  (apt-get update && apt-get install -y openfoam)

fluidgpt-sample: install openfoam  # rebuild the shipped 160-case sample and its noise pairs
	$(VENV)/bin/fluidgpt dataset build --recipe datasets/elbow_erosion/recipe.yaml \
	  --profile sample --output fluidgpt/sample_data/elbow_sample.nc --overwrite
	$(VENV)/bin/fluidgpt dataset build --recipe datasets/elbow_erosion/recipe.yaml \
	  --profile sample --variant noise_ceiling \
	  --output fluidgpt/sample_data/elbow_sample_noise.nc --overwrite

fluidgpt-dataset: install openfoam  # the full sweep (hundreds of cases, about an hour or more)
	$(VENV)/bin/fluidgpt dataset build --recipe datasets/elbow_erosion/recipe.yaml \
	  --output data/elbow_erosion.zarr

clean:
	rm -rf $(VENV) demo-output pretrained-output .pytest_cache
