"""``make trace``: what each revision locks, for how long, and which tables it rewrites.

    python -m <package>.migration_toolkit trace [--rev REV] [--rows N] [--max-lock-ms MS]

The revisions not yet applied to the database (or ``--rev`` alone) run on a scratch copy of
its schema: a database of their own on the same server, migrated to where the database is,
with rows in every table (``--rows`` per table, generated from each column's type and foreign
keys, before each revision, in the tables that have none). While a revision runs:

- after each statement, its own session's ``pg_locks`` rows say what it has taken so far (a
  lock taken inside a transaction is held until the transaction ends), and ``pg_class``'s
  relfilenodes say whether it rewrote a table;
- a second session samples ``pg_locks`` for the migration's backend every few milliseconds,
  which also sees the locks of statements that run outside a transaction (``CONCURRENTLY``,
  the backfill's batches), taken and released within the statement.

For each statement that locked a table: the table, the strongest mode it took there, how long
that lock was held (from the statement's start to the end of its transaction, or of the last
sample that saw it), whether the table was rewritten, and the rows the table had. Repeated
statements (a backfill's batches) are one line, with their count and the longest hold. The
command exits 1 when a statement holds a lock that blocks writes (SHARE or stronger) on a
table with rows for longer than ``--max-lock-ms`` (trace_max_lock_ms, 1000 by default), or
rewrites a table with rows. The scratch database is dropped afterwards.
"""

import argparse
import asyncio
import logging
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from pglast import fingerprint
from pydantic import ValidationError
from sqlalchemy import URL, Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from alembic_pgsafe.backfill_jobs import JOBS_TABLE, run_jobs
from alembic_pgsafe.connect import (
    create_engine,
    database_target,
    describe_failure,
    failure_line,
    where,
)
from alembic_pgsafe.helpers import MigrationSafetyError, failing_revision
from alembic_pgsafe.settings import PROJECT_ROOT, MigrationSettings, get_settings

__all__ = ["Trace", "main", "trace_revisions"]

log = logging.getLogger("alembic.trace")

WRITE_BLOCKING = ("ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock")
"""Modes that block INSERT, UPDATE and DELETE (they conflict with ROW EXCLUSIVE)."""
STRENGTH = [
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
]
SAMPLE_SECONDS = 0.0
"""Between two samples: none, so that a lock held for a millisecond is seen."""
DEFAULT_ROWS = 10_000
DEFAULT_MAX_LOCK_MS = 1000.0
NOT_TRACED = {"alembic_version", JOBS_TABLE}
OUTSIDE_TRANSACTIONS = re.compile(
    r"\b(CONCURRENTLY|VACUUM|DATABASE)\b|^\s*(DO|BEGIN|COMMIT)\b", re.I
)
"""Statements that cannot run in a transaction block (or end one)."""

OWN_LOCKS = sa.text(
    "SELECT c.relname, l.mode FROM pg_locks AS l JOIN pg_class AS c ON c.oid = l.relation"
    " WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted"
    " AND c.relkind IN ('r', 'p') AND c.relnamespace = 'public'::regnamespace"
)
STORAGE = sa.text(
    "SELECT relname, relfilenode FROM pg_class"
    " WHERE relkind IN ('r', 'p') AND relnamespace = 'public'::regnamespace"
)
SAMPLE = (
    "SELECT c.relname, l.mode FROM pg_locks AS l JOIN pg_class AS c ON c.oid = l.relation"
    " WHERE l.pid = $1 AND l.locktype = 'relation' AND l.granted"
    " AND c.relkind IN ('r', 'p') AND c.relnamespace = 'public'::regnamespace"
)


def mode_name(mode: str) -> str:
    """``AccessExclusiveLock`` as PostgreSQL's documentation writes it: ACCESS EXCLUSIVE."""
    words, word = [], ""
    for char in mode.removesuffix("Lock"):
        if char.isupper() and word:
            words.append(word)
            word = ""
        word += char
    return " ".join([*words, word]).upper()


