"""Alembic environment: async, URL from the settings, ``Base.metadata`` as the target.

Three ways in:
- offline (``alembic upgrade head --sql``): renders SQL for the PostgreSQL dialect, no database
  and no DATABASE_URL needed;
- a connection handed in by a caller (tests, tools) through ``config.attributes["connection"]``,
  either a sync ``Connection`` or an ``AsyncEngine`` (and other models to compare with, through
  ``config.attributes["target_metadata"]``);
- otherwise an async engine (NullPool) on MIGRATIONS_DATABASE_URL, else DATABASE_URL (libpq's
  ``sslmode`` and friends allowed), giving up after DATABASE_CONNECT_TIMEOUT. A failure to
  connect is one line naming user@host:port/database and what to check (``SHOW_TRACEBACK=1``
  for the traceback); a transaction pooler nobody declared is refused before anything runs, and
  the session's settings are reset before the connection is closed.

When the history has two heads (two branches each added a revision on the same parent), an
upgrade to ``head`` fails in one line naming them and ``make relink``, not in Alembic's words.

Online, every run holds the deploy lock (one deploy migrates at a time) and runs with
lock_timeout and statement_timeout set; offline, the SQL starts with the same SET statements.
"""

import asyncio
import logging
from collections.abc import Iterable
from logging.config import fileConfig
from typing import Any

from alembic import context
from alembic.operations.ops import MigrationScript
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError
from alembic_pgsafe.autogenerate import (
    AUTOGENERATE_PLUGINS,
    index_foreign_keys,
    safe_revision_directives,
)
from alembic_pgsafe.backfill_jobs import JOBS_TABLE
from alembic_pgsafe.connect import (
    POOLER_DETECTED,
    create_engine,
    failure_line,
    through_transaction_pooler,
    where,
)
from alembic_pgsafe.helpers import (
    deploy_lock,
    deploy_lock_key,
    reset_session,
    set_timeouts,
)
from alembic_pgsafe.history import heads_message
from alembic_pgsafe.squash import behind_baseline
from pydantic import ValidationError
from sqlalchemy import Connection, MetaData, pool, text
from sqlalchemy.ext.asyncio import AsyncEngine

import {{ cookiecutter.project_slug }}.models
from {{ cookiecutter.project_slug }}.settings import MigrationSettings, SettingsError, get_settings

config = context.config
log = logging.getLogger("alembic.env")

if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def models_metadata() -> MetaData:
    """The models, or those a caller hands in (``config.attributes["target_metadata"]``)."""
    handed_in = config.attributes.get("target_metadata")
    if isinstance(handed_in, MetaData):
        return handed_in
    return {{ cookiecutter.project_slug }}.models.Base.metadata


# The models, plus an index for every foreign key that has none: PostgreSQL makes none.
target_metadata = index_foreign_keys(models_metadata())
DEPLOY_LOCK_KEY = deploy_lock_key("{{ cookiecutter.project_slug }}:alembic")


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Leave the toolkit's own tables out of autogenerate: no model describes them."""
    return not (type_ == "table" and name == JOBS_TABLE)


