# Set-up is automatic: every target creates .venv and installs what it needs when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONTRIB := $(sort $(wildcard plugins_contrib/*/pyproject.toml))
SOURCES := $(wildcard leap tests benchmarks examples plugins_contrib)

.PHONY: demo test lint format bench clean

$(STAMP): pyproject.toml $(CONTRIB)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@for p in $(dir $(CONTRIB)); do \
		echo "installing $$p"; $(BIN)/python -m pip install --quiet "./$$p[test]" || exit 1; \
	done
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/leap demo demo_output

lint: $(STAMP)
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)

format: $(STAMP)
	$(BIN)/ruff format $(SOURCES)
	$(BIN)/ruff check --fix $(SOURCES)

test: lint
	$(BIN)/python -m pytest -q -p no:cacheprovider tests $(wildcard plugins_contrib/*/tests)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_permutation.py

clean:
	rm -rf $(VENV) demo_output
