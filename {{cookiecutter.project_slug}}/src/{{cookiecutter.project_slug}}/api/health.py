"""``GET /health``: is the database reachable, and is its schema at the migrations' head?

200 at the head, and when the database is ahead of it (a newer release migrated it: this one
keeps serving until the rollout replaces it); 503 with the revisions while migrations are
pending.

When the database cannot be used, the answer says why in ``database`` (``unreachable``,
``authentication failed``, ``tls failed``...): a wrong password is fixed in a secret, a host
that does not answer somewhere else.
"""

from dataclasses import dataclass
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
def _script(alembic_ini: Path) -> ScriptDirectory:
    return ScriptDirectory.from_config(Config(alembic_ini))


def _expected_heads(alembic_ini: Path) -> list[str]:
    return sorted(_script(alembic_ini).get_heads())


def _current_heads(connection: Connection) -> list[str]:
    return sorted(MigrationContext.configure(connection).get_current_heads())


@dataclass(frozen=True)
class SchemaState:
    """The database's revision against this release's head."""

    current: list[str]
    head: list[str]
    pending: int
    """Revisions of this release the database lacks (0 at the head, or ahead of it)."""
    ahead: bool
    """The database is at a revision this release does not know: a newer release migrated it
    (its expand step keeps this one working until the rollout replaces it)."""


def schema_state(connection: Connection, alembic_ini: Path) -> SchemaState:
    script = _script(alembic_ini)
    current = _current_heads(connection)
    head = _expected_heads(alembic_ini)
    known = {revision.revision for revision in script.walk_revisions()}
    if any(revision not in known for revision in current):
        return SchemaState(current, head, 0, ahead=True)
    lacking = script.iterate_revisions("heads", tuple(current) or "base")
    pending = sum(1 for revision in lacking if revision.revision not in current)
    return SchemaState(current, head, pending, ahead=False)


@router.get("/health")
async def health(
    request: Request, session: Annotated[AsyncSession, Depends(get_session)]
) -> JSONResponse:
    settings: Settings = request.app.state.settings
    try:
        connection = await session.connection()
        state = await connection.run_sync(schema_state, settings.alembic_ini)
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
    # Ready at the head, and ahead of it: during a deploy the release still serving keeps
    # serving once the new release's migrations ran (they keep the old schema working).
    ready = state.pending == 0
    body: dict[str, Any] = {
        "status": "migrations pending" if not ready else "ok",
        "database": "ok",
        "revision": {"current": state.current, "head": state.head},
    }
    if state.ahead:
        body["revision"]["ahead"] = True
    return JSONResponse(status_code=200 if ready else 503, content=body)
