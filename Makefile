# Two commands for a fresh machine with Python 3.11+:  make demo  and  make test
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' && echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
export PYTHONUNBUFFERED := 1

.PHONY: install lock demo test test-fast bench lint screenshots clean

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is needed"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# The exact versions of requirements.lock (hash-checked), then the project itself on top of them;
# pyproject.toml keeps the ranges an integrator's install resolves against.
$(VENV)/.installed: pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

install: $(VENV)/.installed

## make lock: pin every dependency (with hashes) within pyproject.toml's ranges
lock: install
	$(BIN)/python -m piptools compile --quiet --extra test --generate-hashes --allow-unsafe --strip-extras \
	  --no-emit-index-url --no-emit-find-links --output-file requirements.lock pyproject.toml

## make demo: sandbox + worker + web server on SQLite, demo data, an initial sync
demo: install
	$(BIN)/python manage.py demo

## make test: the whole suite (what CI runs, on SQLite and again on PostgreSQL)
test: install
	$(BIN)/python -m pytest

## make bench: the benchmarks of bench/ (figures printed side by side)
bench: install
	$(BIN)/python bench/run_all.py

lint: install
	$(BIN)/python -m ruff check .

clean:
	rm -rf $(VENV) var/*.sqlite3* .pytest_cache
