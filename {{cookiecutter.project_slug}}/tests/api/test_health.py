from collections.abc import Callable

import pytest
from alembic.script import ScriptDirectory
from alembic_pgsafe.connect import where
from httpx import AsyncClient
from sqlalchemy import URL, text

from {{ cookiecutter.project_slug }}.main import create_app

from tests.api.conftest import serve, settings_for
from tests.api.outage import (
    assert_database_problem,
    assert_log_is_clean,
    database_log_lines,
    failing_database,
    impatient_settings,
)
from tests.conftest import alembic_config, connect, migrate, revisions, run_blocking
from tests.servers import free_port


def script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


# The revision before head; none with a single revision: a database never migrated.
BEHIND_HEAD = revisions()[-2:-1]


async def test_health_is_ok_at_head(client: AsyncClient) -> None:
    response = await client.get("/health")

    assert response.status_code == 200
    head = script().get_current_head()
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "revision": {"current": [head], "head": [head]},
    }


@pytest.fixture
def database_behind_head(create_database: Callable[[], URL]) -> URL:
    url = create_database()
    for revision in BEHIND_HEAD:
        migrate(url, revision)
    return url


async def test_health_is_503_with_both_revisions_when_migrations_are_pending(
    database_behind_head: URL,
) -> None:
    async with serve(create_app(settings_for(database_behind_head))) as client:
        response = await client.get("/health")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "migrations pending"
    head = script().get_current_head()
    assert body["revision"] == {"current": BEHIND_HEAD, "head": [head]}


@pytest.fixture
def database_ahead_of_head(create_database: Callable[[], URL]) -> URL:
    """A database a newer release migrated: at a revision this release does not have."""
    url = create_database()
    migrate(url, "head")

    async def stamp_unknown() -> None:
        async with connect(url) as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = 'newer'"))
            await connection.commit()

    run_blocking(stamp_unknown())
    return url


async def test_health_is_ok_when_a_newer_release_migrated_the_database(
    database_ahead_of_head: URL,
) -> None:
    """The release still serving keeps its traffic while the new one rolls out."""
    async with serve(create_app(settings_for(database_ahead_of_head))) as client:
        response = await client.get("/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    head = script().get_current_head()
    assert body["revision"] == {"current": ["newer"], "head": [head], "ahead": True}


async def test_health_is_503_when_the_database_is_unreachable(migrated_database: URL) -> None:
    nowhere = migrated_database.set(host="127.0.0.1", port=free_port(), query={})

    async with serve(create_app(settings_for(nowhere))) as client:
        response = await client.get("/health")

    assert_database_problem(response)
    body = response.json()
    assert (body["status"], body["database"]) == ("unavailable", "unreachable")


@pytest.mark.parametrize(
    ("cause", "database"),
    [
        ("refused", "unreachable"),
        ("timeout", "unreachable"),
        ("unknown host", "unreachable"),
        ("authentication", "authentication failed"),
        ("database missing", "database missing"),
        ("tls", "tls failed"),
    ],
)
async def test_health_says_why_the_database_cannot_be_used_in_one_log_line(
    cause: str, database: str, migrated_database: URL, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        failing_database(cause, migrated_database) as url,
        serve(create_app(impatient_settings(url))) as client,
    ):
        response = await client.get("/health")

    assert_database_problem(response)
    body = response.json()
    assert (body["status"], body["database"], body["cause"]) == ("unavailable", database, cause)
    assert_log_is_clean(caplog)
    [line] = database_log_lines(caplog)
    assert line.levelname == "WARNING"
    assert line.getMessage().startswith(f"GET /health: 503, cannot connect to {where(url)}: ")
    assert getattr(line, "database_cause", None) == cause
