# Set-up is automatic: every target creates .venv and installs what it needs when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORE := $(VENV)/.core-installed
CONTRIB := $(VENV)/.contrib-installed
DOCS_TOOLS := $(VENV)/.docs-installed
CONTRIB_PACKAGES := $(sort $(dir $(wildcard plugins_contrib/*/pyproject.toml)))
CONTRIB_FILES := $(shell find plugins_contrib -name '*.py' -o -name pyproject.toml 2>/dev/null)
SOURCES := $(wildcard leap tests benchmarks examples plugins_contrib)

.PHONY: demo test lint typecheck docs format bench clean

$(CORE): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

# The plugin packages are installed as a user would (not editable); any change reinstalls.
$(CONTRIB): $(CORE) $(CONTRIB_FILES)
	@for p in $(CONTRIB_PACKAGES); do \
		echo "installing $$p"; $(BIN)/python -m pip install --quiet --force-reinstall --no-deps "./$$p" \
		&& $(BIN)/python -m pip install --quiet "./$$p[test]" || exit 1; \
	done
	@touch $@

$(DOCS_TOOLS): $(CORE)
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	@touch $@

demo: $(CORE)
	$(BIN)/leap demo demo_output

lint: $(CONTRIB)
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)

typecheck: $(CORE)
	$(BIN)/python -m mypy

# The site goes to site/ (git-ignored); --strict turns every warning into a failure.
docs: $(DOCS_TOOLS)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --quiet

format: $(CORE)
	$(BIN)/ruff format $(SOURCES)
	$(BIN)/ruff check --fix $(SOURCES)

test: lint typecheck docs
	$(BIN)/python -m pytest -q -p no:cacheprovider tests $(wildcard plugins_contrib/*/tests)

bench: $(CORE)
	$(BIN)/python benchmarks/bench_permutation.py

clean:
	rm -rf $(VENV) demo_output
