"""Backfill a column of a live table in small, resumable batches.

Problem: one ``UPDATE`` of every row holds its row locks and one transaction until it ends:
writers to those rows wait, vacuum cannot clean up behind it, replicas lag, and a failure
throws all the work away. The runner walks the table in keyset batches on its primary key,
each batch one short transaction, touching only rows still ``pending``: stopped at any point
(a crash, a deploy, ``kill -9``), it resumes where it was and nothing is done twice.
"""

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Connection

from {{ cookiecutter.project_slug }}.db.migration_helpers import (
    MigrationSafetyError,
    literal_sql,
    migration_settings,
    timeouts,
)
from {{ cookiecutter.project_slug }}.settings import MigrationSettings, size_bytes

log = logging.getLogger("alembic.backfill")

TARGET_BATCH_SECONDS = 0.05
"""What an adaptive batch aims at when a migration gives no batch size (see `make bench`)."""


def batch_end(key: sa.ColumnClause[Any], after: Any, size: int) -> sa.Select[tuple[Any]]:
    """The largest key of the ``size`` rows after key ``after`` (from the start when None)."""
    batch = sa.select(key).order_by(key).limit(size)
    if after is not None:
        batch = batch.where(key > after)
    return sa.select(sa.func.max(batch.subquery().c[0]))


def batch_update(
    table: sa.TableClause,
    key: sa.ColumnClause[Any],
    values: Mapping[str, Any],
    pending: sa.ColumnElement[bool],
    after: Any,
    until: Any,
) -> sa.Update:
    """Set ``values`` on the pending rows with keys in (``after``, ``until``]."""
    in_batch = [key <= until, pending]
    if after is not None:
        in_batch.append(key > after)
    return table.update().where(*in_batch).values(**values)


@dataclass
class Progress:
    label: str
    total: int
    done: int = 0
    batches: int = 0
    started: float = field(default_factory=time.monotonic)
    longest_batch: float = 0.0

    @property
    def rate(self) -> float:
        return self.done / max(time.monotonic() - self.started, 1e-6)

    def line(self, batch_size: int) -> str:
        remaining = max(self.total - self.done, 0)
        eta = remaining / self.rate if self.rate > 0 else float("inf")
        share = 100.0 * self.done / self.total if self.total else 100.0
        return (
            f"{self.label}: {self.done}/{self.total} rows ({share:.1f}%), {self.rate:.0f} rows/s,"
            f" ETA {eta:.1f} s, next batch {batch_size}"
        )


MEGABYTE = 1024 * 1024
WORST_REPLICA = sa.text(
    "SELECT coalesce(nullif(application_name, ''), 'walreceiver')"
    " || ' at ' || coalesce(host(client_addr), 'local socket'),"
    " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint, replay_lag::text"
    " FROM pg_stat_replication ORDER BY 2 DESC NULLS FIRST LIMIT 1"
)


class ReplicasTooFarBehind(Exception):
    """The replicas stayed behind for longer than the throttle may wait."""


@dataclass
class ReplicaThrottle:
    """Hold the next batch while the furthest streaming replica is more than ``limit`` behind.

    Problem: a backfill writes WAL as fast as the primary can (about 300 MB per million rows
    updated); a replica that replays slower falls behind, and reads from it go stale, or it is
    cut off when the primary recycles WAL it still needs. Before each batch this reads
    ``pg_stat_replication`` on the primary (bytes of WAL not yet replayed, and ``replay_lag``)
    and waits, polling, while the worst replica is above the limit. It never fails the
    backfill because of lag: when one wait lasts ``max_wait_seconds``, it stops, and the rows
    filled so far stay filled (the next run resumes with the pending ones).
    """

    limit: str
    max_wait_seconds: float
    first_poll_seconds: float = 0.05
    """The first re-check comes soon (a replica often catches up within milliseconds); each
    next one comes twice as late, up to ``max_poll_seconds``."""
    max_poll_seconds: float = 1.0
    _unknown_reported: bool = False

    @property
    def limit_bytes(self) -> int:
        return size_bytes(self.limit)

    def wait(self, connection: Connection, label: str) -> None:
        paused_at: float | None = None
        poll = self.first_poll_seconds
        while True:
            row = connection.execute(WORST_REPLICA).first()
            name, behind, replay_lag = row if row is not None else ("no replica", 0, None)
            if behind is None:
                if not self._unknown_reported:
                    self._unknown_reported = True
                    log.warning(
                        "%s: cannot read how far %s is behind (its replay position is hidden"
                        " from this role: grant pg_monitor; or it has not reported yet):"
                        " not throttled",
                        label,
                        name,
                    )
                return
            if behind <= self.limit_bytes:
                if paused_at is not None:
                    log.info(
                        "%s: going on after %.1f s: %s is %.1f MB behind, within %s",
                        label,
                        time.monotonic() - paused_at,
                        name,
                        behind / MEGABYTE,
                        self.limit,
                    )
                return
            if paused_at is None:
                paused_at = time.monotonic()
                log.warning(
                    "%s: paused: %s is %.1f MB behind (replay lag %s), above the limit of %s",
                    label,
                    name,
                    behind / MEGABYTE,
                    replay_lag,
                    self.limit,
                )
            waited = time.monotonic() - paused_at
            if waited >= self.max_wait_seconds:
                msg = (
                    f"{name} stayed more than {self.limit} behind for {waited:.0f} s (now"
                    f" {behind / MEGABYTE:.1f} MB; MIGRATION_MAX_REPLICA_LAG_WAIT is"
                    f" {self.max_wait_seconds:g} s)"
                )
                raise ReplicasTooFarBehind(msg)
            time.sleep(min(poll, self.max_wait_seconds - waited))
            poll = min(poll * 2, self.max_poll_seconds)


