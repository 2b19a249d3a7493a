"""The Alembic environment, as one call from a project's ``env.py``::

    from alembic_pgsafe.environment import run_migrations

    from myservice.models import Base

    run_migrations(Base.metadata)

Three ways in, as Alembic's own async template has them:

- offline (``alembic upgrade head --sql``): SQL for the PostgreSQL dialect, no database and no
  URL needed, starting with the same ``SET lock_timeout``/``statement_timeout`` as online;
- a connection handed in by a caller (tests, tools) through ``config.attributes["connection"]``,
  either a sync ``Connection`` (used as it is, inside the caller's transaction) or an
  ``AsyncEngine`` (and other models to compare with, ``config.attributes["target_metadata"]``);
- otherwise an async engine (NullPool) on MIGRATIONS_DATABASE_URL, else DATABASE_URL, else the
  ini's ``sqlalchemy.url`` (libpq's ``sslmode`` and friends allowed), giving up after
  DATABASE_CONNECT_TIMEOUT. A failure to connect is one line naming user@host:port/database and
  what to check (``SHOW_TRACEBACK=1`` for the traceback); a transaction pooler nobody declared
  is refused before anything runs, and the session's settings are reset before it closes.

Online, every run holds the deploy lock (one deploy migrates at a time) and runs with
lock_timeout and statement_timeout set; each revision commits on its own. Autogenerate writes
the toolkit's safe operations (or refuses with the recipe) and never an empty revision. Two
heads, or a database behind a squashed baseline, fail in one line saying what to run.
"""

import asyncio
import logging
from collections.abc import Callable, Iterable
from logging.config import fileConfig
from pathlib import Path
from typing import Any

from alembic import context
from alembic.operations.ops import MigrationScript
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError
from pydantic import ValidationError
from sqlalchemy import Connection, MetaData, pool, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from alembic_pgsafe.autogenerate import (
    AUTOGENERATE_PLUGINS,
    index_foreign_keys,
    safe_revision_directives,
)
from alembic_pgsafe.backfill_jobs import JOBS_TABLE
from alembic_pgsafe.connect import (
    POOLER_DETECTED,
    create_engine,
    describe_failure,
    failure_line,
    show_traceback,
    through_transaction_pooler,
    where,
)
from alembic_pgsafe.helpers import (
    committed_steps,
    deploy_lock,
    deploy_lock_key,
    failing_revision,
    forget_committed_steps,
    reset_session,
    set_timeouts,
)
from alembic_pgsafe.history import heads_message
from alembic_pgsafe.logs import RevisionEvents, configure_logging, log_settings
from alembic_pgsafe.settings import (
    DEFAULT_CONNECT_TIMEOUT,
    PROJECT_ROOT,
    DatabaseSettings,
    MigrationSettings,
    SettingsError,
    command_name,
    project_prefix,
)
from alembic_pgsafe.squash import behind_baseline

__all__ = [
    "IncludeName",
    "TransactionPoolerError",
    "migration_settings",
    "run_migrations",
    "run_offline",
]

log = logging.getLogger("alembic.env")
IncludeName = Callable[[str | None, str, Any], bool]
PLACEHOLDER_URL = "driver://user:pass@localhost/dbname"
"""What ``alembic init`` writes into alembic.ini: not a URL to connect to."""


class TransactionPoolerError(RuntimeError):
    """The connection goes through a transaction pooler that nobody declared."""


def run_migrations(target_metadata: MetaData, *, include_name: IncludeName | None = None) -> None:
    """Run Alembic's command (offline or online) the safe way; ``env.py`` calls only this.

    ``include_name`` narrows what autogenerate compares, on top of leaving out the toolkit's own
    table. The deploy lock is named by the ``deploy_lock_name`` setting, by default the
    project's name in the pyproject.toml beside alembic.ini, with ``:alembic``.
    """
    config = context.config
    if config.config_file_name is not None and config.attributes.get("configure_logger", True):
        fileConfig(config.config_file_name, disable_existing_loggers=False)
        _log_as_the_service_does()
    handed_in = config.attributes.get("target_metadata")
    models = handed_in if isinstance(handed_in, MetaData) else target_metadata
    options = _options(
        # The models, plus an index for every foreign key that has none: PostgreSQL makes none.
        index_foreign_keys(models),
        include_name,
    )
    if context.is_offline_mode():
        _run_offline(options)
    else:
        _run_online(options)


def _log_as_the_service_does() -> None:
    """``LOG_FORMAT=json`` (a container's default): every line of the run as the service writes
    its own, one JSON object with fields, instead of alembic.ini's text format."""
    try:
        settings = log_settings()
    except SettingsError as exc:
        raise SystemExit(f"FAILED: {exc}") from None
    if settings.log_format == "json":
        configure_logging("json", level=settings.log_level)


