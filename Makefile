# The two commands a new user types. Each creates .venv itself; nothing is assumed installed by hand.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CHROMIUM ?= /usr/bin/chromium

.PHONY: demo test lint venv-demo venv-test browser clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

venv-demo: $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[rl]"

venv-test: $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[dev,rl]"

# The HTML report is tested in a real headless Chromium: Debian's package (Playwright's own browser
# download is not used). Installed when missing and apt-get can run; elsewhere that one test is skipped
# (under CI=true it fails instead).
browser:
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) >/dev/null; \
	  else echo "note: $(CHROMIUM) missing (Debian: apt-get install chromium); the browser test will skip"; fi; \
	fi

demo: venv-demo
	$(BIN)/python examples/cartpole.py

# The code is clean under ruff and mypy (pyproject.toml configures both): a finding fails `make test` before
# the suite runs. `make lint` runs the two alone.
LINT_RUFF = $(BIN)/python -m ruff check tunesmith tests benchmarks examples
LINT_MYPY = $(BIN)/python -m mypy tunesmith

lint: venv-test
	$(LINT_RUFF)
	$(LINT_MYPY)

# The suite runs on two pytest-xdist workers (a 2-core CI runner's cores; much of a test's time is waiting on worker
# processes and Ray): each test file whole on one worker, files that must not run side by side in one group
# (tests/xdist_helpers.py). PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2

test: venv-test browser
	$(LINT_RUFF)
	$(LINT_MYPY)
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) tunesmith_results .pytest_cache
