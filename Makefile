# The template's own commands. Only python3 (3.11+) and make are needed: everything else goes
# into .venv/ from requirements-dev.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
DEMO := build/my_service

.PHONY: demo test lock clean

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

lock: $(VENV)/installed  ## move the rendered projects' uv.lock to the newest allowed versions; then make test
	rm -rf build/lock
	$(BIN)/cookiecutter --no-input . --output-dir build/lock project_name="Template Lock"
	cd build/lock/template_lock && $(BIN)/uv lock --upgrade
	sed 's/^name = "template-lock"$$/name = "{{ cookiecutter.project_slug | replace("_", "-") }}"/' \
		build/lock/template_lock/uv.lock > '{{cookiecutter.project_slug}}/uv.lock'
	grep -c 'cookiecutter.project_slug' '{{cookiecutter.project_slug}}/uv.lock' | grep -qx 1

clean:
	rm -rf build $(VENV)