def run_offline(target_metadata: MetaData | None = None) -> None:
    """The offline half of :func:`run_migrations`, inside an ``EnvironmentContext`` a tool
    opened itself (lint renders each revision's SQL this way, without the project's env.py)."""
    _run_offline(_options(target_metadata if target_metadata is not None else MetaData(), None))


def _options(target_metadata: MetaData, include_name: IncludeName | None) -> dict[str, Any]:
    def included(name: str | None, type_: str, parent_names: Any) -> bool:
        """Leave the toolkit's own tables out of autogenerate: no model describes them."""
        if type_ == "table" and name == JOBS_TABLE:
            return False
        return include_name is None or include_name(name, type_, parent_names)

    return {
        "target_metadata": target_metadata,
        "include_name": included,
        "compare_type": True,
        "compare_server_default": True,
        # Alembic's comparators, plus CHECK constraints by name and by definition.
        "autogenerate_plugins": AUTOGENERATE_PLUGINS,
        # Each migration commits on its own: a failure in the fifth leaves the first four
        # applied and recorded, and autocommit_block() (CREATE INDEX CONCURRENTLY) works inside.
        "transaction_per_migration": True,
        # What a revision's helpers committed on their own is noted until it is applied.
        "on_version_apply": (forget_committed_steps,),
    }


def _refuse_empty_autogenerate(
    migration_context: MigrationContext,
    revision: str | Iterable[str | None] | Iterable[str],
    directives: list[MigrationScript],
) -> None:
    """Do not write a revision file when autogenerate found no change."""
    cmd_opts = context.config.cmd_opts
    if cmd_opts is None or not getattr(cmd_opts, "autogenerate", False):
        return
    script = directives[0]
    if script.upgrade_ops is not None and script.upgrade_ops.is_empty():
        directives[:] = []
        log.info("No change between the models and the database: no revision written.")


def _write_revision(
    migration_context: MigrationContext,
    revision: str | Iterable[str | None] | Iterable[str],
    directives: list[MigrationScript],
) -> None:
    """What autogenerate writes: the toolkit's safe operations (or a refusal), never empty."""
    safe_revision_directives(migration_context, revision, directives)
    _refuse_empty_autogenerate(migration_context, revision, directives)


def migration_settings() -> MigrationSettings:
    """Limits from MIGRATION_* settings (and pyproject.toml), overridden by ``-x name=value``."""
    arguments = context.get_x_argument(as_dictionary=True)
    if unknown := sorted(set(arguments) - set(MigrationSettings.model_fields)):
        known = ", ".join(MigrationSettings.model_fields)
        msg = f"Unknown -x setting(s): {', '.join(unknown)}. Known: {known}."
        raise SystemExit(msg)
    try:
        return MigrationSettings(**arguments)  # type: ignore[arg-type]  # validated here
    except ValidationError as exc:
        raise SystemExit(f"Invalid migration setting:\n{exc}") from None


def _refuse_several_heads(exc: Exception) -> None:
    """Two heads stop an upgrade to ``head``: say which, and the command that makes one."""
    several = isinstance(exc, CommandError) and "ultiple head" in str(exc)
    if several and (line := heads_message(context.script)):
        raise SystemExit(f"FAILED: {line}") from None


