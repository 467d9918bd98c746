# Every target installs what it needs into a local virtual environment (.venv) first,
# so a fresh clone needs nothing but Python 3.11+ and these commands.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
RSTAMP := $(VENV)/.installed-run
ARGS   ?=

.PHONY: run test check lint typecheck bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "llmtrader needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Dependencies come from the lock files only (exact versions, every file checked against its hash), then
# llmtrader itself without resolving anything again. README "Dependencies" says how to refresh the locks.
$(RSTAMP): pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

$(STAMP): pyproject.toml requirements-dev.lock | $(BIN)/python
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@ $(RSTAMP)

# Bytecode of the sources, written ahead: every `llmtrader` start reads it instead of compiling the
# sources again (it would each time where PYTHONDONTWRITEBYTECODE is set). Only changed files are compiled.
BYTECODE = $(BIN)/python -m compileall -q src

## run: the agent on the paper account: a cycle at every candle close until Ctrl-C (ARGS="--once" for one)
run: $(RSTAMP)
	@$(BYTECODE)
	TRADING_MODE=paper $(BIN)/llmtrader run $(ARGS)

## test: install the test dependencies, then run the whole suite
test: $(STAMP)
	$(BIN)/python -m pytest -q $(ARGS)

## lint: ruff's lint rules, its format check (nothing is rewritten), then the import contracts of
## pyproject.toml [tool.importlinter] (the layers of src/llmtrader)
lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

## typecheck: mypy --strict (pyproject.toml) on the sources
typecheck: $(STAMP)
	$(BIN)/mypy src

## check: lint, format check and import contracts, type-check, then the tests: what CI runs (.ci/run)
check: lint typecheck test

## bench: the performance figures of bench/ (medians of several runs)
bench: $(STAMP)
	@$(BYTECODE)
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
