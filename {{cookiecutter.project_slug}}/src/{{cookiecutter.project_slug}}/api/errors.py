"""Error responses: invalid input is a 422 that never echoes the input back; a database the
service cannot reach is a 503 problem (RFC 9457) with ``Retry-After``, logged in one line.

While PostgreSQL is down or restarting, every request that needs it fails the same way; a
traceback per request would bury the one fact that matters (refused? timeout? wrong password?),
so each failed request logs one line that names the cause and ``user@host:port/database``, and
the client is told to come back in a few seconds. The engine's ``pool_pre_ping`` replaces the
broken connections once the server is back: nothing else is needed to recover.
"""

import logging
import traceback

from alembic_pgsafe.connect import (
    Cause,
    ConnectionFailure,
    describe_failure,
    where,
)
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

logger = logging.getLogger("{{ cookiecutter.project_slug }}.api")

RETRY_AFTER_SECONDS = 5
"""How long a client should wait before trying again: a restart of PostgreSQL takes about that."""

PROBLEM_JSON = "application/problem+json"

# What a client is told: the kind of failure, never the host, the user or the server's message
# (those are in the log line).
PUBLIC_DETAIL: dict[Cause, str] = {
    "refused": "The database is not accepting connections.",
    "timeout": "The database did not answer in time.",
    "unknown host": "The database's host name does not resolve.",
    "authentication": "The database refused the service's credentials.",
    "database missing": "The service's database does not exist.",
    "tls": "The encrypted connection to the database failed.",
    "unavailable": "The database is not available (starting, stopping or full).",
    "configuration": "The service's database settings are invalid.",
    "pooler": "The service's database settings are invalid.",
    "lost": "The database closed the connection (restarting?).",
}

_DRIVER_PACKAGES = {"asyncpg", "sqlalchemy"}


def _raised_in_driver(exc: BaseException) -> bool:
    """Did ``exc`` come out of SQLAlchemy or asyncpg? An ``OSError`` from anywhere else (a file
    a route reads, say) is no database failure."""
    return any(
        str(frame.f_globals.get("__name__", "")).partition(".")[0] in _DRIVER_PACKAGES
        for frame, _ in traceback.walk_tb(exc.__traceback__)
    )


def database_failure(exc: BaseException) -> ConnectionFailure | None:
    """Why the database could not serve a request, or None when ``exc`` is another error.

    A failure to connect (asyncpg raises ``OSError``/``TimeoutError`` unwrapped, SQLAlchemy
    wraps the server's refusals in ``DBAPIError``) or a connection the server dropped (while
    PostgreSQL stops: ``terminating connection due to administrator command``).
    """
    if not isinstance(exc, DBAPIError) and not _raised_in_driver(exc):
        return None
    return describe_failure(exc)


def log_database_failure(request: Request, failure: ConnectionFailure) -> None:
    """One line per failed request: the route, the cause and ``user@host:port/database``."""
    target = where(request.app.state.settings.database_url)
    logger.warning(
        "%s %s: 503, %s",
        request.method,
        request.url.path,
        failure.line(target),
        extra={
            "event": "request.database_unavailable",
            "method": request.method,
            "path": request.url.path,
            "status": 503,
            "database_cause": failure.cause,
        },
    )


def database_problem(failure: ConnectionFailure, **members: str) -> JSONResponse:
    """The 503 problem document (RFC 9457) for a database the service cannot use, with
    ``Retry-After``; ``members`` add to it or replace its own."""
    body: dict[str, str | int] = {
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": f"{PUBLIC_DETAIL[failure.cause]} Try again in {RETRY_AFTER_SECONDS} seconds.",
    }
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return JSONResponse(body | members, 503, headers=headers, media_type=PROBLEM_JSON)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    failure = database_failure(exc)
    if failure is None:  # another error: a 500 with its traceback, as before
        raise exc
    log_database_failure(request, failure)
    return database_problem(failure)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    # FastAPI's default handler echoes the offending input; input that cannot be encoded again
    # (a lone surrogate in a JSON string, say) would then turn a 422 into a 500.
    if not isinstance(exc, RequestValidationError):  # registered for this type only
        raise exc
    errors = [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]
    return JSONResponse(status_code=422, content={"detail": errors})


def register_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    # OSError covers TimeoutError and ConnectionRefusedError, which asyncpg raises unwrapped.
    for database_error in (DBAPIError, OSError):
        app.add_exception_handler(database_error, _database_unavailable)
