# The template's own commands. Only python3 (3.11+) and make are needed: everything else goes
# into .venv/ from requirements-dev.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
DEMO := build/my_service

.PHONY: demo test clean

$(VENV)/installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	touch $@

demo: $(VENV)/installed  ## render my_service with default answers and run it (make dev)
	test -d $(DEMO) || $(BIN)/cookiecutter --no-input . --output-dir build
	PATH="$(BIN):$$PATH" $(MAKE) -C $(DEMO) dev

test: $(VENV)/installed  ## every test of the template: hooks, and each answer combination rendered and run
	PATH="$(BIN):$$PATH" $(BIN)/pytest

clean:
	rm -rf build $(VENV)
