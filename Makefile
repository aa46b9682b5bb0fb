# `make demo` and `make test` are the two commands a newcomer needs; both set up .venv first.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.bitnas-installed

.PHONY: demo test test-slow lint bench bench-costs bench-schemes bench-workers bench-fidelity clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "bitnas needs Python >= 3.11; set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/bitnas search bitnas/experiments/quickstart.toml

# the worker tests also run against a local PostgreSQL server, and the report test renders
# in headless Chromium; this starts (or installs) both when it can; when it cannot, it says
# why and that test skips
test: $(STAMP)
	-@bash scripts/postgres-up.sh
	-@bash scripts/chromium-up.sh
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check bitnas tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_search.py

bench-costs: $(STAMP)
	$(BIN)/python benchmarks/bench_cost_models.py

bench-schemes: $(STAMP)
	$(BIN)/python benchmarks/bench_schemes.py

bench-workers: $(STAMP)
	$(BIN)/python benchmarks/bench_workers.py

bench-fidelity: $(STAMP)
	$(BIN)/python benchmarks/bench_fidelity.py --seeds 0 1

clean:
	rm -rf $(VENV) runs .pytest_cache