# --- what one revision did -------------------------------------------------------------------


@dataclass
class Statement:
    text: str
    started: float
    ended: float = 0.0
    held_after: set[tuple[str, str]] = field(default_factory=set)
    """(table, mode) its own session held once it ended: locks of a transaction."""
    rewritten: set[str] = field(default_factory=set)


@dataclass
class Episode:
    """A (table, mode) lock the sampler saw, from its first to its last sample."""

    table: str
    mode: str
    first: float
    last: float


@dataclass
class Recorder:
    """Statements of the migration's session, its commits, and the sampler's episodes."""

    statements: list[Statement] = field(default_factory=list)
    transaction_ends: list[float] = field(default_factory=list)
    episodes: list[Episode] = field(default_factory=list)
    pid: int | None = None
    _storage: dict[str, int] = field(default_factory=dict)

    def listen(self, engine: AsyncEngine) -> None:
        sync = engine.sync_engine
        event.listen(sync, "connect", self._connected)
        event.listen(sync, "before_cursor_execute", self._before)
        event.listen(sync, "after_cursor_execute", self._after)
        event.listen(sync, "handle_error", self._failed)
        for name in ("commit", "rollback"):
            event.listen(sync, name, self._transaction_ended)

    def _connected(self, dbapi_connection: Any, _: Any) -> None:
        self.pid = dbapi_connection.driver_connection.get_server_pid()

    @staticmethod
    def _raw(conn: Connection, statement: str) -> None:
        """``statement`` on the migration's session, past SQLAlchemy (and these events)."""
        conn.connection.dbapi_connection.cursor().execute(statement)  # type: ignore[union-attr]

    def _before(self, conn: Connection, cursor: Any, statement: str, *_: Any) -> None:
        if conn.info.get("tracing"):
            return
        self.statements.append(Statement(statement, time.monotonic()))
        autocommit = conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
        # A statement of its own transaction (autocommit) releases its locks before anyone
        # can look: it runs in an explicit one instead, read before it commits. Not those that
        # cannot run in a transaction block: the sampler sees theirs.
        if autocommit and not OUTSIDE_TRANSACTIONS.search(statement):
            self._raw(conn, "BEGIN")
            conn.info["wrapped"] = True

    def _failed(self, context: Any) -> None:
        conn = context.connection
        if conn is not None and conn.info.pop("wrapped", False):
            self._raw(conn, "ROLLBACK")

    def _after(self, conn: Connection, cursor: Any, statement: str, *_: Any) -> None:
        if conn.info.get("tracing") or not self.statements:
            return
        traced = self.statements[-1]
        traced.ended = time.monotonic()
        conn.info["tracing"] = True
        try:
            # Asked in the migration's own session: it sees its uncommitted locks and files.
            traced.held_after = {(row[0], row[1]) for row in conn.execute(OWN_LOCKS)}
            storage = {row[0]: row[1] for row in conn.execute(STORAGE)}
        finally:
            conn.info["tracing"] = False
        if conn.info.pop("wrapped", False):
            self._raw(conn, "COMMIT")
            self.transaction_ends.append(time.monotonic())
        traced.rewritten = {
            table
            for table, node in storage.items()
            if table in self._storage and self._storage[table] != node
        }
        self._storage = storage

    def _transaction_ended(self, conn: Connection) -> None:
        self.transaction_ends.append(time.monotonic())

    def start_storage(self, storage: dict[str, int]) -> None:
        self._storage = dict(storage)


