"""Alembic environment: async, URL from the settings, ``Base.metadata`` as the target.

Three ways in:
- offline (``alembic upgrade head --sql``): renders SQL for the PostgreSQL dialect, no database
  and no DATABASE_URL needed;
- a connection handed in by a caller (tests, tools) through ``config.attributes["connection"]``,
  either a sync ``Connection`` or an ``AsyncEngine``;
- otherwise an async engine (NullPool) on MIGRATIONS_DATABASE_URL, else DATABASE_URL.
"""

import asyncio
import logging
from collections.abc import Iterable
from logging.config import fileConfig
from typing import Any

from alembic import context
from alembic.operations.ops import MigrationScript
from alembic.runtime.migration import MigrationContext
from pydantic import ValidationError
from sqlalchemy import Connection, pool
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import {{ cookiecutter.project_slug }}.models
from {{ cookiecutter.project_slug }}.settings import get_settings

config = context.config
log = logging.getLogger("alembic.env")

if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = {{ cookiecutter.project_slug }}.models.Base.metadata

COMMON_OPTIONS: dict[str, Any] = {
    "target_metadata": target_metadata,
    "compare_type": True,
    "compare_server_default": True,
    # Each migration commits on its own: a failure in the fifth leaves the first four applied
    # and recorded, and autocommit_block() (CREATE INDEX CONCURRENTLY) works inside a migration.
    "transaction_per_migration": True,
}


def refuse_empty_autogenerate(
    migration_context: MigrationContext,
    revision: str | Iterable[str | None] | Iterable[str],
    directives: list[MigrationScript],
) -> None:
    """Do not write a revision file when autogenerate found no change."""
    cmd_opts = config.cmd_opts
    if cmd_opts is None or not getattr(cmd_opts, "autogenerate", False):
        return
    script = directives[0]
    if script.upgrade_ops is not None and script.upgrade_ops.is_empty():
        directives[:] = []
        log.info("No change between the models and the database: no revision written.")


def run_migrations_offline() -> None:
    context.configure(
        dialect_name="postgresql",
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **COMMON_OPTIONS,
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        process_revision_directives=refuse_empty_autogenerate,
        **COMMON_OPTIONS,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations(engine: AsyncEngine) -> None:
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        # The engine's pooled connections belong to this event loop, which ends here.
        await engine.dispose()


def database_url() -> str:
    try:
        return get_settings().alembic_database_url
    except ValidationError as exc:
        msg = (
            "Set DATABASE_URL (or MIGRATIONS_DATABASE_URL) to a PostgreSQL URL to run migrations "
            "online, or pass --sql to render them offline.\n"
            f"{exc}"
        )
        raise SystemExit(msg) from None


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if isinstance(connectable, Connection):
        do_run_migrations(connectable)
        return
    if not isinstance(connectable, AsyncEngine):
        connectable = create_async_engine(database_url(), poolclass=pool.NullPool)
    asyncio.run(run_async_migrations(connectable))


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
