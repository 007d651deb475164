# The two commands a new user types. Each creates .venv itself; nothing is assumed installed by hand.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test venv-demo venv-test clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

venv-demo: $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[rl]"

venv-test: $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[dev,rl]"

demo: venv-demo
	$(BIN)/python examples/cartpole.py

test: venv-test
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) tunesmith_results .pytest_cache
