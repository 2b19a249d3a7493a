"""Helpers that keep migrations safe on a live PostgreSQL database.

Each helper exists because of one way a migration hurts production; its docstring names it.
They work on the Alembic context of the running migration (``op``), so a revision reads as a
short recipe, and they also work offline (``alembic upgrade --sql``), where they emit the SQL.

A revision with an ``autocommit_block()`` (every helper that builds an index or validates a
constraint opens one) is not atomic: what it did before the block is committed when the block
starts. So each helper checks what is already there and skips it, and a revision that failed
half-way is fixed by running it again.
"""

import hashlib
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.util import ClauseAdapter

from alembic_pgsafe.settings import MigrationSettings

__all__ = [
    "CHECK_VIOLATION",
    "DEADLOCK_DETECTED",
    "LOCK_NOT_AVAILABLE",
    "TOOLKIT_RULES",
    "WHOLE_TABLE_DML",
    "WRITE_LOCK_MODES",
    "MigrationSafetyError",
    "UnwrittenValueError",
    "WithdrawnStepError",
    "acknowledge_lint",
    "add_check_constraint",
    "add_enum_value",
    "add_foreign_key",
    "add_not_null",
    "add_primary_key",
    "add_unique_constraint",
    "autocommit",
    "build_workers",
    "committed_steps",
    "committing",
    "compiled_sql",
    "create_index_concurrently",
    "deploy_lock",
    "deploy_lock_key",
    "describe_lock_holders",
    "drop_index_concurrently",
    "drop_old_table_name",
    "failing_revision",
    "fill_on_insert",
    "forget_committed_steps",
    "is_lock_timeout",
    "keep_columns_in_step",
    "lint_waiver",
    "literal_sql",
    "migration_settings",
    "refuse_broken_concurrent_builds",
    "reindex_concurrently",
    "rename_table",
    "set_timeouts",
    "stop_filling_on_insert",
    "stop_keeping_columns_in_step",
    "timeouts",
    "value_to_write",
    "with_lock_retry",
]

log = logging.getLogger("alembic.safety")
T = TypeVar("T")

LOCK_NOT_AVAILABLE = "55P03"  # SQLSTATE of "canceling statement due to lock timeout"
DEADLOCK_DETECTED = "40P01"  # SQLSTATE of "deadlock detected": the statement was cancelled
CHECK_VIOLATION = "23514"  # SQLSTATE of "check constraint ... is violated by some row"
# Modes that conflict with the SHARE lock CREATE INDEX CONCURRENTLY waits for.
WRITE_LOCK_MODES = (
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
)


class MigrationSafetyError(CommandError):
    """A migration step refused or gave up; the message says why and what to do.

    A CommandError, so the alembic command line prints it as one ``FAILED: ...`` line instead
    of a traceback.
    """


# --- settings and timeouts ---------------------------------------------------------------------


def migration_settings() -> MigrationSettings:
    """The limits env.py resolved (settings, then ``-x`` arguments), or the defaults."""
    configured = op.get_context().opts.get("migration_settings")
    return configured if isinstance(configured, MigrationSettings) else MigrationSettings()


def set_timeouts(connection: Connection, *, lock_timeout: str, statement_timeout: str) -> None:
    """Set both limits for the session.

    Session-wide on purpose: ``SET LOCAL`` lasts one transaction and does nothing in
    autocommit mode, which is where backfills and concurrent index builds run.
    """
    connection.execute(
        sa.select(
            sa.func.set_config("lock_timeout", lock_timeout, False),
            sa.func.set_config("statement_timeout", statement_timeout, False),
        )
    )


def reset_session(connection: Connection) -> None:
    """Every setting this session changed (the limits above) back to its default, before the
    server session goes back to any pool: a pooler would hand them on to the next client."""
    if connection.closed or connection.invalidated:
        return
    connection.rollback()
    with autocommit(connection):
        connection.execute(sa.text("RESET ALL"))


@contextmanager
def timeouts(
    *, lock_timeout: str | None = None, statement_timeout: str | None = None
) -> Iterator[None]:
    """Other limits for one step (an index build, a batch), then the previous ones again."""
    if op.get_context().as_sql:
        yield
        return
    connection = op.get_bind()
    previous = connection.execute(
        sa.select(
            sa.func.current_setting("lock_timeout"), sa.func.current_setting("statement_timeout")
        )
    ).one()
    set_timeouts(
        connection,
        lock_timeout=lock_timeout or previous[0],
        statement_timeout=statement_timeout or previous[1],
    )
    try:
        yield
    finally:
        set_timeouts(connection, lock_timeout=previous[0], statement_timeout=previous[1])


