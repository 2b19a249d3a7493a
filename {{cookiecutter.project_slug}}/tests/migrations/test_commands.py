"""The alembic commands a team relies on, run as the command line runs them."""

from pathlib import Path

from sqlalchemy import URL

from {{ cookiecutter.project_slug }}.settings import PROJECT_ROOT

from tests.migrations.conftest import run_alembic

VERSIONS = PROJECT_ROOT / "migrations" / "versions"


def test_offline_sql_renders_without_a_database() -> None:
    result = run_alembic("upgrade", "head", "--sql", database_url=None)

    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE users" in result.stdout
    assert "CREATE UNIQUE INDEX CONCURRENTLY ix_users_slug ON users (slug)" in result.stdout
    assert "CREATE TABLE posts" in result.stdout


def test_check_is_clean_at_head(migrated_database: URL) -> None:
    result = run_alembic("check", database_url=migrated_database)

    assert result.returncode == 0, result.stderr
    assert "No new upgrade operations detected" in result.stdout


def test_autogenerate_writes_no_empty_revision(migrated_database: URL) -> None:
    before = set(VERSIONS.glob("*.py"))
    try:
        result = run_alembic(
            "revision", "--autogenerate", "-m", "nothing", database_url=migrated_database
        )
        written = set(VERSIONS.glob("*.py")) - before
    finally:
        for path in set(VERSIONS.glob("*.py")) - before:
            path.unlink()

    assert result.returncode == 0, result.stderr
    assert written == set()
    assert "no revision written" in result.stderr


def test_online_without_a_url_says_what_to_set(tmp_path: Path) -> None:
    result = run_alembic("current", database_url=None, cwd=tmp_path)

    assert result.returncode != 0
    assert "Set DATABASE_URL (or MIGRATIONS_DATABASE_URL)" in result.stderr