class Sampler(threading.Thread):
    """Samples pg_locks for the migration's backend from a session of its own."""

    def __init__(self, url: URL, recorder: Recorder) -> None:
        super().__init__(daemon=True)
        self.url, self.recorder = url, recorder
        self.stop = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        asyncio.run(self._sample())

    async def _sample(self) -> None:
        connection = await asyncpg.connect(**database_target(self.url).asyncpg_arguments())
        try:
            query = await connection.prepare(SAMPLE)
            open_: dict[tuple[str, str], Episode] = {}
            self.ready.set()
            while not self.stop.is_set():
                pid = self.recorder.pid
                rows = await query.fetch(pid) if pid is not None else []
                now = time.monotonic()
                seen = {(row[0], row[1]) for row in rows}
                for key in seen:
                    episode = open_.setdefault(key, Episode(key[0], key[1], now, now))
                    episode.last = now
                for key in set(open_) - seen:
                    self.recorder.episodes.append(open_.pop(key))
                await asyncio.sleep(SAMPLE_SECONDS)
            self.recorder.episodes.extend(open_.values())
        finally:
            await connection.close()


@dataclass(frozen=True)
class Line:
    """One line of a revision's trace."""

    statement: str
    table: str
    mode: str
    held_ms: float
    rewrite: bool
    rows: int
    times: int = 1
    shape: str = ""
    """The statement's fingerprint: the same for each batch of a backfill."""

    @property
    def blocks_writes(self) -> bool:
        return self.mode in WRITE_BLOCKING


def _strongest(modes: Sequence[str]) -> str:
    return max(modes, key=STRENGTH.index)


def _end_of_transaction(recorder: Recorder, after: float) -> float:
    return next((t for t in recorder.transaction_ends if t >= after), after)


def _shape(sql: str) -> str:
    try:
        return str(fingerprint(sql))
    except Exception:  # a statement pglast cannot parse is a shape of its own
        return sql


def _lines(recorder: Recorder, rows: dict[str, int]) -> list[Line]:
    """Each statement's locks: (table, strongest mode, held, rewrite, rows)."""
    statements = recorder.statements
    found: list[Line] = []
    before: set[tuple[str, str]] = set()
    previous_end = 0.0
    for number, statement in enumerate(statements):
        if any(previous_end <= end <= statement.started for end in recorder.transaction_ends):
            before = set()  # its transaction ended: those locks were released
        previous_end = statement.ended
        following = statements[number + 1].started if number + 1 < len(statements) else 1e30
        held: dict[str, list[tuple[str, float]]] = {}
        # In a transaction: what it added to its session's locks, held to the transaction's end.
        for table, mode in statement.held_after - before:
            until = _end_of_transaction(recorder, statement.ended)
            held.setdefault(table, []).append((mode, until))
        # Outside one (CONCURRENTLY): what the sampler saw while it ran, but not the locks of a
        # transaction, which the session's own snapshots tell exactly.
        in_transaction = before | statement.held_after
        for episode in recorder.episodes:
            if (episode.table, episode.mode) in in_transaction:
                continue
            if statement.started <= episode.first < following:
                held.setdefault(episode.table, []).append((episode.mode, episode.last))
        before = statement.held_after
        for table in sorted(held.keys() | statement.rewritten):
            if table in NOT_TRACED:
                continue
            modes = held.get(table, [("AccessExclusiveLock", statement.ended)])
            mode = _strongest([m for m, _ in modes])
            if mode == "AccessShareLock" and table not in statement.rewritten:
                continue  # a read: it blocks only what would rewrite or drop the table
            until = max(max(t for m, t in modes if m == mode), statement.ended)
            found.append(
                Line(
                    _shown(statement.text),
                    table,
                    mode,
                    (until - statement.started) * 1000,
                    table in statement.rewritten,
                    rows.get(table, 0),
                    shape=_shape(statement.text),
                )
            )
    return _fold_repeats(found)


def _shown(sql: str) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= 90 else text[:87] + "..."


def _key(line: Line) -> tuple[str, str, str, bool]:
    return (line.shape, line.table, line.mode, line.rewrite)


def _fold_repeats(lines: list[Line]) -> list[Line]:
    """A statement repeated on the same table (a backfill's batches, with its queries between
    them): one line, with the longest hold and how many times it ran."""
    folded: list[Line] = []
    for line in lines:
        recent = [
            n for n in range(max(0, len(folded) - 4), len(folded)) if _key(folded[n]) == _key(line)
        ]
        if recent:
            last = folded[recent[-1]]
            folded[recent[-1]] = Line(
                last.statement,
                last.table,
                last.mode,
                max(last.held_ms, line.held_ms),
                last.rewrite,
                last.rows,
                last.times + 1,
                last.shape,
            )
        else:
            folded.append(line)
    return folded


