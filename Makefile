# `make demo` (the README's first command) and `make test` (its test command). Both install into .venv on first use.
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

# mmsegmentation needs mmcv 2.1.0 with its compiled ops (mmcv-lite fails at `import mmseg.models`).
# mmcv's setup.py needs torch and pkg_resources (setuptools < 81) at build time, hence no build isolation.
$(VENV)/.mmseg: $(VENV)/.core
	@echo "Installing mmsegmentation: building mmcv 2.1.0 with its ops takes 10-15 minutes the first time;"
	@echo "pip caches the wheel, so later installs take seconds."
	$(BIN)/pip install -q "setuptools>=77.0.3,<81" mmengine==0.10.7
	MMCV_WITH_OPS=1 $(BIN)/pip install -q --no-build-isolation mmcv==2.1.0
	$(BIN)/pip install -q -e ".[mmseg]"
	@touch $@

# Everything the tests need, mmsegmentation included.
$(VENV)/.dev: $(VENV)/.mmseg
	$(BIN)/pip install -q -e ".[dev]"
	@touch $@

install-core: $(VENV)/.core
install: $(VENV)/.dev

demo: install-core
	$(BIN)/segbench run suites/demo.yaml

# The import contracts (pyproject.toml, [tool.importlinter]) first, then pytest.
# After pytest, a fresh CPU run of the demo suite is checked against the committed baseline
# (README, "Reports and regression checks").
test: install
	$(BIN)/lint-imports --no-cache --no-logo
	$(BIN)/python -m pytest -q
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(BIN)/segbench run suites/demo.yaml --device cpu --run-dir "$$tmp/demo" > /dev/null && \
	$(BIN)/segbench check results/baselines/demo "$$tmp/demo"

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