def _run_offline(options: dict[str, Any]) -> None:
    limits = migration_settings()
    context.configure(
        dialect_name="postgresql",
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        migration_settings=limits,
        **options,
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
            _refuse_several_heads(exc)
            raise


def _do_run_migrations(
    connection: Connection,
    limits: MigrationSettings,
    options: dict[str, Any],
    *,
    owned: bool = True,
) -> None:
    set_timeouts(
        connection, lock_timeout=limits.lock_timeout, statement_timeout=limits.statement_timeout
    )
    if owned:
        # configure() must find no open transaction, or autocommit_block() cannot work.
        connection.commit()
    events = RevisionEvents()
    context.configure(
        connection=connection,
        process_revision_directives=_write_revision,
        migration_settings=limits,
        **options | {"on_version_apply": (*options["on_version_apply"], events.applied)},
    )
    # A database at a revision a baseline squashed: Alembic alone would say it cannot locate it.
    if behind := behind_baseline(context.script, context.get_context().get_current_heads()):
        raise SystemExit(f"FAILED: {behind}")
    if owned:
        connection.commit()  # that read began a transaction: each migration begins its own
    forget_committed_steps()
    migration_log = logging.getLogger("alembic.runtime.migration")
    migration_log.addFilter(events)
    try:
        with context.begin_transaction():
            context.run_migrations()
    except BaseException as exc:
        events.failed(exc)
        raise
    finally:
        migration_log.removeFilter(events)


def _run_under_deploy_lock(
    connection: Connection,
    limits: MigrationSettings,
    options: dict[str, Any],
    lock_key: int,
    *,
    detect_pooler: bool = True,
) -> None:
    if detect_pooler and through_transaction_pooler(connection):
        raise TransactionPoolerError(POOLER_DETECTED.format(where=where(connection.engine.url)))
    try:
        with deploy_lock(connection, lock_key, wait_seconds=limits.deploy_lock_wait):
            _do_run_migrations(connection, limits, options)
    finally:
        # Nothing this run set may outlive it on a server session a pooler would hand on.
        reset_session(connection)


async def _run_async(engine: AsyncEngine, options: dict[str, Any], *, detect_pooler: bool) -> None:
    limits = migration_settings()
    try:
        async with engine.connect() as connection:
            await connection.run_sync(
                _run_under_deploy_lock,
                limits,
                options,
                _deploy_lock_key(limits),
                detect_pooler=detect_pooler,
            )
    finally:
        # The engine's pooled connections belong to this event loop, which ends here.
        await engine.dispose()


def _ini_url() -> str | None:
    """The ini's ``sqlalchemy.url``, unless it is missing or ``alembic init``'s placeholder."""
    url = context.config.get_main_option("sqlalchemy.url")
    return url if url and url != PLACEHOLDER_URL else None


def _migrations_engine() -> AsyncEngine:
    """An engine on MIGRATIONS_DATABASE_URL, else DATABASE_URL, else the ini's URL."""
    try:
        settings = DatabaseSettings()
    except ValidationError as exc:
        only_missing = all(error["type"] == "missing" for error in exc.errors())
        if (ini_url := _ini_url()) is not None and only_missing:
            return _engine(ini_url, timeout=DEFAULT_CONNECT_TIMEOUT)
        msg = (
            f"{SettingsError.from_validation(exc)}. Set DATABASE_URL (or MIGRATIONS_DATABASE_URL)"
            " to a PostgreSQL URL to run migrations online, or pass --sql to render them offline."
        )
        raise SystemExit(msg) from None
    try:
        url = settings.alembic_database_url
    except ValueError as exc:  # through a transaction pooler: refused, with what to set
        raise SystemExit(str(exc)) from None
    return _engine(url, timeout=settings.database_connect_timeout)


def _engine(url: str, *, timeout: float) -> AsyncEngine:
    try:
        return create_engine(url, timeout=timeout, poolclass=pool.NullPool)
    except ValueError as exc:  # not a PostgreSQL URL: said without quoting it
        raise SystemExit(str(exc)) from None


def _deploy_lock_key(limits: MigrationSettings) -> int:
    """The deploy lock every deploy of one database takes: the same name, the same key."""
    if limits.deploy_lock_name:
        return deploy_lock_key(limits.deploy_lock_name)
    ini = context.config.config_file_name
    root = Path(ini).resolve().parent if ini else PROJECT_ROOT
    return deploy_lock_key(f"{project_prefix(root)}:alembic")


def _run_online(options: dict[str, Any]) -> None:
    connectable = context.config.attributes.get("connection")
    if isinstance(connectable, Connection):
        # The caller's connection, maybe inside the caller's transaction: no lock, no commit.
        _do_run_migrations(connectable, migration_settings(), options, owned=False)
        return
    # An engine a caller hands in (tests, tools) is the caller's to vouch for; ours is checked
    # for a transaction pooler nobody declared.
    handed_in = isinstance(connectable, AsyncEngine)
    if not isinstance(connectable, AsyncEngine):
        connectable = _migrations_engine()
    try:
        asyncio.run(_run_async(connectable, options, detect_pooler=not handed_in))
    except TransactionPoolerError as exc:
        raise SystemExit(f"FAILED: {exc}") from None
    except Exception as exc:
        _refuse_several_heads(exc)
        stayed = _what_stayed_committed(exc)
        if describe_failure(exc) is None and not show_traceback():
            if isinstance(exc, CommandError):  # a refusal: Alembic prints FAILED: <message>
                if not stayed:
                    raise
                raise CommandError(f"{str(exc).rstrip('.')}.{stayed}") from None
            if isinstance(exc, DBAPIError) and (revision := failing_revision(exc)):
                said = str(exc.orig).strip().splitlines()[0].rstrip(".")  # PostgreSQL's error
                raise CommandError(f"{revision}: {said}.{stayed}") from None
        said = failure_line(exc, where(connectable.url))
        raise SystemExit(f"FAILED: {said}" + (f".{stayed}" if stayed else "")) from None


def _what_stayed_committed(exc: BaseException) -> str:
    """What the failing revision's helpers had committed on their own, said after the error:
    PostgreSQL rolled back only the rest. Each of those steps checks first, so the revision,
    fixed, runs again to the end without doing them twice."""
    steps = committed_steps()
    if not steps:
        return ""  # the failing revision was rolled back whole, as Alembic's users expect
    revision = failing_revision(exc) or "the failing revision"
    return (
        f" {revision} had committed, and keeps: {'; '.join(steps)}; the rest was rolled back."
        f" Fix the cause and run {command_name('migrate')} again: those steps are not done twice."
    )
