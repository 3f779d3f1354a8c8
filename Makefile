# The README's two commands: `make demo` and `make test`. Both install into .venv on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# A CPU build when the machine has one on disk; elsewhere pip picks the build for your platform.
TORCH  ?= torch==2.13.0

.PHONY: install install-core demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

# Core: torch first (so nothing else resolves a different torch), then segbench itself.
$(VENV)/.core: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q "setuptools>=77.0.3,<81" wheel
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e .
	@touch $@

# Everything the tests need.
$(VENV)/.dev: $(VENV)/.core
	$(BIN)/pip install -q -e ".[dev]"
	@touch $@

install-core: $(VENV)/.core
install: $(VENV)/.dev

demo: install-core
	$(BIN)/segbench run suites/demo.yaml

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
