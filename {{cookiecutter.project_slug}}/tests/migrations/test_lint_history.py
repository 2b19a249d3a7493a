"""make lint on this project: its shipped revisions pass, and every fix lint names points at a
section of its playbook, MIGRATIONS.md.

The rule-by-rule proofs (one probe per rule, each with its fix) are alembic-pgsafe's own.
"""

import re
import subprocess
import sys

import pytest
from alembic_pgsafe import lint

from {{ cookiecutter.project_slug }}.settings import PROJECT_ROOT

from tests.conftest import revisions

LINT = [sys.executable, "-m", "alembic_pgsafe", "lint"]
"""``make lint``: ``alembic-pgsafe lint``."""


@pytest.mark.slow  # squawk over every revision: make test-all
def test_shipped_migrations_pass() -> None:
    result = subprocess.run(
        [*LINT, str(PROJECT_ROOT / "alembic.ini")],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Found 0 issues in {len(revisions())} files" in result.stdout


def test_every_fix_names_a_playbook_section_that_exists() -> None:
    playbook = (PROJECT_ROOT / "MIGRATIONS.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^#+ (.+)$", playbook, re.MULTILINE))
    fixes = [*lint.FIXES.values(), *(lint.fix_for(r) for r in ("ban-drop-view", "unknown"))]

    for fix in fixes:
        assert fix.section in headings, fix
