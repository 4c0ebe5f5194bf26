# Each target sets up its own environment (.venv) from the package registry, then runs.
PYTHON ?= python3
VENV ?= .venv
# torch first, pinned: a bare "torch" requirement would pull a multi-GB CUDA build. On a GPU
# machine pass e.g. TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128".
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | sha256sum | cut -c1-12)

.PHONY: demo test bench lint

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check $(TORCH)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[dev,hands,captions]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: $(STAMP)  ## synthetic Phoenix14T corpus through every stage
	$(VENV)/bin/prep demo --out demo-out

test: $(STAMP)  ## the whole test suite
	$(VENV)/bin/python -m pytest

bench: $(STAMP)  ## benchmark scripts (needs Debian's ffmpeg for the decode comparison)
	$(VENV)/bin/python bench/decode.py
	$(VENV)/bin/python bench/pseudo_gloss.py
	$(VENV)/bin/python bench/features.py
	$(VENV)/bin/python bench/hands.py

lint: $(STAMP)
	$(VENV)/bin/ruff check pipeline stages manifests tests bench
