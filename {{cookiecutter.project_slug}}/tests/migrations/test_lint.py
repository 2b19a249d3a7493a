"""squawk on every migration's SQL: the shipped ones pass, an unsafe new one fails."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from {{ cookiecutter.project_slug }}.settings import PROJECT_ROOT

from tests.conftest import revisions

LINT = [sys.executable, str(PROJECT_ROOT / "scripts" / "lint_migrations.py")]

UNSAFE_REVISION = '''"""Unsafe on a live table: a plain index, a required column without default."""

import sqlalchemy as sa
from alembic import op

revision = "unsafe000001"
down_revision = "{head}"


def upgrade() -> None:
    op.create_index("ix_users_full_name", "users", ["full_name"])
    op.add_column("users", sa.Column("age", sa.BigInteger(), nullable=False))


def downgrade() -> None:
    op.drop_column("users", "age")
    op.drop_index("ix_users_full_name", table_name="users")
'''


def lint(alembic_ini: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LINT, str(alembic_ini)], capture_output=True, text=True, timeout=300, check=False
    )


def test_shipped_migrations_pass_squawk() -> None:
    result = lint(PROJECT_ROOT / "alembic.ini")

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


def test_unsafe_revision_fails_with_squawks_reasons(project_with_unsafe_revision: Path) -> None:
    result = lint(project_with_unsafe_revision / "alembic.ini")

    assert result.returncode != 0
    assert "migrations/versions/9999_unsafe.sql" in result.stdout
    assert "require-concurrent-index-creation" in result.stdout
    assert "adding-required-field" in result.stdout
