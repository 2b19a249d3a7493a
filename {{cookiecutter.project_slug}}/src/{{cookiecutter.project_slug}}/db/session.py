"""The async engine, the session factory and the FastAPI dependency that hands out sessions."""

from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

from alembic_pgsafe.connect import database_target
from fastapi import Request
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from {{ cookiecutter.project_slug }}.settings import Settings


def _statement_name() -> str:
    return f"__asyncpg_{uuid4()}__"


def connect_args(settings: Settings) -> dict[str, Any]:
    """asyncpg's options: the connect timeout, the URL's TLS parameters and, behind PgBouncer,
    no prepared statement that outlives its transaction.

    asyncpg caches prepared statements per connection under names such as
    ``__asyncpg_stmt_1__``; in transaction pooling the next transaction may run on another
    server connection, where that statement does not exist (or another client's of the same name
    does). As SQLAlchemy's asyncpg documentation recommends for PgBouncer: no statement cache in
    asyncpg or SQLAlchemy, and a unique name for every statement it still prepares.
    """
    options: dict[str, Any] = {}
    if settings.database_pooler == "pgbouncer":
        options |= {
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": _statement_name,
        }
    # libpq's TLS parameters in the URL (sslmode, sslrootcert...), as asyncpg takes them.
    return database_target(settings.database_url).connect_args(
        timeout=settings.database_connect_timeout, **options
    )


def create_engine(settings: Settings) -> AsyncEngine:
    target = database_target(settings.database_url)
    return create_async_engine(target.url, pool_pre_ping=True, connect_args=connect_args(settings))


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """Yield one session per request, from the factory the app created at start-up."""
    factory: async_sessionmaker[AsyncSession] = request.app.state.session_factory
    session = factory()
    try:
        yield session
    finally:
        try:
            await session.close()
        except DBAPIError as exc:
            # The server ended the connection after the response was sent (PostgreSQL
            # stopping): its transaction is over anyway. Raising here would make uvicorn log a
            # traceback and drop the client's keep-alive connection (SQLAlchemy issue 10409).
            if not exc.connection_invalidated:
                raise
