"""A copy of the fixture project that a test may change: its alembic.ini, .squawk.toml,
pyproject.toml and migrations/ (env.py, the template, the five revisions), in a folder of the
test's own, as a project outside this package has them.

The copy's env.py still imports the fixture's models (``tests.project.models``): its alembic.ini
puts the package's root on ``sys.path`` instead of the fixture's ``../..``. Its ``ruff.toml``
extends the package's ruff settings, but with ``alembic_pgsafe`` a third-party library, as in
any project that installs it (inside the package, ruff counts it first-party); the copied files'
imports are sorted that way, so the copy passes ``ruff check`` and ``ruff format --check`` as
the fixture does in place.
"""

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import PACKAGE_ROOT, PROJECT

FIXTURE_SYS_PATH = "prepend_sys_path = %(here)s/../.."
COPIED = ("alembic.ini", ".squawk.toml", "pyproject.toml")
RUFF_TOML = """\
extend = "{pyproject}"
src = ["{root}"]

[lint.isort]
known-first-party = ["tests"]
known-third-party = ["alembic_pgsafe"]
"""


def copy_project(root: Path) -> Path:
    """The fixture project's files in ``root`` (made if missing); ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        shutil.copy2(PROJECT / name, root / name)
    ini = (root / "alembic.ini").read_text(encoding="utf-8")
    assert FIXTURE_SYS_PATH in ini, "the fixture's alembic.ini changed: update copy_project"
    ini = ini.replace(FIXTURE_SYS_PATH, f"prepend_sys_path = {PACKAGE_ROOT}")
    (root / "alembic.ini").write_text(ini, encoding="utf-8")
    ruff = RUFF_TOML.format(pyproject=PACKAGE_ROOT / "pyproject.toml", root=PACKAGE_ROOT)
    (root / "ruff.toml").write_text(ruff, encoding="utf-8")
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(PROJECT / "migrations", root / "migrations", ignore=ignore)
    sort = [sys.executable, "-m", "ruff", "check", "--quiet", "--select", "I", "--fix"]
    sorted_imports = subprocess.run(
        [*sort, "migrations"], cwd=root, capture_output=True, text=True, check=False
    )
    assert sorted_imports.returncode == 0, sorted_imports.stdout + sorted_imports.stderr
    return root
