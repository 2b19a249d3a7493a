"""``run_migrations``, the one call a project's env.py makes: its history goes up, down and up
on real PostgreSQL, the models match the head, and offline SQL needs no database."""

from sqlalchemy import URL

from tests.conftest import CreateDatabase, revisions, run_alembic


def test_the_history_goes_up_down_and_up_again(create_database: CreateDatabase) -> None:
    url = create_database()
    head = revisions()[-1]

    for step in (("upgrade", "head"), ("downgrade", "base"), ("upgrade", "head")):
        result = run_alembic(*step, database_url=url)
        assert result.returncode == 0, result.stderr
    current = run_alembic("current", database_url=url)

    assert f"{head} (head)" in current.stdout


def test_the_models_match_the_head(migrated_database: URL) -> None:
    result = run_alembic("check", database_url=migrated_database)

    assert result.returncode == 0, result.stderr
    assert "No new upgrade operations detected." in result.stdout + result.stderr


def test_offline_sql_needs_no_database_and_sets_the_limits() -> None:
    result = run_alembic("-x", "lock_timeout=2s", "upgrade", "head", "--sql", database_url=None)

    assert result.returncode == 0, result.stderr
    assert "SET lock_timeout = '2s';" in result.stdout
    assert "SET statement_timeout = '10min';" in result.stdout
    assert "CREATE UNIQUE INDEX CONCURRENTLY ix_users_slug ON users (slug);" in result.stdout
