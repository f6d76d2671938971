# Two jobs: `make demo` (the main job) and `make test` (the tests). Both create .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean compiled

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

# Byte-compiled once: where PYTHONDONTWRITEBYTECODE is set (as on this project's machines),
# every node process, and every CLI call a test makes, would compile gsomia again (0.25 s each).
compiled: $(STAMP)
	@$(BIN)/python -m compileall -q src >/dev/null

demo: compiled
	$(BIN)/gsomia demo

test: compiled
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/mypy bench  # the benchmarks are scripts beside the package, checked on their own
	$(BIN)/lint-imports  # the layering contracts in pyproject.toml
	$(BIN)/python -m pytest -n 2  # two workers: the nodes a test starts leave a core idle much of the time

bench: compiled  # every benchmark, each with its peer in the same run (README, Performance)
	$(BIN)/python bench/lifecycle.py
	$(BIN)/python bench/decisions.py
	$(BIN)/python bench/envelope.py
	$(BIN)/python bench/ledger.py
	$(BIN)/python bench/exchange.py --postgres --postgres-flash

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