@contextmanager
def build_workers(connection: Connection, workers: int | None, name: str) -> Iterator[None]:
    """``max_parallel_maintenance_workers`` for one index build (None: the server's), then the
    previous value again.

    On a small server the build's parallel workers take the cores the application's backends
    need: ``make bench``-style runs at 10 M rows on 2 cores measured the writer's p99 during
    CREATE INDEX CONCURRENTLY at 3.4 ms with 0 workers against 6.0 ms with the default, the
    build 0.3 s slower; the worst stall (the build's fsync of the new index) stayed the same.
    """
    if workers is None:
        yield
        return
    setting = "max_parallel_maintenance_workers"
    previous = connection.execute(sa.select(sa.func.current_setting(setting))).scalar_one()
    connection.execute(sa.select(sa.func.set_config(setting, str(workers), False)))
    log.info("building %s with %s = %d", name, setting, workers)
    try:
        yield
    finally:
        connection.execute(sa.select(sa.func.set_config(setting, previous, False)))


# --- waiting for locks -------------------------------------------------------------------------


def is_lock_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` is a lock not granted: lock_timeout ran out, or PostgreSQL broke a
    deadlock by cancelling this statement (a DDL step locking two tables, say a foreign key's,
    while the application's transaction holds one and waits for the other)."""
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None)
    return state in (LOCK_NOT_AVAILABLE, DEADLOCK_DETECTED) or "lock timeout" in str(exc)


def describe_lock_holders(connection: Connection, table: str) -> str:
    """Who holds a lock on ``table`` (pid, state, lock mode, query), for an error message."""
    connection.execute(sa.select(sa.func.pg_stat_clear_snapshot()))
    rows = connection.execute(
        sa.text(
            "SELECT a.pid, a.state, l.mode, left(a.query, 120) AS query"
            " FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid"
            " WHERE l.locktype = 'relation' AND l.relation = to_regclass(:table)"
            " AND l.granted AND a.pid <> pg_backend_pid() ORDER BY a.xact_start"
        ),
        {"table": table},
    ).all()
    if not rows:
        return "no lock holder visible any more"
    return "; ".join(f"pid {r.pid} ({r.state}, {r.mode}): {r.query!r}" for r in rows)


def _in_autocommit(connection: Connection) -> bool:
    return connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT"


def with_lock_retry(step: Callable[[], T], *, table: str, attempts: int | None = None) -> T:
    """Run a DDL step that needs a lock on ``table``, retrying when the lock is not granted.

    Problem: a DDL statement queued behind a long transaction blocks every query that arrives
    after it, so one slow report freezes the whole table. With lock_timeout the statement gives
    up instead; this retries it with exponential backoff and jitter, ``attempts`` times in all,
    then fails naming the sessions that held the lock. Inside a transaction each attempt runs
    in a savepoint, so a timed-out attempt does not abort the migration's transaction.
    """
    context = op.get_context()
    if context.as_sql:
        return step()
    connection = op.get_bind()
    attempts = attempts or migration_settings().lock_attempts
    for attempt in range(1, attempts + 1):
        savepoint = None if _in_autocommit(connection) else connection.begin_nested()
        try:
            result = step()
        except DBAPIError as exc:
            if savepoint is not None:
                savepoint.rollback()
            if not is_lock_timeout(exc):
                raise
            holders = describe_lock_holders(connection, table)
            pause = min(8.0, 0.25 * 2**attempt) * random.uniform(0.5, 1.0)  # noqa: S311
            log.warning(
                "lock on %s not granted (attempt %d/%d): %s",
                table,
                attempt,
                attempts,
                holders,
                extra={
                    "event": "migration.lock_retry",
                    "table": table,
                    "attempt": attempt,
                    "attempts": attempts,
                    "lock_timeout": migration_settings().lock_timeout,
                    "held_by": holders,
                    "retry_in_seconds": round(pause, 3) if attempt < attempts else None,
                },
            )
            if attempt == attempts:
                msg = (
                    f"could not lock {table} after {attempts} attempts (lock_timeout"
                    f" {migration_settings().lock_timeout} each); held by: {holders}."
                    " Retry when that session is done, or end it (pg_terminate_backend)."
                )
                raise MigrationSafetyError(msg) from exc
            time.sleep(pause)
        else:
            if savepoint is not None:
                savepoint.commit()
            return result
    raise AssertionError("unreachable")  # pragma: no cover


class WithdrawnStepError(MigrationSafetyError):
    """A step that failed and took back what it had committed: nothing of it stays."""


_COMMITTED: list[str] = []
"""What the revision being applied committed on its own so far (see :func:`committing`)."""


@contextmanager
def committing(step: str) -> Iterator[None]:
    """``autocommit_block()`` for a helper's ``step``, noted: a revision that fails later says
    which of its steps stayed committed (the transaction so far commits when the block starts,
    and each statement inside commits on its own). Every such step checks what is there first,
    so running the fixed revision again does nothing twice."""
    if not _COMMITTED:
        _COMMITTED.append(f"anything it ran before {step}")
    _COMMITTED.append(f"{step} (partly)")
    with op.get_context().autocommit_block():
        try:
            yield
        except WithdrawnStepError:
            _COMMITTED.pop()  # it took back what it had done
            raise
    _COMMITTED[-1] = step


def failing_revision(exc: BaseException) -> str | None:
    """The revision whose upgrade() or downgrade() raised ``exc``, from its traceback."""
    found = None
    traceback = exc.__traceback__
    while traceback is not None:
        frame = traceback.tb_frame
        revision = frame.f_globals.get("revision")
        if frame.f_code.co_name in ("upgrade", "downgrade") and isinstance(revision, str):
            found = revision  # a revision file's upgrade(), not Alembic's command.upgrade()
        traceback = traceback.tb_next
    return found


def committed_steps() -> list[str]:
    """What the revision being applied committed on its own before now."""
    return list(_COMMITTED)


def forget_committed_steps(*_: Any, **__: Any) -> None:
    """A revision applied (Alembic's ``on_version_apply``), or a run begins: nothing noted."""
    _COMMITTED.clear()


@contextmanager
def autocommit(connection: Connection) -> Iterator[Connection]:
    """The connection with each statement a transaction of its own, then back as it was."""
    connection.commit()
    connection.execution_options(isolation_level="AUTOCOMMIT")
    try:
        yield connection
    finally:
        connection.commit()
        connection.execution_options(isolation_level=connection.default_isolation_level)


# --- the deploy lock ---------------------------------------------------------------------------


def deploy_lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for ``name``."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def deploy_lock(connection: Connection, key: int, *, wait_seconds: float) -> Iterator[None]:
    """Let one deploy at a time migrate this database; the others wait, then find it done.

    Polls ``pg_try_advisory_lock`` in autocommit mode instead of blocking in
    ``pg_advisory_lock``: a session blocked there holds a snapshot, which CREATE INDEX
    CONCURRENTLY in the lock holder waits for (a deadlock), and lock_timeout would cut the
    wait short. A waiting deploy never sits idle in a transaction, and none is left open, so
    autocommit_block() keeps working.
    """
    deadline = time.monotonic() + wait_seconds
    announced = False
    while True:
        with autocommit(connection):
            try_lock = sa.select(sa.func.pg_try_advisory_lock(key))
            acquired = connection.execute(try_lock).scalar_one()
        if acquired:
            break
        if time.monotonic() > deadline:
            msg = f"another deploy held the migration lock for over {wait_seconds:.0f} s"
            raise MigrationSafetyError(msg)
        if not announced:
            log.info(
                "another deploy is migrating this database: waiting for it",
                extra={"event": "migration.deploy_lock_wait", "wait_limit_seconds": wait_seconds},
            )
            announced = True
        time.sleep(0.2)
    try:
        yield
    finally:
        connection.rollback()
        with autocommit(connection):
            connection.execute(sa.select(sa.func.pg_advisory_unlock(key)))


# --- indexes -----------------------------------------------------------------------------------


def refuse_broken_concurrent_builds(version: tuple[int, ...]) -> None:
    """PostgreSQL 14.0 to 14.3 can build corrupt indexes CONCURRENTLY: refuse to run there."""
    if version[:1] == (14,) and version < (14, 4):
        msg = (
            f"PostgreSQL {'.'.join(map(str, version))} can silently corrupt indexes built"
            " CONCURRENTLY (fixed in 14.4): upgrade the server before running this migration"
        )
        raise MigrationSafetyError(msg)


def _sessions_that_would_block_index_build(connection: Connection, table: str) -> list[str]:
    """Sessions idle in a transaction, for over a second, that the build would wait for.

    Measured on PostgreSQL 15: a session idle in a transaction blocks the build if it holds a
    snapshot (REPEATABLE READ or SERIALIZABLE) or a write lock on the table; a READ COMMITTED
    transaction that only read, or wrote elsewhere, does not. A session caught between two
    statements of a short transaction is not counted: the build waits for it, within
    lock_timeout, and with_lock_retry deals with one that does not finish.
    """
    connection.execute(sa.select(sa.func.pg_stat_clear_snapshot()))
    rows = connection.execute(
        sa.text(
            "SELECT a.pid, left(a.query, 120) AS query FROM pg_stat_activity AS a"
            " WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()"
            " AND a.state LIKE 'idle in transaction%'"
            " AND a.state_change < clock_timestamp() - interval '1 second'"
            " AND (a.backend_xmin IS NOT NULL"
            " OR EXISTS (SELECT 1 FROM pg_locks AS l WHERE l.pid = a.pid"
            " AND l.relation = to_regclass(:table) AND l.mode = ANY(:modes)))"
        ),
        {"table": table, "modes": list(WRITE_LOCK_MODES)},
    ).all()
    return [f"pid {row.pid}: {row.query!r}" for row in rows]


def _existing_index(connection: Connection, name: str) -> sa.Row[tuple[bool, bool, str]] | None:
    return connection.execute(
        sa.text(
            "SELECT i.indisvalid AS valid, i.indisunique AS is_unique,"
            " pg_get_indexdef(i.indexrelid) AS definition"
            " FROM pg_index AS i WHERE i.indexrelid = to_regclass(:name)"
        ),
        {"name": name},
    ).one_or_none()


IndexColumns = Sequence[str | sa.TextClause]
"""Column names, or ``sa.text("lower(email)")`` for an expression."""


def _create_index(
    name: str,
    table: str,
    columns: IndexColumns,
    *,
    unique: bool,
    where: str | None,
    options: dict[str, Any],
) -> None:
    op.create_index(
        name,
        table,
        list(columns),
        unique=unique,
        postgresql_concurrently=True,
        postgresql_where=sa.text(where) if where else None,
        **options,
    )


def create_index_concurrently(
    name: str,
    table: str,
    columns: IndexColumns,
    *,
    unique: bool = False,
    where: str | None = None,
    **options: Any,
) -> None:
    """Build an index without blocking writes, and heal what a failed build left behind.

    Problem: a plain CREATE INDEX blocks every write for the whole build. CONCURRENTLY does not,
    but a failed concurrent build leaves an INVALID index that PostgreSQL keeps updating and
    that ``IF NOT EXISTS`` then silently accepts. Here an invalid index of that name is dropped
    (concurrently) and rebuilt; a valid one with another definition is an error; sessions idle
    in a transaction that the build would wait for make it fail at once, naming them.
    Call it outside ``autocommit_block()``: it opens its own. ``options`` go to
    ``op.create_index`` as they are (``postgresql_using="gin"``, ``postgresql_include=[...]``).
    """
    settings = migration_settings()
    context = op.get_context()
    with committing(f"create_index_concurrently({name})"):
        if context.as_sql:
            _create_index(name, table, columns, unique=unique, where=where, options=options)
            return
        connection = op.get_bind()
        version = connection.dialect.server_version_info or ()
        refuse_broken_concurrent_builds(tuple(part for part in version if isinstance(part, int)))
        existing = _existing_index(connection, name)
        if existing is not None and existing.valid:
            wanted = f"({', '.join(map(str, columns))})"
            if existing.is_unique != unique or wanted not in existing.definition:
                msg = (
                    f"index {name} exists with another definition: {existing.definition};"
                    f" drop or rename it before creating {'unique ' if unique else ''}{name}"
                    f" on {table} {wanted}"
                )
                raise MigrationSafetyError(msg)
            log.info("index %s already exists and is valid: nothing to do", name)
            return
        if blockers := _sessions_that_would_block_index_build(connection, table):
            msg = (
                f"not building {name}: CREATE INDEX CONCURRENTLY would wait for sessions idle in"
                f" a transaction: {'; '.join(blockers)}. End them, then re-run the migration."
            )
            raise MigrationSafetyError(msg)

        def build() -> None:
            if _existing_index(connection, name) is not None:  # invalid: see above
                log.warning("index %s is INVALID (a failed earlier build): rebuilding it", name)
                op.drop_index(name, table_name=table, postgresql_concurrently=True)
            _create_index(name, table, columns, unique=unique, where=where, options=options)

        with (
            timeouts(statement_timeout=settings.index_build_timeout),
            build_workers(connection, settings.index_build_workers, name),
        ):
            try:
                with_lock_retry(build, table=table)
            except DBAPIError as exc:
                msg = (
                    f"building {name} concurrently failed; the INVALID index it left is rebuilt"
                    f" when the migration runs again: {exc.orig}"
                )
                raise MigrationSafetyError(msg) from exc


def drop_index_concurrently(name: str, table: str) -> None:
    """Drop an index without blocking the table's readers and writers."""
    with committing(f"drop_index_concurrently({name})"):
        op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)


# --- constraints -------------------------------------------------------------------------------


WHOLE_TABLE_DML = "whole-table-dml"
"""The toolkit's lint rule for an UPDATE/DELETE without a key range (migration_toolkit/lint.py)."""
TOOLKIT_RULES = frozenset(
    {
        WHOLE_TABLE_DML,
        "naming-convention",
        "dml-after-ddl",
        "dynamic-sql",
        "vacuum-full",
        "cluster",
        "lock-table",
        "truncate",
        "json-column",
        "exclusion-constraint",
        "rename-enum-value",
        "rename-schema",
        "table-rewrite",
        "value-to-write",
        "cannot-render",
    }
)
"""The rules ``make lint`` adds to squawk's (migration_toolkit/lint.py)."""


def lint_waiver(rule: str) -> str:
    """The comment that waives ``rule`` for the next statement of the offline SQL."""
    # squawk reports a waiver of a rule it does not know: ours have a comment of their own.
    return f"-- {'lint' if rule in TOOLKIT_RULES else 'squawk'}-ignore {rule}"


def acknowledge_lint(rule: str, *, because: str) -> None:
    """Waive one lint rule for the next statement, saying why, in the offline SQL it lints.

    Use it where a flagged operation is the safe step of a known procedure (the contract step
    of a column removal, say), never to silence a finding nobody understood. ``rule`` is a
    squawk rule or one of the toolkit's (``whole-table-dml`` for a set-based UPDATE on a table
    known to be small, ``dynamic-sql`` for a ``DO`` block someone read).
    """
    context = op.get_context()
    if context.as_sql and context.impl.output_buffer is not None:
        # Straight into the script: squawk wants the comment on the line above the statement,
        # and static_output() would leave a blank line in between.
        context.impl.output_buffer.write(f"-- {because}\n{lint_waiver(rule)}\n")


def literal_sql(statement: str) -> sa.TextClause:
    """``statement`` as is: its colons (``:=``, ``::``, ``'a:b'``) are not bind parameters."""
    return sa.text(statement.replace(":", "\\:"))


def compiled_sql(statement: sa.ClauseElement) -> str:
    """``statement`` as SQL text for this migration's dialect, values inlined (for a trigger
    body, a ``DO`` block, or a job stored to run later)."""
    dialect = op.get_context().dialect
    return str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def _quote(name: str) -> str:
    return op.get_context().dialect.identifier_preparer.quote(name)


def _validate(table: str, constraint: str) -> None:
    # VALIDATE takes a SHARE UPDATE EXCLUSIVE lock: reads and writes go on during the scan.
    op.execute(f"ALTER TABLE {_quote(table)} VALIDATE CONSTRAINT {_quote(constraint)}")


def _catalog_says(query: str, **params: str) -> bool:
    """Ask the catalogs a yes/no question; offline there is nobody to ask: no, emit everything."""
    if op.get_context().as_sql:
        return False
    return bool(op.get_bind().execute(sa.text(query), params).scalar())


def _constraint_exists(table: str, name: str) -> bool:
    return _catalog_says(
        "SELECT EXISTS (SELECT 1 FROM pg_constraint"
        " WHERE conrelid = to_regclass(:table) AND conname = :name)",
        table=table,
        name=name,
    )


def _is_not_null(table: str, column: str) -> bool:
    return _catalog_says(
        "SELECT attnotnull FROM pg_attribute"
        " WHERE attrelid = to_regclass(:table) AND attname = :column",
        table=table,
        column=column,
    )


def _primary_key(table: str) -> list[str]:
    return list(
        op.get_bind()
        .execute(
            sa.text(
                "SELECT a.attname FROM pg_index AS i JOIN pg_attribute AS a"
                " ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
                " WHERE i.indrelid = to_regclass(:table) AND i.indisprimary"
                " ORDER BY array_position(i.indkey::int2[], a.attnum)"
            ),
            {"table": table},
        )
        .scalars()
    )


def _violations(table: str, condition: str) -> tuple[int, str]:
    """How many rows of ``table`` make ``condition`` false, and the key of one of them."""
    key = _primary_key(table)
    rows = sa.table(table, *(sa.column(name) for name in key))
    breaking = literal_sql(f"NOT ({condition})")
    connection = op.get_bind()
    count = connection.execute(sa.select(sa.func.count()).select_from(rows).where(breaking))
    total = count.scalar_one()
    if not key:
        return total, "no primary key to show"
    example = connection.execute(sa.select(*rows.c).where(breaking).limit(1)).first()
    if example is None:
        return total, "none left now"
    shown = ", ".join(f"{name}={value!r}" for name, value in zip(key, example, strict=True))
    return total, shown


def _is_check_violation(exc: DBAPIError) -> bool:
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) == CHECK_VIOLATION or "violated by some row" in str(exc)


def _add_validated_check(name: str, table: str, condition: str, *, broken: str, fix: str) -> None:
    """CHECK added NOT VALID, then validated; withdrawn again if a row breaks it.

    Call inside ``autocommit_block()``: each step commits on its own. A NOT VALID CHECK left in
    place after a failed VALIDATE would keep refusing the writes that broke it (an old release
    inserting without the column, say), so it is dropped before the error is raised.
    """
    if not _constraint_exists(table, name):
        with_lock_retry(
            lambda: op.create_check_constraint(
                op.f(name), table, condition, postgresql_not_valid=True
            ),
            table=table,
        )
    try:
        _validate(table, name)
    except DBAPIError as exc:
        if not _is_check_violation(exc):
            raise
        with_lock_retry(
            lambda: op.drop_constraint(op.f(name), table, type_="check", if_exists=True),
            table=table,
        )
        count, example = _violations(table, condition)
        msg = (
            f"{count} row(s) of {table} {broken} (for example the row with {example}), so"
            f" {name} cannot be validated. It was removed again: writes go on as before."
            f" {fix} Then run the migration again."
        )
        raise WithdrawnStepError(msg) from exc


def add_check_constraint(name: str, table: str, condition: str) -> None:
    """Add ``CHECK (condition)`` without blocking traffic while every row is checked.

    Problem: ADD CONSTRAINT ... CHECK scans the whole table under ACCESS EXCLUSIVE: no reads, no
    writes. Added NOT VALID it is instant and applies to new and updated rows at once; VALIDATE
    then scans the old rows under a lock that lets traffic through. If some row breaks it, the
    constraint is removed again and the error says how many rows, one example key and what to
    do; run the migration again once they are fixed. ``condition`` is SQL on ``table``'s
    columns (``"status IN ('draft', 'published')"``); ``name`` should follow the naming
    convention (``ck_<table>_<what>``).
    """
    with committing(f"add_check_constraint({name})"):
        _add_validated_check(
            name,
            table,
            condition,
            broken=f"break CHECK ({condition})",
            fix="Fix those rows (backfill_in_batches), and make sure no running release still"
            " writes such values.",
        )


def add_not_null(table: str, column: str) -> None:
    """Make ``column`` NOT NULL without scanning the table under an exclusive lock.

    Problem: ``ALTER COLUMN ... SET NOT NULL`` scans the whole table while holding ACCESS
    EXCLUSIVE: no reads, no writes. Instead, each step committed on its own: a CHECK added NOT
    VALID (instant), validated (scans, but under a lock that lets traffic through), then SET
    NOT NULL, which PostgreSQL 12+ proves from the valid CHECK without scanning; the CHECK goes.
    If NULLs are left, nothing stays behind and the error says how many and where.

    Every release still serving must fill the column on insert, or its inserts fail from the
    moment the CHECK is added: give the column a constant server default, or install
    :func:`fill_on_insert` before the backfill (MIGRATIONS.md, "Add a NOT NULL column").
    """
    check = f"ck_{table}_{column}_not_null"
    with committing(f"add_not_null({table}.{column})"):
        if not _is_not_null(table, column):
            _add_validated_check(
                check,
                table,
                f"{_quote(column)} IS NOT NULL",
                broken=f"have {column} NULL",
                fix=f"Fill them (backfill_in_batches on {column} IS NULL), and make sure no"
                " running release inserts rows without it: a constant server default, or"
                " fill_on_insert installed before the backfill (MIGRATIONS.md, 'Add a NOT NULL"
                " column').",
            )
            with_lock_retry(lambda: op.alter_column(table, column, nullable=False), table=table)
        acknowledge_lint("ban-drop-constraint", because="NOT NULL now guarantees what it did")
        with_lock_retry(
            lambda: op.drop_constraint(op.f(check), table, type_="check", if_exists=True),
            table=table,
        )


def add_foreign_key(
    name: str,
    source_table: str,
    referent_table: str,
    local_columns: Sequence[str],
    remote_columns: Sequence[str],
    *,
    ondelete: str | None = None,
    **options: Any,
) -> None:
    """Add a foreign key without blocking both tables while every row is checked.

    Problem: ADD FOREIGN KEY checks every existing row while holding locks that block writes to
    both tables. Added NOT VALID it is instant and applies to new rows at once; VALIDATE then
    checks the old rows in its own transaction under a lock that lets traffic through. Index
    the referencing columns first (``create_index_concurrently``): PostgreSQL does not, and
    every delete in ``referent_table`` would scan ``source_table``. ``options`` (``onupdate``,
    ``deferrable``, ``initially``, ``match``) go to ``op.create_foreign_key`` as they are.
    """
    with committing(f"add_foreign_key({name})"):
        if _constraint_exists(source_table, name):
            log.info("foreign key %s exists: validating it (a no-op when it is valid)", name)
        else:
            with_lock_retry(
                lambda: op.create_foreign_key(
                    name,
                    source_table,
                    referent_table,
                    list(local_columns),
                    list(remote_columns),
                    ondelete=ondelete,
                    postgresql_not_valid=True,
                    **options,
                ),
                table=source_table,
            )
        _validate(source_table, name)


def add_unique_constraint(name: str, table: str, columns: Sequence[str]) -> None:
    """Add a UNIQUE constraint whose index is built concurrently.

    Problem: ADD CONSTRAINT ... UNIQUE builds its index while blocking writes. Build the index
    CONCURRENTLY first, then attach it: ``ADD CONSTRAINT ... UNIQUE USING INDEX`` is instant.
    """
    create_index_concurrently(name, table, columns, unique=True)
    _attach_index(name, table, "UNIQUE")


def _attach_index(name: str, table: str, kind: str) -> None:
    """``ADD CONSTRAINT name <kind> USING INDEX name``: instant, the index is built already."""
    if _constraint_exists(table, name):
        return
    with committing(f"{kind} {name} from its index"):
        statement = (
            f"ALTER TABLE {_quote(table)} ADD CONSTRAINT {_quote(name)}"
            f" {kind} USING INDEX {_quote(name)}"
        )
        with_lock_retry(lambda: op.execute(statement), table=table)


def add_primary_key(name: str, table: str, columns: Sequence[str]) -> None:
    """Add a primary key to a table with rows without blocking it while the key is checked.

    Problem: ADD PRIMARY KEY builds its unique index, and sets NOT NULL on its columns (a full
    scan), under ACCESS EXCLUSIVE: no reads, no writes. Instead, each step on its own: NOT
    NULL through a validated CHECK (:func:`add_not_null`), the unique index built
    concurrently, then ``ADD CONSTRAINT ... PRIMARY KEY USING INDEX``, which only attaches it.
    """
    for column in columns:
        add_not_null(table, column)
    create_index_concurrently(name, table, columns, unique=True)
    _attach_index(name, table, "PRIMARY KEY")


def reindex_concurrently(name: str, table: str) -> None:
    """Rebuild index ``name`` (of ``table``) without blocking writes: REINDEX CONCURRENTLY.

    Problem: a plain REINDEX blocks writes to the table, and reads that use the index, for
    the whole build. CONCURRENTLY builds a new index beside it and swaps them. A build that
    failed leaves an INVALID ``<name>_ccnew`` index behind, which is dropped (concurrently)
    before the next attempt.
    """
    settings = migration_settings()
    context = op.get_context()
    with committing(f"reindex_concurrently({name})"):
        if not context.as_sql:
            connection = op.get_bind()
            version = connection.dialect.server_version_info or ()
            refuse_broken_concurrent_builds(tuple(p for p in version if isinstance(p, int)))
            leftovers = connection.execute(
                sa.text(
                    "SELECT c.relname FROM pg_index AS i JOIN pg_class AS c"
                    " ON c.oid = i.indexrelid WHERE i.indrelid = to_regclass(:table)"
                    " AND NOT i.indisvalid AND starts_with(c.relname, :prefix)"
                ),
                {"table": table, "prefix": f"{name}_ccnew"},
            ).scalars()
            for leftover in list(leftovers):
                log.warning("dropping %s, left INVALID by a failed REINDEX CONCURRENTLY", leftover)
                op.drop_index(leftover, table_name=table, postgresql_concurrently=True)
        reindex = f"REINDEX INDEX CONCURRENTLY {_quote(name)}"
        with timeouts(statement_timeout=settings.index_build_timeout):
            with_lock_retry(lambda: op.execute(reindex), table=table)


# --- renames of tables and enum values -----------------------------------------------------


def rename_table(old: str, new: str, *, keep_old_name: bool = True) -> None:
    """Rename table ``old`` to ``new``; ``old`` stays behind as a view on it until the contract.

    Problem: ALTER TABLE ... RENAME is instant, but every query of the release still serving
    names ``old`` and fails from that moment. In the same transaction, a view named ``old``
    (``SELECT *`` of the new table) takes its place: PostgreSQL updates a simple view's table
    through it, so the old release's reads, inserts (with the table's defaults), updates and
    deletes go on. Drop the view with :func:`drop_old_table_name` a deploy later, once no
    running release names ``old``. ``keep_old_name=False`` renames only (a downgrade's
    rename back, once it dropped the view).
    """
    quoted_old, quoted_new = _quote(old), _quote(new)

    def rename() -> None:
        because = (
            f"the view {old} keeps the old name working"
            if keep_old_name
            else f"back to the name {new} the release before this revision uses"
        )
        acknowledge_lint("renaming-table", because=because)
        op.rename_table(old, new)
        if keep_old_name:
            view = f"CREATE VIEW {quoted_old} AS SELECT * FROM {quoted_new}"  # noqa: S608 (quoted)
            op.execute(view)

    with_lock_retry(rename, table=old)


def drop_old_table_name(old: str) -> None:
    """Drop the view :func:`rename_table` left under the old name: the contract step, for a
    deploy whose release still serving no longer names ``old``."""
    acknowledge_lint("ban-drop-view", because=f"the contract of a table rename: {old} unused")
    op.execute(f"DROP VIEW IF EXISTS {_quote(old)}")


def add_enum_value(
    enum: str, value: str, *, after: str | None = None, before: str | None = None
) -> None:
    """Add ``value`` to the enum type ``enum``, committed on its own so it can be used at once.

    ``ALTER TYPE ... ADD VALUE`` changes the catalog only; inside a transaction the new value
    cannot be used until it commits, so it runs in an autocommit block, ``IF NOT EXISTS`` to
    run again safely. An enum value cannot be removed or safely renamed: to rename one, add
    the new value, move the rows in batches (backfill_in_batches), and stop writing the old.
    """
    position = f" AFTER {compiled_sql(sa.literal(after))}" if after else ""
    position = f" BEFORE {compiled_sql(sa.literal(before))}" if before else position
    statement = (
        f"ALTER TYPE {_quote(enum)} ADD VALUE IF NOT EXISTS"
        f" {compiled_sql(sa.literal(value))}{position}"
    )
    with committing(f"add_enum_value({enum}, {value})"):
        op.execute(literal_sql(statement))


# --- triggers: renames (expand and contract) and fills for the release still serving ---------


def _replace_trigger(function: str, table: str, *, timing: str, when: str = "") -> None:
    """(Re)create trigger ``function`` on ``table``, calling the function of the same name."""
    quoted_function, quoted_table = _quote(function), _quote(table)
    condition = f" WHEN ({when})" if when else ""
    create = (
        f"CREATE TRIGGER {quoted_function} {timing} ON {quoted_table}"
        f" FOR EACH ROW{condition} EXECUTE FUNCTION {quoted_function}()"
    )

    def replace() -> None:  # PostgreSQL 13 has no CREATE OR REPLACE TRIGGER
        op.execute(f"DROP TRIGGER IF EXISTS {quoted_function} ON {quoted_table}")
        op.execute(literal_sql(create))

    with_lock_retry(replace, table=table)


def _remove_trigger(function: str, table: str) -> None:
    """Drop the trigger and its function, as installed by :func:`_replace_trigger`."""
    quoted_function, quoted_table = _quote(function), _quote(table)
    drop_trigger = f"DROP TRIGGER IF EXISTS {quoted_function} ON {quoted_table}"
    with_lock_retry(lambda: op.execute(drop_trigger), table=table)
    acknowledge_lint("ban-drop-function", because="only the trigger dropped above called it")
    op.execute(f"DROP FUNCTION IF EXISTS {quoted_function}()")


def _create_trigger_function(function: str, body: str) -> None:
    op.execute(
        literal_sql(
            f"CREATE OR REPLACE FUNCTION {_quote(function)}() RETURNS trigger"
            f" LANGUAGE plpgsql AS $body$\nBEGIN\n{body}    RETURN NEW;\nEND\n$body$"
        )
    )


def keep_columns_in_step(table: str, old: str, new: str) -> None:
    """Install a trigger that copies ``old`` to ``new`` and back, on insert and on update.

    The expand step of a rename: while the previous release (writing ``old``) and the next one
    (writing ``new``) serve traffic side by side, each sees the other's writes.
    """
    o, n = _quote(old), _quote(new)
    function = f"{table}_sync_{old}_{new}"
    _create_trigger_function(
        function,
        "    IF TG_OP = 'INSERT' THEN\n"
        f"        NEW.{n} := coalesce(NEW.{n}, NEW.{o});\n"
        f"        NEW.{o} := coalesce(NEW.{o}, NEW.{n});\n"
        f"    ELSIF NEW.{o} IS DISTINCT FROM OLD.{o} THEN\n"
        f"        NEW.{n} := NEW.{o};\n"
        f"    ELSIF NEW.{n} IS DISTINCT FROM OLD.{n} THEN\n"
        f"        NEW.{o} := NEW.{n};\n"
        "    END IF;\n",
    )
    _replace_trigger(function, table, timing="BEFORE INSERT OR UPDATE")


def stop_keeping_columns_in_step(table: str, old: str, new: str) -> None:
    """Remove what :func:`keep_columns_in_step` installed (the contract step's first act)."""
    _remove_trigger(f"{table}_sync_{old}_{new}", table)


class UnwrittenValueError(MigrationSafetyError):
    """A revision still holds :func:`value_to_write`: its author has a value to write."""


class UnwrittenValue(sa.ColumnElement[Any]):
    """What :func:`value_to_write` returns: SQL that refuses to compile, naming what is missing."""

    inherit_cache = True
    _traverse_internals: list[tuple[str, Any]] = []  # noqa: RUF012 (SQLAlchemy's own shape)

    def __init__(self, label: str) -> None:
        self.missing = label


@compiles(UnwrittenValue)
def _refuse_to_compile(element: UnwrittenValue, compiler: Any, **kw: Any) -> str:
    msg = (
        f"{element.missing}: the value to fill is not written yet. Replace"
        f" value_to_write({element.missing!r}) in the revision with SQL on the row's columns"
        " (e.g. sa.func.lower(table.c['email'])); a constant belongs in the model's"
        " server_default instead (MIGRATIONS.md, 'Add a NOT NULL column')"
    )
    raise UnwrittenValueError(msg)


def value_to_write(label: str) -> sa.ColumnElement[Any]:
    """A placeholder for the value ``make revision`` cannot know: the revision that holds it
    fails (online, offline and in ``make lint``) until its author writes the value instead."""
    return UnwrittenValue(label)


def fill_on_insert(table: sa.TableClause, column: str, value: sa.ColumnElement[Any]) -> None:
    """Install a trigger that sets ``column`` to ``value`` on rows inserted without it.

    Problem: the release still serving while a deploy migrates (and until the new one has
    replaced it) inserts rows without the new column; once the column is NOT NULL, or has its
    NOT VALID CHECK, every such insert fails. A constant needs no trigger (a server default
    does it, catalog-only); a value computed from the row does. ``value`` is written on
    ``table``'s columns, the very expression the backfill uses; the trigger computes it from
    the new row. Install it before the backfill starts (in the revision that adds the column,
    or the backfill's own), so that the backfill leaves no NULL behind; remove it with
    :func:`stop_filling_on_insert` in a later deploy, once every running release writes the
    column itself.
    """
    computed = compiled_sql(ClauseAdapter(table.alias("new")).traverse(value))
    function = f"{table.name}_fill_{column}"
    _create_trigger_function(function, f"    NEW.{_quote(column)} := {computed};\n")
    _replace_trigger(
        function, table.name, timing="BEFORE INSERT", when=f"NEW.{_quote(column)} IS NULL"
    )


def stop_filling_on_insert(table: str, column: str) -> None:
    """Remove what :func:`fill_on_insert` installed (once every release writes ``column``)."""
    _remove_trigger(f"{table}_fill_{column}", table)
