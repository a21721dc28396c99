# One virtual environment serves every target; each target installs what it needs first.
# torch and torchvision are pinned here to the releases that lie on the development
# machines' disk (other versions download gigabytes); pyproject.toml keeps a normal range.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH  := torch==2.14.1 torchvision==0.29.1
EXTRAS := dev,plot,grib,simulation

.PHONY: install demo test test-fast lint clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: install
	$(VENV)/bin/geoformer info --preset pangu
	$(VENV)/bin/geoformer info --preset small-5.625 --time

test: install
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow"

lint: install
	$(VENV)/bin/ruff check geoformer fluidgpt tests

clean:
	rm -rf $(VENV) demo-output .pytest_cache
