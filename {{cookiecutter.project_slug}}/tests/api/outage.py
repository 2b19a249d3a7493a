"""Databases that cannot be used, one per cause, and what a 503 for them must look like."""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from httpx import Response
from sqlalchemy import URL

from {{ cookiecutter.project_slug }}.api.errors import RETRY_AFTER_SECONDS, logger
from {{ cookiecutter.project_slug }}.settings import Settings

from tests.servers import free_port, silent_port

PASSWORD = "s3cret"  # noqa: S105 (made up, to prove it never leaks)
"""The password of every URL built here: it must never reach a response or a log line."""


def impatient_settings(url: URL) -> Settings:
    """Settings with a short connect timeout: a silent server fails in half a second."""
    return Settings(
        database_url=url.render_as_string(hide_password=False), database_connect_timeout=0.5
    )


@asynccontextmanager
async def port_without_tls() -> AsyncIterator[int]:
    """A port that answers PostgreSQL's SSLRequest with "N", as a server with ``ssl = off``."""

    async def refuse_tls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(8)  # the SSLRequest: length and code, 4 bytes each
        writer.write(b"N")
        await writer.drain()
        await reader.read()  # until the client hangs up
        writer.close()

    server = await asyncio.start_server(refuse_tls, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def failing_database(cause: str, server: URL) -> AsyncIterator[URL]:
    """A URL (with :data:`PASSWORD`) that fails for ``cause``; ``server`` is a real server's."""
    local = URL.create(
        "postgresql+asyncpg", "app", PASSWORD, "127.0.0.1", free_port(), database="app"
    )
    if cause == "refused":
        yield local
    elif cause == "timeout":
        with silent_port() as port:
            yield local.set(port=port)
    elif cause == "unknown host":
        yield local.set(host="nowhere.invalid")  # RFC 6761: never resolves
    elif cause == "authentication":
        yield server.set(username=f"nobody_{uuid.uuid4().hex[:8]}", password=PASSWORD)
    elif cause == "database missing":
        yield server.set(database=f"missing_{uuid.uuid4().hex[:8]}")
    elif cause == "tls":
        async with port_without_tls() as port:
            yield local.set(port=port, query={"sslmode": "require"})
    else:
        raise ValueError(cause)


def assert_database_problem(response: Response) -> None:
    """A 503 problem document (RFC 9457) with ``Retry-After``, nothing internal in it."""
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    body = response.json()
    assert body["type"] == "about:blank"
    assert body["title"] == "Service Unavailable"
    assert body["detail"].endswith(f"Try again in {RETRY_AFTER_SECONDS} seconds.")
    for internal in (PASSWORD, "127.0.0.1", "Traceback", "asyncpg", "sqlalchemy"):
        assert internal not in response.text


def database_log_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The lines the API logged about the database."""
    return [record for record in caplog.records if record.name == logger.name]


def assert_log_is_clean(caplog: pytest.LogCaptureFixture) -> None:
    """No traceback (an exception that escaped the app, say), no password, nothing above
    WARNING."""
    for record in caplog.records:
        error = record.exc_info[1] if record.exc_info else None
        assert error is None, f"{record.getMessage()}: {error!r}"
        assert record.levelno <= logging.WARNING, record.getMessage()
    assert "Traceback" not in caplog.text
    assert PASSWORD not in caplog.text