# --- rows in every table -----------------------------------------------------------------------


def _value(column: sa.Column[Any], rows: int) -> str | None:
    """SQL for ``column``'s value in generated row ``g``, from its type; None: not known."""
    kind = column.type
    if isinstance(kind, sa.Enum) and kind.name:
        labels = f"enum_range(NULL::{kind.name})"
        return f"({labels})[1 + g % cardinality({labels})]"
    if isinstance(kind, sa.Boolean):
        return "g % 2 = 0"
    if isinstance(kind, sa.SmallInteger):
        return "g % 32000"
    if isinstance(kind, sa.Integer | sa.Numeric | sa.Float):
        return "g"
    if isinstance(kind, sa.String):  # varchar, text
        length = getattr(kind, "length", None)
        return f"left('v' || g, {length})" if length else "'v' || g"
    if isinstance(kind, sa.DateTime):
        return "now() - g * interval '1 second'"
    if isinstance(kind, sa.Date):
        return "current_date - g % 3650"
    if isinstance(kind, sa.Uuid):
        return "md5(g::text)::uuid"
    if isinstance(kind, sa.JSON):
        return "'{}'"
    return None


NULL_EVERY = 3
"""Generated rows hold NULL in nullable columns every this many rows."""
GENERATED_ROWS_NOTE = (
    "Rows were generated from the columns' types (NULL in every third row of a nullable"
    " column): a CHECK, UNIQUE or foreign key that real values break can pass here, and a"
    " backfill's duration is not the real table's. Trace a copy of production's data for those."
)


def _fill(connection: Connection, table: sa.Table, rows: int) -> str | None:
    """Insert ``rows`` generated rows into ``table``; a reason when it cannot."""
    series = sa.func.generate_series(1, rows).table_valued("g").render_derived(name="series")
    sources: sa.FromClause = series
    names: list[str] = []
    values: list[sa.ColumnElement[Any]] = []
    for column in table.columns:
        if column.identity is not None or column.computed is not None:
            continue
        if column.server_default is not None and not column.foreign_keys:
            continue
        foreign = next(iter(column.foreign_keys), None)
        value: str | None
        if foreign is not None and foreign.column.table is not table:
            keys = sa.select(sa.func.array_agg(foreign.column).label("keys")).subquery(
                f"keys_{len(names)}"
            )
            sources = sources.join(keys, sa.true())  # one row: the referenced keys, as an array
            value = f"{keys.name}.keys[1 + g % cardinality({keys.name}.keys)]"
        else:
            value = None if foreign is not None else _value(column, rows)
        if value is None and not column.nullable:
            return f"no value for {column.name} ({column.type})"
        if value is not None and column.nullable and foreign is None:
            # NULL in every third row, as real tables hold them: a NOT NULL added without
            # filling them fails here too, not first in production.
            value = f"CASE WHEN g % {NULL_EVERY} = 0 THEN NULL ELSE {value} END"
        if value is not None:
            names.append(column.name)
            values.append(sa.literal_column(value))
    if not names:
        return None
    generated = sa.select(*values).select_from(sources)
    try:
        with connection.begin_nested():
            connection.execute(sa.insert(table).from_select(names, generated))
    except sa.exc.DBAPIError as exc:
        return str(getattr(exc, "orig", exc)).splitlines()[0]
    return None


def fill_empty_tables(connection: Connection, rows: int) -> dict[str, int]:
    """Give every table without rows ``rows`` generated ones (parents first); the row counts."""
    metadata = sa.MetaData()
    metadata.reflect(connection)
    counts = {}
    for table in metadata.sorted_tables:
        if table.name in NOT_TRACED:
            continue
        count = sa.select(sa.func.count()).select_from(table)
        empty = connection.execute(count).scalar_one() == 0
        if empty and (reason := _fill(connection, table, rows)) is not None:
            log.warning("%s left empty: %s", table.name, reason)
        counts[table.name] = connection.execute(count).scalar_one()
    connection.commit()
    return counts


