"""Only a database out of reach becomes a 503: any other error stays the 500 it was."""

from pathlib import Path
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import URL, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from {{ cookiecutter.project_slug }}.db.session import get_session
from {{ cookiecutter.project_slug }}.main import create_app

from tests.api.conftest import serve
from tests.api.outage import (
    assert_database_problem,
    assert_log_is_clean,
    database_log_lines,
    failing_database,
    impatient_settings,
)
from tests.servers import free_port

Session = Annotated[AsyncSession, Depends(get_session)]


def app_with_probes(url: URL) -> FastAPI:
    """The app plus two routes of its kind: one that reads the database, one that reads a file
    that does not exist."""
    app = create_app(impatient_settings(url))

    @app.get("/probe/query")
    async def query(session: Session, sql: str = "SELECT 1") -> int:
        return int((await session.execute(text(sql))).scalar_one())

    @app.get("/probe/file")
    def read_missing_file() -> str:
        return Path("/nonexistent/file").read_text(encoding="utf-8")

    return app


@pytest.mark.parametrize(
    "cause", ["refused", "timeout", "unknown host", "authentication", "database missing", "tls"]
)
async def test_any_route_that_needs_the_database_answers_503(
    cause: str, migrated_database: URL, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        failing_database(cause, migrated_database) as url,
        serve(app_with_probes(url)) as client,
    ):
        response = await client.get("/probe/query")

    assert_database_problem(response)
    assert_log_is_clean(caplog)
    [line] = database_log_lines(caplog)
    assert getattr(line, "database_cause", None) == cause
    assert line.getMessage().startswith("GET /probe/query: 503, cannot connect to ")


async def test_a_connection_the_server_ends_is_a_503_and_the_next_request_is_served(
    migrated_database: URL, caplog: pytest.LogCaptureFixture
) -> None:
    own_end = "SELECT pg_terminate_backend(pg_backend_pid())::int"  # as a restart ends them all
    async with serve(app_with_probes(migrated_database)) as client:
        response = await client.get("/probe/query", params={"sql": own_end})
        served_again = await client.get("/probe/query")

    assert_database_problem(response)
    assert served_again.json() == 1
    assert_log_is_clean(caplog)
    [line] = database_log_lines(caplog)
    assert getattr(line, "database_cause", None) == "lost"
    assert "lost the connection to" in line.getMessage()


async def test_an_error_in_sql_is_still_a_500(migrated_database: URL) -> None:
    async with serve(app_with_probes(migrated_database)) as client:
        assert (await client.get("/probe/query")).json() == 1
        with pytest.raises(DBAPIError, match="division by zero"):
            await client.get("/probe/query", params={"sql": "SELECT 1 / 0"})


async def test_an_os_error_outside_the_database_is_still_a_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    unreachable = URL.create("postgresql+asyncpg", host="127.0.0.1", port=free_port())
    async with serve(app_with_probes(unreachable)) as client:
        with pytest.raises(FileNotFoundError):
            await client.get("/probe/file")

    assert database_log_lines(caplog) == []
