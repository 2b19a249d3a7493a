"""``GET /health``: is the database reachable, and is its schema at the migrations' head?"""

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from {{ cookiecutter.project_slug }}.db.session import get_session
from {{ cookiecutter.project_slug }}.settings import Settings

router = APIRouter(tags=["health"])


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
    except (SQLAlchemyError, OSError):
        body: dict[str, Any] = {"status": "unavailable", "database": "unreachable"}
        return JSONResponse(status_code=503, content=body)
    at_head = current == expected
    body = {
        "status": "ok" if at_head else "migrations pending",
        "database": "ok",
        "revision": {"current": current, "head": expected},
    }
    return JSONResponse(status_code=200 if at_head else 503, content=body)