# --- running it ------------------------------------------------------------------------------


@dataclass
class Trace:
    """The trace of one revision."""

    revision: str
    file: str
    lines: list[Line]
    failures: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        out = [
            f"### {self.file}",
            "",
            "| statement | relation | lock | held ms | rewrite | rows |",
            "| --- | --- | --- | ---: | --- | ---: |",
        ]
        for line in self.lines:
            statement = line.statement.replace("|", "\\|")
            if line.times > 1:
                statement += f" (x{line.times})"
            out.append(
                f"| `{statement}` | {line.table} | {mode_name(line.mode)} |"
                f" {line.held_ms:.0f} | {'yes' if line.rewrite else 'no'} | {line.rows} |"
            )
        if not self.lines:
            out.append("| (no lock on a table) | | | | | |")
        return "\n".join(out)


def _judge(trace: Trace, max_lock_ms: float) -> None:
    for line in trace.lines:
        if line.rows and line.rewrite:
            trace.failures.append(
                f"{trace.file}: `{line.statement}` rewrites {line.table} ({line.rows} rows)"
            )
        elif line.rows and line.blocks_writes and line.held_ms > max_lock_ms:
            trace.failures.append(
                f"{trace.file}: `{line.statement}` holds {mode_name(line.mode)} on"
                f" {line.table} ({line.rows} rows) for {line.held_ms:.0f} ms, over"
                f" {max_lock_ms:.0f} ms"
            )


def _config(alembic_ini: str, engine: AsyncEngine) -> Config:
    config = Config(alembic_ini)
    config.attributes["configure_logger"] = False
    config.attributes["connection"] = engine
    return config


def _admin(url: URL, *statements: str) -> None:
    async def run() -> None:
        engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                for statement in statements:
                    await connection.execute(sa.text(statement))
        finally:
            await engine.dispose()

    asyncio.run(run())


