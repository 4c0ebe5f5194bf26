# Each target sets up its own environment (.venv) from the package registry, then runs.
PYTHON ?= python3
VENV ?= .venv
# torch first, pinned: a bare "torch" requirement would pull a multi-GB CUDA build; torchvision
# (transformers video processors, hand-captions) loads only beside this exact torch. On a GPU
# machine pass e.g. TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128".
TORCH ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha256sum | cut -c1-12)

.PHONY: demo test bench lint

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check $(TORCH)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[dev,hands,captions,remote]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: $(STAMP)  ## synthetic Phoenix14T corpus through every stage
	$(VENV)/bin/prep demo --out demo-out

test: $(STAMP)  ## the whole test suite
	$(VENV)/bin/python -m pytest

bench: $(STAMP)  ## every bench/*.py; table to bench/RESULTS.md and README (decode needs Debian's ffmpeg)
	$(VENV)/bin/python bench/all.py --readme README.md

lint: $(STAMP)  ## ruff's linter and formatter (the suite checks both too: tests/test_style.py)
	$(VENV)/bin/ruff check pipeline stages exporters manifests recipes tests bench examples
	$(VENV)/bin/ruff format --check pipeline stages exporters manifests recipes tests bench examples
