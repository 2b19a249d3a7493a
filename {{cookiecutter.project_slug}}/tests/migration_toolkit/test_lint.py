"""make lint on every migration's SQL: the shipped ones pass, an unsafe new one fails with fixes."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from {{ cookiecutter.project_slug }}.migration_toolkit import backfill, helpers, lint
from {{ cookiecutter.project_slug }}.settings import PROJECT_ROOT

from tests.conftest import revisions

pytestmark = pytest.mark.slow  # squawk over every revision, twice: make test-all
LINT = [sys.executable, "-m", "{{ cookiecutter.project_slug }}.migration_toolkit", "lint"]

UNSAFE_REVISION = '''"""Unsafe on a live table: plain index, required column, whole-table DML."""

import sqlalchemy as sa
from alembic import op

from {{ cookiecutter.project_slug }}.migration_toolkit.helpers import acknowledge_lint

revision = "unsafe000001"
down_revision = "{head}"
users = sa.table("users", sa.column("id", sa.BigInteger), sa.column("full_name", sa.String))


def upgrade() -> None:
    op.create_index("ix_users_full_name", "users", ["full_name"])
    op.add_column("users", sa.Column("age", sa.BigInteger(), nullable=False))
    op.execute("CREATE INDEX CONCURRENTLY ix_users_email_copy ON users (email)")
    op.execute("UPDATE users SET full_name = btrim(full_name)")
    op.execute(sa.update(users).where(users.c.full_name != "x").values(full_name="y"))
    op.execute(sa.delete(users).where(users.c.full_name == "gone"))
    # Bounded by the key, or waived: not whole-table.
    op.execute(sa.update(users).where(users.c.id.between(1, 100)).values(full_name="z"))
    op.execute(sa.delete(users).where(users.c.id > 5, users.c.id <= 10))
    op.execute("UPDATE users SET full_name = 'w' WHERE id IN (1, 2, 3)")
    acknowledge_lint("whole-table-dml", because="users has three rows in this probe")
    op.execute("DELETE FROM users WHERE full_name = 'waived'")


def downgrade() -> None:
    op.drop_column("users", "age")
    op.drop_index("ix_users_full_name", table_name="users")
'''


def run_lint(alembic_ini: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LINT, str(alembic_ini)], capture_output=True, text=True, timeout=300, check=False
    )


def test_shipped_migrations_pass_squawk() -> None:
    result = run_lint(PROJECT_ROOT / "alembic.ini")

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Found 0 issues in {len(revisions())} files" in result.stdout


@pytest.fixture
def project_with_unsafe_revision(tmp_path: Path) -> Path:
    for name in ("alembic.ini", ".squawk.toml"):
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    shutil.copytree(PROJECT_ROOT / "migrations", tmp_path / "migrations")
    unsafe = tmp_path / "migrations" / "versions" / "9999_unsafe.py"
    unsafe.write_text(UNSAFE_REVISION.format(head=revisions()[-1]), encoding="utf-8")
    return tmp_path


def findings(output: str) -> list[tuple[str, str, str]]:
    """(file, rule, fix) of each finding in the lint report."""
    pattern = r"^(\S+\.py): ([a-z-]+): .*\n    statement: (.*)\n    fix: (.*)$"
    return [(m[0], m[1], m[3]) for m in re.findall(pattern, output, re.MULTILINE)]


def test_unsafe_revision_fails_naming_its_file_and_the_toolkit_fix(
    project_with_unsafe_revision: Path,
) -> None:
    result = run_lint(project_with_unsafe_revision / "alembic.ini")

    assert result.returncode != 0
    found = findings(result.stdout)
    assert {file for file, _, _ in found} == {"migrations/versions/9999_unsafe.py"}
    fixes: dict[str, list[str]] = {}
    for _, rule, fix in found:
        fixes.setdefault(rule, []).append(fix)
    assert fixes["require-concurrent-index-creation"] == [
        "create_index_concurrently(name, table, columns); MIGRATIONS.md, section 'Indexes'"
    ]
    # A raw CREATE INDEX CONCURRENTLY is pointed back at the helper, not at IF NOT EXISTS.
    assert fixes["ban-concurrent-index-creation-in-transaction"][0].startswith(
        "create_index_concurrently("
    )
    assert "section 'Add a NOT NULL column'" in fixes["adding-required-field"][0]
    assert len(fixes["whole-table-dml"]) == 3  # the string UPDATE, sa.update, sa.delete
    assert all(fix.startswith("backfill_in_batches(") for fix in fixes["whole-table-dml"])
    assert "UPDATE of users without a primary key range" in result.stdout
    assert "DELETE of users without a primary key range" in result.stdout
    assert "waived" not in result.stdout
    assert f"Found {len(found)} issues in {len(revisions()) + 1} files" in result.stdout


def test_every_fix_names_a_helper_and_a_playbook_section_that_exist() -> None:
    playbook = (PROJECT_ROOT / "MIGRATIONS.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^#+ (.+)$", playbook, re.MULTILINE))

    for rule, fix in {**lint.FIXES, "(default)": lint.DEFAULT_FIX}.items():
        assert fix.section in headings, rule
        for helper in re.findall(r"\b([a-z]+(?:_[a-z]+)+)\b(?!\.py)", fix.helper):
            if helper != "server_default":
                assert hasattr(helpers, helper) or hasattr(backfill, helper), helper
