"""``GET /health``: is the database reachable, and is its schema at the migrations' head?

When the database cannot be used, the answer says why in ``database`` (``unreachable``,
``authentication failed``, ``tls failed``...): a wrong password is fixed in a secret, a host
that does not answer somewhere else.
"""

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic_pgsafe.connect import Cause
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from {{ cookiecutter.project_slug }}.api.errors import (
    database_failure,
    database_problem,
    log_database_failure,
)
from {{ cookiecutter.project_slug }}.db.session import get_session
from {{ cookiecutter.project_slug }}.settings import Settings

router = APIRouter(tags=["health"])

# The ``database`` member of a 503: what an operator has to look at.
DATABASE_STATE: dict[Cause, str] = {
    "refused": "unreachable",
    "timeout": "unreachable",
    "unknown host": "unreachable",
    "authentication": "authentication failed",
    "database missing": "database missing",
    "tls": "tls failed",
    "unavailable": "unavailable",
    "configuration": "misconfigured",
    "pooler": "misconfigured",
    "lost": "unavailable",
}


@lru_cache
def _expected_heads(alembic_ini: Path) -> list[str]:
    script = ScriptDirectory.from_config(Config(alembic_ini))
    return sorted(script.get_heads())


def _current_heads(connection: Connection) -> list[str]:
    return sorted(MigrationContext.configure(connection).get_current_heads())


@router.get("/health")
async def health(
    request: Request, session: Annotated[AsyncSession, Depends(get_session)]
) -> JSONResponse:
    settings: Settings = request.app.state.settings
    expected = _expected_heads(settings.alembic_ini)
    try:
        connection = await session.connection()
        current = await connection.run_sync(_current_heads)
    except (SQLAlchemyError, OSError) as exc:
        failure = database_failure(exc)
        if failure is None:  # not a database that is out of reach: a 500 with its traceback
            raise
        log_database_failure(request, failure)
        # "status" stays the word health checks have always read (RFC 9457 clients ignore a
        # member of another type than its own).
        return database_problem(
            failure,
            status="unavailable",
            database=DATABASE_STATE[failure.cause],
            cause=failure.cause,
        )
    at_head = current == expected
    body: dict[str, Any] = {
        "status": "ok" if at_head else "migrations pending",
        "database": "ok",
        "revision": {"current": current, "head": expected},
    }
    return JSONResponse(status_code=200 if at_head else 503, content=body)
