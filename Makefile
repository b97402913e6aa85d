# The README's two commands: `make lab` opens the lab, `make test` passes every test.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
JUPYTER_ARGS ?=
PYTEST_ARGS  ?=

.PHONY: lab test checkpoint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# A stamp per extra: re-installs only when pyproject.toml changes.
$(VENV)/.lab-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e ".[lab]"
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e ".[test]"
	touch $@

lab: $(VENV)/.lab-installed
	$(BIN)/jupyter lab --notebook-dir=notebooks $(JUPYTER_ARGS)

test: $(VENV)/.test-installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
