# NEXUS Grid. `make up` starts a local grid, `make test` runs the whole suite.
# Both work on a fresh clone: they create .venv and install what is needed.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: up test lint unit browser install clean bench

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -r requirements-dev.txt
	# the project itself: its packages importable from anywhere, and the `nexus` script
	$(PIP) install --quiet --no-deps -e .
	touch $@

# Headless Chromium for the browser test, from Debian's packages (needs root or sudo).
# A machine that already has Chromium or Google Chrome (GitHub's runners do) keeps it.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v google-chrome >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

up: install
	$(PY) -m scripts.grid --workers 2 --ui

lint: install
	$(PY) -m ruff check .
	$(PY) -m mypy nexus_common master_app worker_node database nexus_ops scripts
	$(VENV)/bin/lint-imports

# Two processes (pytest-xdist), one test module per process at a time: most tests wait on
# real servers and subprocesses, so two cores run the suite in about 6 minutes.
unit: install browser
	$(PY) -m pytest -n 2 --dist loadfile

test: lint unit

bench: install
	$(PY) -m scripts.bench

clean:
	rm -rf $(VENV) .nadg .pytest_cache .mypy_cache .ruff_cache .hypothesis .import_linter_cache
