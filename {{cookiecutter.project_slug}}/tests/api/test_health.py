from collections.abc import Callable

import pytest
from alembic.script import ScriptDirectory
from httpx import AsyncClient
from sqlalchemy import URL

from {{ cookiecutter.project_slug }}.main import create_app

from tests.api.conftest import serve, settings_for
from tests.conftest import alembic_config, migrate, revision_at


def script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


FIRST_REVISION = revision_at(0)


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
def database_at_first_revision(create_database: Callable[[], URL]) -> URL:
    url = create_database()
    migrate(url, FIRST_REVISION)
    return url


async def test_health_is_503_with_both_revisions_when_migrations_are_pending(
    database_at_first_revision: URL,
) -> None:
    async with serve(create_app(settings_for(database_at_first_revision))) as client:
        response = await client.get("/health")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "migrations pending"
    head = script().get_current_head()
    assert body["revision"] == {"current": [FIRST_REVISION], "head": [head]}


async def test_health_is_503_when_the_database_is_unreachable(migrated_database: URL) -> None:
    nowhere = migrated_database.set(host="127.0.0.1", port=1, query={})

    async with serve(create_app(settings_for(nowhere))) as client:
        response = await client.get("/health")

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "unreachable"}