COMMON_OPTIONS: dict[str, Any] = {
    "target_metadata": target_metadata,
    "include_name": include_name,
    "compare_type": True,
    "compare_server_default": True,
    # Alembic's comparators, plus CHECK constraints by name and by definition.
    "autogenerate_plugins": AUTOGENERATE_PLUGINS,
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


def write_revision(
    migration_context: MigrationContext,
    revision: str | Iterable[str | None] | Iterable[str],
    directives: list[MigrationScript],
) -> None:
    """What autogenerate writes: the toolkit's safe operations (or a refusal), never empty."""
    safe_revision_directives(migration_context, revision, directives)
    refuse_empty_autogenerate(migration_context, revision, directives)


def migration_settings() -> MigrationSettings:
    """Limits from MIGRATION_* settings, overridden by ``-x name=value`` arguments."""
    arguments = context.get_x_argument(as_dictionary=True)
    if unknown := sorted(set(arguments) - set(MigrationSettings.model_fields)):
        known = ", ".join(MigrationSettings.model_fields)
        msg = f"Unknown -x setting(s): {', '.join(unknown)}. Known: {known}."
        raise SystemExit(msg)
    try:
        return MigrationSettings(**arguments)  # type: ignore[arg-type]  # validated here
    except ValidationError as exc:
        raise SystemExit(f"Invalid migration setting:\n{exc}") from None


def refuse_several_heads(exc: Exception) -> None:
    """Two heads stop an upgrade to ``head``: say which, and the command that makes one."""
    several = isinstance(exc, CommandError) and "ultiple head" in str(exc)
    if several and (line := heads_message(context.script)):
        raise SystemExit(f"FAILED: {line}") from None


def run_migrations_offline() -> None:
    limits = migration_settings()
    context.configure(
        dialect_name="postgresql",
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        migration_settings=limits,
        **COMMON_OPTIONS,
    )
    with context.begin_transaction():
        # Session-wide, so they hold in every transaction of the script and outside them.
        context.execute(text("SET lock_timeout = :value").bindparams(value=limits.lock_timeout))
        context.execute(
            text("SET statement_timeout = :value").bindparams(value=limits.statement_timeout)
        )
        try:
            context.run_migrations()
        except CommandError as exc:
            refuse_several_heads(exc)
            raise


def do_run_migrations(
    connection: Connection, limits: MigrationSettings, *, owned: bool = True
) -> None:
    set_timeouts(
        connection, lock_timeout=limits.lock_timeout, statement_timeout=limits.statement_timeout
    )
    if owned:
        # configure() must find no open transaction, or autocommit_block() cannot work.
        connection.commit()
    context.configure(
        connection=connection,
        process_revision_directives=write_revision,
        migration_settings=limits,
        **COMMON_OPTIONS,
    )
    # A database at a revision a baseline squashed: Alembic alone would say it cannot locate it.
    if behind := behind_baseline(context.script, context.get_context().get_current_heads()):
        raise SystemExit(f"FAILED: {behind}")
    if owned:
        connection.commit()  # that read began a transaction: each migration begins its own
    with context.begin_transaction():
        context.run_migrations()


class TransactionPoolerError(RuntimeError):
    """The connection goes through a transaction pooler that nobody declared."""


def run_under_deploy_lock(
    connection: Connection, limits: MigrationSettings, *, detect_pooler: bool = True
) -> None:
    if detect_pooler and through_transaction_pooler(connection):
        raise TransactionPoolerError(POOLER_DETECTED.format(where=where(connection.engine.url)))
    try:
        with deploy_lock(connection, DEPLOY_LOCK_KEY, wait_seconds=limits.deploy_lock_wait):
            do_run_migrations(connection, limits)
    finally:
        # Nothing this run set may outlive it on a server session a pooler would hand on.
        reset_session(connection)


async def run_async_migrations(engine: AsyncEngine, *, detect_pooler: bool = True) -> None:
    try:
        async with engine.connect() as connection:
            await connection.run_sync(
                run_under_deploy_lock, migration_settings(), detect_pooler=detect_pooler
            )
    finally:
        # The engine's pooled connections belong to this event loop, which ends here.
        await engine.dispose()


def migrations_engine() -> AsyncEngine:
    """An engine on MIGRATIONS_DATABASE_URL, else DATABASE_URL, with the connect timeout."""
    try:
        settings = get_settings()
    except SettingsError as exc:
        msg = (
            f"{exc}. Set DATABASE_URL (or MIGRATIONS_DATABASE_URL) to a PostgreSQL URL to run"
            " migrations online, or pass --sql to render them offline."
        )
        raise SystemExit(msg) from None
    try:
        return create_engine(
            settings.alembic_database_url,
            timeout=settings.database_connect_timeout,
            poolclass=pool.NullPool,
        )
    except ValueError as exc:  # through a transaction pooler: refused, with what to set
        raise SystemExit(str(exc)) from None


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if isinstance(connectable, Connection):
        # The caller's connection, maybe inside the caller's transaction: no lock, no commit.
        do_run_migrations(connectable, migration_settings(), owned=False)
        return
    # An engine a caller hands in (tests, tools) is the caller's to vouch for; ours is checked
    # for a transaction pooler nobody declared.
    handed_in = isinstance(connectable, AsyncEngine)
    if not isinstance(connectable, AsyncEngine):
        connectable = migrations_engine()
    try:
        asyncio.run(run_async_migrations(connectable, detect_pooler=not handed_in))
    except TransactionPoolerError as exc:
        raise SystemExit(f"FAILED: {exc}") from None
    except Exception as exc:
        refuse_several_heads(exc)
        raise SystemExit(f"FAILED: {failure_line(exc, where(connectable.url))}") from None


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
