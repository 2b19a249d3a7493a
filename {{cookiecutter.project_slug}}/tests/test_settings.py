import pytest

from {{ cookiecutter.project_slug }}.db.session import connect_args
from {{ cookiecutter.project_slug }}.settings import Settings, to_asyncpg_url


@pytest.mark.parametrize(
    "given",
    [
        "postgres://app:secret@db:5432/app",
        "postgresql://app:secret@db:5432/app",
        "postgresql+asyncpg://app:secret@db:5432/app",
    ],
)
def test_postgres_urls_are_made_asyncpg(given: str) -> None:
    assert str(to_asyncpg_url(given).drivername) == "postgresql+asyncpg"
    assert to_asyncpg_url(given).database == "app"


def test_other_databases_are_refused_with_the_scheme_named() -> None:
    with pytest.raises(ValueError, match="got scheme 'mysql'"):
        to_asyncpg_url("mysql://app@db/app")


def test_alembic_prefers_the_direct_migrations_url() -> None:
    settings = Settings(
        database_url="postgresql://app@pooler:6432/app",
        migrations_database_url="postgresql://app@primary:5432/app",
    )

    assert settings.database_url == "postgresql+asyncpg://app@pooler:6432/app"
    assert settings.alembic_database_url == "postgresql+asyncpg://app@primary:5432/app"


def test_alembic_through_a_transaction_pooler_is_refused_with_what_to_set() -> None:
    settings = Settings(
        database_url="postgresql://app@pooler:6432/app", database_pooler="pgbouncer"
    )

    with pytest.raises(ValueError, match="Set MIGRATIONS_DATABASE_URL to a direct connection"):
        _ = settings.alembic_database_url


def test_behind_pgbouncer_the_app_keeps_no_prepared_statement() -> None:
    settings = Settings(
        database_url="postgresql://app@pooler:6432/app", database_pooler="pgbouncer"
    )

    options = connect_args(settings)

    assert options["statement_cache_size"] == 0
    assert options["prepared_statement_cache_size"] == 0
    names = {options["prepared_statement_name_func"]() for _ in range(3)}
    assert len(names) == 3  # unique: no two clients collide on one server connection
    assert connect_args(Settings(database_url="postgresql://app@db/app")) == {"timeout": 5.0}


def test_settings_repr_does_not_leak_the_password() -> None:
    settings = Settings(database_url="postgresql://app:hunter2@db/app")

    assert "hunter2" not in repr(settings)
