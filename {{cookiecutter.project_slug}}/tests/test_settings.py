import ssl
from pathlib import Path

import pytest
from alembic_pgsafe.backfill import latency_budget
from alembic_pgsafe.connect import database_target
from pydantic import ValidationError

from {{ cookiecutter.project_slug }}.db.session import connect_args
from {{ cookiecutter.project_slug }}.settings import (
    MigrationSettings,
    Settings,
    SettingsError,
    get_settings,
    named_database,
    to_asyncpg_url,
)


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


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("sslmode=require", {"dsn": "postgresql://?sslmode=require"}),
        (
            "sslmode=verify-full&sslrootcert=/ca.pem&sslcert=/c.pem&sslkey=/k.pem",
            {
                "dsn": "postgresql://?sslmode=verify-full&sslrootcert=%2Fca.pem"
                "&sslcert=%2Fc.pem&sslkey=%2Fk.pem"
            },
        ),
        (
            "sslmode=disable&connect_timeout=3",
            {"dsn": "postgresql://?sslmode=disable", "timeout": 3.0},
        ),
        ("application_name=api", {"server_settings": {"application_name": "api"}}),
    ],
)
def test_libpq_parameters_become_asyncpg_options(query: str, expected: dict[str, object]) -> None:
    target = database_target(f"postgres://app:secret@db:5432/app?{query}")

    assert target.url.query == {}  # nothing SQLAlchemy would pass to asyncpg.connect as is
    assert target.options == expected
    assert target.url.password == "secret"  # noqa: S105  # a test value


def test_sslrootcert_system_trusts_the_operating_systems_cas() -> None:
    target = database_target("postgresql://app@db/app?sslmode=verify-full&sslrootcert=system")

    context = target.options["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_an_unknown_sslmode_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="sslmode must be one of disable, allow"):
        database_target("postgresql://app@db/app?sslmode=required")


@pytest.mark.parametrize(
    "url", ["mysql://app:hunter2@db/app", "postgresql://app:hunter2@db/app?sslmode=on", "::hunter2"]
)
def test_a_settings_error_never_quotes_the_url(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        with pytest.raises(SettingsError) as raised:
            get_settings()
    finally:
        get_settings.cache_clear()

    assert "DATABASE_URL" in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_urls_can_come_from_secret_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "app").write_text("postgresql://app:from-file@db/app\n", encoding="utf-8")
    (tmp_path / "migrator").write_text("postgresql://migrator:m@db/app", encoding="utf-8")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL_FILE", str(tmp_path / "app"))
    monkeypatch.setenv("MIGRATIONS_DATABASE_URL_FILE", str(tmp_path / "migrator"))
    monkeypatch.chdir(tmp_path)  # no .env of the checkout

    settings = Settings()

    assert settings.database_url == "postgresql+asyncpg://app:from-file@db/app"
    assert settings.alembic_database_url == "postgresql+asyncpg://migrator:m@db/app"


def test_a_missing_secret_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL_FILE", str(tmp_path / "absent"))
    monkeypatch.chdir(tmp_path)

    with pytest.raises(ValidationError, match=r"DATABASE_URL_FILE: cannot read .*absent"):
        Settings()


def test_the_database_is_named_by_the_environment_then_dot_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL_FILE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert named_database() is None

    (tmp_path / ".env").write_text("DATABASE_URL=postgresql://app:pw@db:5432/app\n")
    assert named_database() == "DATABASE_URL from .env: app@db:5432/app"

    monkeypatch.setenv("DATABASE_URL", "postgresql://other@elsewhere/x")
    assert named_database() == "DATABASE_URL from the environment: other@elsewhere:5432/x"


@pytest.mark.parametrize(
    ("given", "budget"),
    [({}, None), ({"backfill_budget": "3"}, 3.0), ({"backfill_budget": "off"}, None)],
)
def test_the_backfill_budget_is_the_calls_unless_the_run_sets_one(
    given: dict[str, str], budget: float | None
) -> None:
    settings = MigrationSettings(**given)  # type: ignore[arg-type]  # strings, as -x gives them

    assert latency_budget(settings, None) == budget
    assert latency_budget(settings, None, budget=2.0) == (2.0 if not given else budget)
    assert latency_budget(settings, 500) is None  # fixed batches: the size is the caller's


@pytest.mark.parametrize("given", ["0.5", "1", "fast"])
def test_a_backfill_budget_that_cannot_hold_is_refused(given: str) -> None:
    with pytest.raises(ValidationError, match="backfill_budget"):
        MigrationSettings(backfill_budget=given)  # a string, as -x gives it