@contextmanager
def _on_scratch(url: URL) -> Iterator[URL]:
    name = f"trace_{uuid.uuid4().hex[:12]}"
    quoted = f'"{name}"'  # a name of our own making: letters, digits, underscore
    _admin(url, f"CREATE DATABASE {quoted}")
    try:
        yield url.set(database=name)
    finally:
        _admin(url, f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")


def _sync(url: URL, fn: Any, *args: Any, autocommit: bool = False) -> Any:
    """``fn(connection, *args)`` on a connection of its own to ``url``."""

    async def run() -> Any:
        options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
        engine = create_engine(url, poolclass=NullPool, **options)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(fn, *args)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _storage(connection: Connection) -> dict[str, int]:
    return {row[0]: row[1] for row in connection.execute(STORAGE)}


def _current(connection: Connection) -> str | None:
    exists = connection.execute(sa.text("SELECT to_regclass('alembic_version')")).scalar()
    if exists is None:
        return None
    return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def trace_revisions(
    url: URL,
    alembic_ini: str,
    *,
    revision: str | None = None,
    rows: int = DEFAULT_ROWS,
    max_lock_ms: float = DEFAULT_MAX_LOCK_MS,
) -> list[Trace]:
    """Trace ``revision``, or every revision the database at ``url`` has not applied yet."""
    script = ScriptDirectory.from_config(Config(alembic_ini))
    if revision is not None:
        wanted = [script.get_revision(revision)]
        start = wanted[0].down_revision if wanted[0] is not None else None
    else:
        start = _sync(url, _current)
        wanted = list(reversed(list(script.iterate_revisions("heads", start or "base"))))
        wanted = [rev for rev in wanted if rev is not None and rev.revision != start]
    traces = []
    with _on_scratch(url) as scratch:
        if start is not None:
            engine = create_engine(scratch, poolclass=NullPool)
            command.upgrade(_config(alembic_ini, engine), str(start))
        for rev in wanted:
            if rev is None:
                continue
            traces.append(_trace_one(scratch, alembic_ini, rev.revision, str(rev.path), rows))
            _judge(traces[-1], max_lock_ms)
    return traces


def _trace_one(url: URL, alembic_ini: str, revision: str, path: str, rows: int) -> Trace:
    """Trace ``revision``; where it needs a scheduled backfill finished, run the backfills
    first (untraced: ``make backfill`` is not part of a deploy), as an operator would."""
    try:
        return _trace_attempt(url, alembic_ini, revision, path, rows)
    except MigrationSafetyError as exc:
        if "is not finished" not in str(exc):
            raise
    _sync(url, run_jobs, MigrationSettings(), autocommit=True)
    return _trace_attempt(url, alembic_ini, revision, path, rows)


def _trace_attempt(url: URL, alembic_ini: str, revision: str, path: str, rows: int) -> Trace:
    counts = _sync(url, fill_empty_tables, rows)
    recorder = Recorder()
    recorder.start_storage(_sync(url, _storage))
    engine = create_engine(url, poolclass=NullPool)
    recorder.listen(engine)
    sampler = Sampler(url, recorder)
    sampler.start()
    sampler.ready.wait(10)
    try:
        command.upgrade(_config(alembic_ini, engine), revision)
    finally:
        sampler.stop.set()
        sampler.join()
    return Trace(revision, os.path.basename(path), _lines(recorder, counts))


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="alembic-pgsafe trace",
        description="What each revision not yet applied locks, for how long, and what it"
        " rewrites, on a scratch copy of the database with rows in every table.",
    )
    parser.add_argument("--rev", help="trace this revision alone")
    parser.add_argument(
        "--rows", type=int, help=f"rows per table (setting trace_rows, default {DEFAULT_ROWS})"
    )
    parser.add_argument(
        "--max-lock-ms",
        type=float,
        help="longest a lock that blocks writes may be held on a table with rows (setting"
        f" trace_max_lock_ms, default {DEFAULT_MAX_LOCK_MS:.0f})",
    )
    parser.add_argument("--alembic-ini", default=str(PROJECT_ROOT / "alembic.ini"))
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)-5.5s [%(name)s] %(message)s")
    try:
        limits = MigrationSettings()
        url = make_url(get_settings().alembic_database_url)
    except (ValidationError, ValueError) as exc:
        print(f"trace: {exc}", file=sys.stderr)
        return 2
    rows = limits.trace_rows if arguments.rows is None else arguments.rows
    max_lock_ms = (
        limits.trace_max_lock_ms if arguments.max_lock_ms is None else arguments.max_lock_ms
    )
    try:
        traces = trace_revisions(
            url,
            arguments.alembic_ini,
            revision=arguments.rev,
            rows=rows,
            max_lock_ms=max_lock_ms,
        )
    except (CommandError, sa.exc.DBAPIError) as exc:
        if describe_failure(exc) is not None:  # the server, not a revision
            print(f"trace: {failure_line(exc, where(url))}", file=sys.stderr)
            return 1
        # A revision failed (env.py's one line names it, or its traceback does): the rows
        # were generated, but a real table can fail the same way.
        error = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
        said = str(error).strip().splitlines()[0]
        if revision := failing_revision(exc):
            said = f"{revision}: {said}"
        print(f"trace: on the generated rows, {said}", file=sys.stderr)
        return 1
    except Exception as exc:
        print(f"trace: {failure_line(exc, where(url))}", file=sys.stderr)
        return 1
    if not traces:
        print("trace: no revision to trace: the database is at head (--rev REV for one)")
        return 0
    print("\n\n".join(trace.markdown() for trace in traces))
    print(f"\n{GENERATED_ROWS_NOTE}")
    failures = [problem for trace in traces for problem in trace.failures]
    for problem in failures:
        print(f"TOO LONG: {problem}", file=sys.stderr)
    return 1 if failures else 0