@dataclass
class KeysetBackfill:
    """Set ``values`` on the rows of ``table`` matching ``pending``, batch by batch.

    ``connection`` must be in autocommit mode, so that each UPDATE is a transaction of its own.
    With ``target_seconds`` the batch size adapts (within ``min_size``..``max_size``) so that a
    batch takes about that long; without it every batch has ``batch_size`` rows.
    """

    connection: Connection
    table: sa.TableClause
    key: sa.ColumnClause[Any]
    values: Mapping[str, Any]
    pending: sa.ColumnElement[bool]
    label: str = "backfill"
    batch_size: int = 1000
    target_seconds: float | None = None
    min_size: int = 100
    max_size: int = 50_000
    pause_seconds: float = 0.0
    on_batch: Callable[[Progress], None] | None = None
    """Called after each batch commits (a progress bar, a benchmark's bookkeeping)."""
    throttle: ReplicaThrottle | None = None
    """Checked before each batch: waits while the replicas are too far behind."""

    def batch_end(self, after: Any) -> Any:
        """The key of the last row of the batch after key ``after`` (None when no row is left)."""
        return self.connection.execute(batch_end(self.key, after, self.batch_size)).scalar()

    def batch_update(self, after: Any, until: Any) -> sa.Update:
        """The UPDATE of the pending rows with keys in (``after``, ``until``]."""
        return batch_update(self.table, self.key, self.values, self.pending, after, until)

    def _resize(self, seconds: float) -> None:
        if self.target_seconds is None or seconds <= 0:
            return
        factor = min(2.0, max(0.5, self.target_seconds / seconds))
        self.batch_size = min(self.max_size, max(self.min_size, int(self.batch_size * factor)))

    def run(self) -> Progress:
        count = sa.select(sa.func.count()).select_from(self.table).where(self.pending)
        progress = Progress(self.label, self.connection.execute(count).scalar_one())
        log.info("%s: %d rows to fill, batches of %d", self.label, progress.total, self.batch_size)
        after: Any = None
        while True:
            until = self.batch_end(after)
            if until is None:
                break
            if self.throttle is not None:
                try:
                    self.throttle.wait(self.connection, self.label)
                except ReplicasTooFarBehind as exc:
                    msg = (
                        f"{self.label}: stopped: {exc}. The {progress.done} rows filled so far"
                        " stay filled; run the migration again once the replica has caught up:"
                        " the backfill resumes with the rows still pending."
                    )
                    raise MigrationSafetyError(msg) from None
            started = time.monotonic()
            progress.done += self.connection.execute(self.batch_update(after, until)).rowcount
            seconds = time.monotonic() - started
            progress.batches += 1
            progress.longest_batch = max(progress.longest_batch, seconds)
            after = until
            self._resize(seconds)
            log.info("%s", progress.line(self.batch_size))
            if self.on_batch is not None:
                self.on_batch(progress)
            if self.pause_seconds:
                time.sleep(self.pause_seconds)
        return progress


OFFLINE_BATCH_SIZE = 5000
"""Rows per batch in offline SQL, where batches cannot adapt (``-x batch_size=N`` overrides)."""


