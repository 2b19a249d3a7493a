# The template's own commands. Only python3 (3.11+) and make are needed: everything else goes
# into .venv/ from requirements-dev.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
DEMO := build/my_service
PACKAGE := alembic-pgsafe

.PHONY: demo test test-package package package-version lock clean

$(VENV)/installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	touch $@

demo: $(VENV)/installed  ## render my_service with default answers and run it (make dev)
	test -d $(DEMO) || $(BIN)/cookiecutter --no-input . --output-dir build
	PATH="$(BIN):$$PATH" $(MAKE) -C $(DEMO) dev

test: test-package  ## every test: the migration toolkit's (test-package), then the template's: hooks, and each answer combination rendered and run
	PATH="$(BIN):$$PATH" $(BIN)/pytest

test-package: $(VENV)/installed  ## the migration toolkit (alembic-pgsafe/): its linters, then its suite
	cd $(PACKAGE) && $(BIN)/uv run --locked --all-extras ruff check .
	cd $(PACKAGE) && $(BIN)/uv run --locked --all-extras ruff format --check .
	cd $(PACKAGE) && $(BIN)/uv run --locked --all-extras mypy
	cd $(PACKAGE) && $(BIN)/uv run --locked --all-extras pytest

package: $(VENV)/installed  ## build the migration toolkit's wheel into the template, which renders install (then make lock)
	rm -f '{{cookiecutter.project_slug}}'/wheels/alembic_pgsafe-*.whl
	$(BIN)/uv build -q --wheel -o '{{cookiecutter.project_slug}}/wheels' $(PACKAGE)
	rm -f '{{cookiecutter.project_slug}}/wheels/.gitignore'  # uv's, which would hide the wheel from git

package-version: $(VENV)/installed  ## a new toolkit version that renders pin: make package-version VERSION=0.2.0 (then its CHANGELOG, make test)
	@echo '$(VERSION)' | grep -Eqx '[0-9]+\.[0-9]+\.[0-9]+' || { echo 'usage: make package-version VERSION=X.Y.Z' >&2; exit 2; }
	old=$$(sed -n 's/^version = "\(.*\)"$$/\1/p' $(PACKAGE)/pyproject.toml); \
	sed -i "s/^version = \"$$old\"$$/version = \"$(VERSION)\"/" $(PACKAGE)/pyproject.toml && \
	sed -i "s/\"alembic-pgsafe==$$old\"/\"alembic-pgsafe==$(VERSION)\"/; s/alembic_pgsafe-$$old-py3/alembic_pgsafe-$(VERSION)-py3/" \
		'{{cookiecutter.project_slug}}/pyproject.toml'
	cd $(PACKAGE) && $(BIN)/uv lock -q
	$(MAKE) package lock

lock: $(VENV)/installed  ## re-solve the rendered projects' uv.lock: one per python_version × metrics × tracing (a Python of each version needed), merged into one template (after make package); UPGRADE=1: to the newest allowed versions; then make test
	PATH="$(BIN):$$PATH" $(BIN)/python scripts/render_locks.py --upgrade-package $(PACKAGE) $(if $(UPGRADE),--upgrade)

clean:
	rm -rf build $(VENV)