def backfill_in_batches(
    table: sa.TableClause,
    *,
    key: sa.ColumnClause[Any],
    values: Mapping[str, Any],
    pending: sa.ColumnElement[bool],
    label: str,
    batch_size: int | None = None,
    pause_seconds: float = 0.0,
) -> Progress | None:
    """Run a :class:`KeysetBackfill` from a migration.

    Rows per batch: ``-x batch_size=N`` (or MIGRATION_BATCH_SIZE) for this run, else
    ``batch_size``, else a size that adapts to keep each batch near TARGET_BATCH_SECONDS. Each
    batch may run for MIGRATION_BACKFILL_BATCH_TIMEOUT. Offline (``--sql``) the same batches
    are emitted as a ``DO`` block that commits after each one (see :func:`offline_backfill`).
    """
    context = op.get_context()
    settings = migration_settings()
    size = settings.batch_size or batch_size
    if context.as_sql:
        script = offline_backfill(
            table,
            key=key,
            values=values,
            pending=pending,
            label=label,
            batch_size=size or OFFLINE_BATCH_SIZE,
            pause_seconds=pause_seconds,
        )
        with context.autocommit_block():
            # The DO block is one statement: statement_timeout would cut the whole backfill.
            op.execute(sa.text("SET statement_timeout = 0"))
            op.execute(literal_sql(script))
            reset = sa.text("SET statement_timeout = :value")
            op.execute(reset.bindparams(value=settings.statement_timeout))
        return None
    with (
        context.autocommit_block(),
        timeouts(statement_timeout=settings.backfill_batch_timeout),
    ):
        runner = KeysetBackfill(
            op.get_bind(),
            table,
            key,
            values,
            pending,
            label=label,
            batch_size=size or 1000,
            target_seconds=None if size else TARGET_BATCH_SECONDS,
            pause_seconds=pause_seconds,
            throttle=replica_throttle(settings),
        )
        return runner.run()


def replica_throttle(settings: MigrationSettings) -> ReplicaThrottle | None:
    """The throttle MIGRATION_MAX_REPLICA_LAG (``-x max_replica_lag=64MB``) asks for, if any."""
    if settings.max_replica_lag is None:
        return None
    return ReplicaThrottle(settings.max_replica_lag, settings.max_replica_lag_wait)


def offline_backfill(
    table: sa.TableClause,
    *,
    key: sa.ColumnClause[Any],
    values: Mapping[str, Any],
    pending: sa.ColumnElement[bool],
    label: str,
    batch_size: int,
    pause_seconds: float = 0.0,
) -> str:
    """The keyset backfill as one PL/pgSQL ``DO`` block that commits after every batch.

    For a DBA who runs the offline SQL with psql (autocommit, outside a transaction, as the
    script's COMMIT before it leaves it): the same batches and the same rows as the online
    runner, each batch a short transaction, resumable by running it again.
    """
    dialect = op.get_context().dialect

    def sql(statement: sa.ClauseElement) -> str:
        return str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))

    after: sa.ColumnClause[Any] = sa.literal_column("backfill_after")
    until: sa.ColumnClause[Any] = sa.literal_column("backfill_until")
    preparer = dialect.identifier_preparer
    key_type = f"{preparer.format_table(table)}.{preparer.quote(key.name)}%TYPE"
    pause = f"        PERFORM pg_sleep({pause_seconds!r});\n" if pause_seconds else ""
    progress = sql(sa.literal(f"{label}: % rows filled, up to key %"))

    def batch(first: bool) -> str:
        update = batch_update(table, key, values, pending, None if first else after, until)
        return (
            f"        {sql(update)};\n"
            "        GET DIAGNOSTICS batch_rows = ROW_COUNT;\n"
            "        filled := filled + batch_rows;\n"
            "        COMMIT;\n"
            f"        RAISE NOTICE {progress}, filled, backfill_until;\n"
        )

    return (
        "DO $backfill$\n"
        "DECLARE\n"
        f"    backfill_after {key_type};\n"
        f"    backfill_until {key_type};\n"
        "    batch_rows bigint;\n"
        "    filled bigint := 0;\n"
        "BEGIN\n"
        f"    backfill_until := ({sql(batch_end(key, None, batch_size))});\n"
        "    IF backfill_until IS NOT NULL THEN\n"
        f"{batch(first=True)}"
        "    END IF;\n"
        "    LOOP\n"
        "        backfill_after := backfill_until;\n"
        "        EXIT WHEN backfill_after IS NULL;\n"
        f"        backfill_until := ({sql(batch_end(key, after, batch_size))});\n"
        "        EXIT WHEN backfill_until IS NULL;\n"
        f"{pause}{batch(first=False)}"
        "    END LOOP;\n"
        "END\n"
        "$backfill$"
    )
