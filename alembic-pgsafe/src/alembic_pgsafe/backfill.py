"""Backfill a column of a live table in small, resumable batches.

Problem: one ``UPDATE`` of every row holds its row locks and one transaction until it ends:
writers to those rows wait, vacuum cannot clean up behind it, replicas lag, and a failure
throws all the work away. The runner walks the table in keyset batches on its primary key,
each batch one short transaction, touching only rows still ``pending``: stopped at any point
(a crash, a deploy, ``kill -9``), it resumes where it was and nothing is done twice.
"""

import asyncio
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa
from alembic import op
from sqlalchemy import URL, Connection
from sqlalchemy.pool import NullPool

from alembic_pgsafe.budget import DEFAULT_MIN_RATE, LatencyBudget, sibling_url
from alembic_pgsafe.connect import create_engine
from alembic_pgsafe.helpers import (
    MigrationSafetyError,
    acknowledge_lint,
    committing,
    compiled_sql,
    literal_sql,
    migration_settings,
    timeouts,
)
from alembic_pgsafe.settings import MigrationSettings, command_name, size_bytes

__all__ = [
    "BUDGET_STATES",
    "GENTLE_BATCH_SIZE",
    "MEGABYTE",
    "OFFLINE_BATCH_SIZE",
    "TARGET_BATCH_SECONDS",
    "WAL_POSITION",
    "WAL_REPORT_SECONDS",
    "WORST_REPLICA",
    "BatchObserver",
    "BatchReport",
    "KeysetBackfill",
    "ParallelKeysetBackfill",
    "Progress",
    "ReplicaThrottle",
    "ReplicasTooFarBehind",
    "Throttle",
    "ThrottleGaveUp",
    "Throttles",
    "WalRateLimit",
    "backfill_in_batches",
    "backfill_throttle",
    "batch_end",
    "batch_update",
    "delete_in_batches",
    "key_slices",
    "latency_budget",
    "observing_batches",
    "offline_backfill",
]

log = logging.getLogger("alembic.backfill")

TARGET_BATCH_SECONDS = 0.05
"""What an adaptive batch aims at when a migration gives no batch size (see `make bench`)."""
GENTLE_BATCH_SIZE = 500
"""Rows per batch by default: fixed and small, so the application's commits hardly wait behind
the backfill's. ``make bench`` on 2 cores, PostgreSQL 15: writer p99 1.86x idle at 0.55x one
UPDATE (1 M rows), 0.84x idle at 0.54x (10 M); batches of about 50 ms 6.3x idle at 0.93x (1 M);
the latency budget held p99 too (1.88x, 0.70x) but at 0.36-0.38x."""


def batch_end(
    key: sa.ColumnClause[Any], after: Any, size: int, stop_at: Any = None
) -> sa.Select[tuple[Any]]:
    """The largest key of the ``size`` rows after key ``after`` (from the start when None),
    not past ``stop_at`` (the end of a worker's slice; None: the end of the table)."""
    batch = sa.select(key).order_by(key).limit(size)
    if after is not None:
        batch = batch.where(key > after)
    if stop_at is not None:
        batch = batch.where(key <= stop_at)
    return sa.select(sa.func.max(batch.subquery().c[0]))


def batch_update(
    table: sa.TableClause,
    key: sa.ColumnClause[Any],
    values: Mapping[str, Any],
    pending: sa.ColumnElement[bool],
    after: Any,
    until: Any,
) -> sa.Update | sa.Delete:
    """Set ``values`` on the pending rows with keys in (``after``, ``until``]; no values:
    delete those rows (:func:`delete_in_batches`)."""
    in_batch = [key <= until, pending]
    if after is not None:
        in_batch.append(key > after)
    if not values:
        return table.delete().where(*in_batch)
    return table.update().where(*in_batch).values(**values)


@dataclass
class Progress:
    label: str
    total: int
    done: int = 0
    batches: int = 0
    started: float = field(default_factory=time.monotonic)
    longest_batch: float = 0.0
    last_key: Any = None
    """The key of the last row of the last batch committed (where a resumed run goes on)."""

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


@dataclass(frozen=True)
class BatchReport:
    """Where a backfill stands after a batch: what its log events and metrics say."""

    label: str
    rows_done: int
    rows_total: int
    rows_per_second: float
    batches: int
    batch_size: int
    pause_seconds: float
    budget_state: str
    """``off`` (no latency budget), ``pacing`` (the budget sizes the batches), ``pausing``
    (batches at their smallest, with pauses between), ``floor`` (the load would slow it more:
    its minimum rate holds it)."""

    @classmethod
    def of(
        cls, progress: Progress, batch_size: int, pause_seconds: float, state: str
    ) -> "BatchReport":
        return cls(
            label=progress.label,
            rows_done=progress.done,
            rows_total=progress.total,
            rows_per_second=progress.rate,
            batches=progress.batches,
            batch_size=batch_size,
            pause_seconds=pause_seconds,
            budget_state=state,
        )

    def fields(self, event: str) -> dict[str, Any]:
        remaining = max(self.rows_total - self.rows_done, 0)
        rate = self.rows_per_second
        return {
            "event": event,
            "backfill": self.label,
            "rows_done": self.rows_done,
            "rows_total": self.rows_total,
            "rows_per_second": round(rate, 1),
            "eta_seconds": round(remaining / rate, 1) if rate > 0 else None,
            "batches": self.batches,
            "batch_size": self.batch_size,
            "pause_seconds": round(self.pause_seconds, 4),
            "budget_state": self.budget_state,
        }


BatchObserver = Callable[[BatchReport], None]
_observers: list[BatchObserver] = []


@contextmanager
def observing_batches(observer: BatchObserver) -> Iterator[None]:
    """Call ``observer`` after every batch of every backfill run meanwhile (any thread): how
    ``backfill run --metrics-port`` exports its progress."""
    _observers.append(observer)
    try:
        yield
    finally:
        _observers.remove(observer)


BUDGET_STATES = ("off", "pacing", "pausing", "floor")
"""What :func:`budget_state` says."""


def budget_state(budget: LatencyBudget | None) -> str:
    if budget is None:
        return "off"
    if budget.at_floor:
        return "floor"
    return "pausing" if budget.pause > 0 else "pacing"


@dataclass
class ProgressLog:
    """Logs a backfill's progress every ``every`` seconds, not every batch, with its fields
    (event ``backfill.progress``); tells the observers every batch."""

    every: float
    _last: float = field(default_factory=time.monotonic)

    def batch(self, report: BatchReport, progress: Progress, *, log_it: bool = True) -> None:
        for observer in list(_observers):
            observer(report)
        now = time.monotonic()
        if log_it and now - self._last >= self.every:
            self._last = now
            fields = report.fields("backfill.progress")
            log.info("%s", progress.line(report.batch_size), extra=fields)

    def finished(self, report: BatchReport, seconds: float) -> None:
        fields = report.fields("backfill.finished") | {"duration_seconds": round(seconds, 3)}
        log.info(
            "%s: %d rows in %.1f s (%d batches)",
            report.label,
            report.rows_done,
            seconds,
            report.batches,
            extra=fields,
        )


MEGABYTE = 1024 * 1024
WORST_REPLICA = sa.text(
    "SELECT coalesce(nullif(application_name, ''), 'walreceiver')"
    " || ' at ' || coalesce(host(client_addr), 'local socket'),"
    " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint, replay_lag::text"
    " FROM pg_stat_replication ORDER BY 2 DESC NULLS FIRST LIMIT 1"
)


class ThrottleGaveUp(Exception):
    """A throttle would hold the backfill for longer than it may wait."""


class ReplicasTooFarBehind(ThrottleGaveUp):
    """The replicas stayed behind for longer than the throttle may wait."""


class Throttle(Protocol):
    def wait(self, connection: Connection, label: str) -> None:
        """Return when the next batch may run; raise ThrottleGaveUp instead of waiting too long."""


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


WAL_POSITION = sa.text("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")


@dataclass
class WalRateLimit:
    """Hold the next batch while the server has written WAL faster than ``limit`` per second
    since the backfill began.

    Problem: replicas, WAL archiving and backups take WAL at their own pace; a backfill that
    writes it as fast as the primary can leaves them behind even where no replica reports lag
    yet (an archive, a replica in another region). Before each batch this reads the WAL
    position and, if the WAL written since the first batch is ahead of ``limit`` bytes per
    second, sleeps until it is not. The count is the server's, the application's writes
    included: on a server that writes more than the budget by itself, one pause would exceed
    ``max_wait_seconds`` and the backfill stops, resumably.
    """

    limit: str
    max_wait_seconds: float
    _start: tuple[float, int] | None = None
    _last_report: float = -math.inf

    @property
    def limit_bytes(self) -> int:
        return size_bytes(self.limit)

    def wait(self, connection: Connection, label: str) -> None:
        position = connection.execute(WAL_POSITION).scalar_one()
        now = time.monotonic()
        if self._start is None:
            self._start = (now, position)
            return
        began, first = self._start
        written = position - first
        pause = began + written / self.limit_bytes - now
        if pause <= 0:
            return
        if pause > self.max_wait_seconds:
            msg = (
                f"keeping the WAL rate within {self.limit}/s would pause for {pause:.0f} s"
                f" ({written / MEGABYTE:.1f} MB written in {now - began:.0f} s; the server may"
                f" write more than that by itself), more than MIGRATION_MAX_REPLICA_LAG_WAIT"
                f" ({self.max_wait_seconds:g} s)"
            )
            raise ThrottleGaveUp(msg)
        if now - self._last_report >= WAL_REPORT_SECONDS:
            self._last_report = now
            log.info(
                "%s: pausing %.2f s: WAL at %.1f MB/s since the start, above the budget of %s/s",
                label,
                pause,
                written / MEGABYTE / max(now - began, 1e-6),
                self.limit,
            )
        time.sleep(pause)


WAL_REPORT_SECONDS = 10.0
"""A WAL-rate pause is logged at most this often (a throttled backfill pauses every batch)."""


@dataclass
class Throttles:
    """Several throttles, each asked in turn before a batch."""

    throttles: Sequence[Throttle]

    def wait(self, connection: Connection, label: str) -> None:
        for throttle in self.throttles:
            throttle.wait(connection, label)


@dataclass
class KeysetBackfill:
    """Set ``values`` on the rows of ``table`` matching ``pending``, batch by batch.

    ``connection`` must be in autocommit mode, so that each UPDATE is a transaction of its own.
    With ``target_seconds`` the batch size adapts (within ``min_size``..``max_size``) so that a
    batch takes about that long; without it every batch has ``batch_size`` rows. With
    ``budget`` as well, batches are sized to keep the application's commits within ``budget``
    times their latency before the backfill (:class:`~.budget.LatencyBudget`), never longer
    than ``target_seconds``.
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
    throttle: Throttle | None = None
    """Checked before each batch: waits while the replicas are too far behind, or the WAL
    rate is above its budget."""
    start_after: Any = None
    stop_at: Any = None
    """The slice of the key this runner owns, (start_after, stop_at]; None: unbounded."""
    log_batches: bool = True
    should_stop: Callable[[], bool] | None = None
    """Asked before each batch; True ends the run early (another worker failed)."""
    budget: float | None = None
    """Keep the application's commits within this many times their latency before the
    backfill (a canary connection measures them); None: batches adapt to their duration only."""
    connect_args: dict[str, Any] = field(default_factory=dict)
    """For the budget's canary connection (the runner's own comes ready)."""
    budget_min_rate: float = DEFAULT_MIN_RATE
    """Rows per second the budget never slows the batches below (0: no floor)."""
    progress_seconds: float = 5.0
    """Progress is logged at most this often (and at the end)."""

    def batch_end(self, after: Any) -> Any:
        """The key of the last row of the batch after key ``after`` (None when no row is left)."""
        query = batch_end(self.key, after, self.batch_size, self.stop_at)
        return self.connection.execute(query).scalar()

    def in_slice(self) -> list[sa.ColumnElement[bool]]:
        bounds = [self.pending]
        if self.start_after is not None:
            bounds.append(self.key > self.start_after)
        if self.stop_at is not None:
            bounds.append(self.key <= self.stop_at)
        return bounds

    def batch_update(self, after: Any, until: Any) -> sa.Update | sa.Delete:
        """The UPDATE of the pending rows with keys in (``after``, ``until``]."""
        return batch_update(self.table, self.key, self.values, self.pending, after, until)

    def latency_budget(self, rows: int) -> LatencyBudget | None:
        """The budget the batches keep, if any: none for a fill of one batch or less."""
        if self.budget is None or rows <= self.batch_size:
            return None
        return LatencyBudget(
            sibling_url(self.connection),
            self.label,
            self.budget,
            start_size=self.batch_size,
            min_size=self.min_size,
            max_size=self.max_size,
            target_seconds=self.target_seconds or TARGET_BATCH_SECONDS,
            min_rate=self.budget_min_rate,
            connect_args=self.connect_args,
        )

    def _resize(self, seconds: float, budget: LatencyBudget | None) -> None:
        paced = budget.next_batch(self.batch_size, seconds) if budget is not None else None
        if paced is not None:
            self.batch_size = paced
            return
        # No budget, or no signal from it: batches adapt to their duration.
        if self.target_seconds is None or seconds <= 0:
            return
        factor = min(2.0, max(0.5, self.target_seconds / seconds))
        self.batch_size = min(self.max_size, max(self.min_size, int(self.batch_size * factor)))

    def run(self) -> Progress:
        count = sa.select(sa.func.count()).select_from(self.table).where(*self.in_slice())
        progress = Progress(self.label, self.connection.execute(count).scalar_one())
        if self.log_batches:
            rows, size = progress.total, self.batch_size
            log.info("%s: %d rows to fill, batches of %d", self.label, rows, size)
        budget = self.latency_budget(progress.total)
        reports = ProgressLog(self.progress_seconds)
        with budget or nullcontext():
            self._batches(progress, budget, reports)
        if self.log_batches:
            reports.finished(self.report(progress, budget), time.monotonic() - progress.started)
        return progress

    def report(self, progress: Progress, budget: LatencyBudget | None) -> BatchReport:
        pause = max(self.pause_seconds, budget.pause if budget is not None else 0.0)
        return BatchReport.of(progress, self.batch_size, pause, budget_state(budget))

    def _batches(
        self, progress: Progress, budget: LatencyBudget | None, reports: ProgressLog
    ) -> None:
        after: Any = self.start_after
        while True:
            if self.should_stop is not None and self.should_stop():
                break
            until = self.batch_end(after)
            if until is None:
                break
            if self.throttle is not None:
                try:
                    self.throttle.wait(self.connection, self.label)
                except ThrottleGaveUp as exc:
                    msg = (
                        f"{self.label}: stopped: {exc}. The {progress.done} rows filled so far"
                        " stay filled; run the migration again once the replica has caught up"
                        f" ('{command_name('backfill')}' for a scheduled backfill): the backfill"
                        " resumes with"
                        " the rows still pending."
                    )
                    raise MigrationSafetyError(msg) from None
            started = time.monotonic()
            progress.done += self.connection.execute(self.batch_update(after, until)).rowcount
            seconds = time.monotonic() - started
            progress.batches += 1
            progress.longest_batch = max(progress.longest_batch, seconds)
            progress.last_key = after = until
            self._resize(seconds, budget)
            if self.log_batches:
                reports.batch(self.report(progress, budget), progress)
            if self.on_batch is not None:
                self.on_batch(progress)
            pause = max(self.pause_seconds, budget.pause if budget is not None else 0.0)
            if pause:
                time.sleep(pause)


def key_slices(
    connection: Connection, table: sa.TableClause, key: sa.ColumnClause[Any], n: int
) -> list[tuple[Any, Any]]:
    """``n`` disjoint (after, until] ranges that cover every key of ``table``, in key order
    (None: unbounded).

    Integer keys are cut into ranges of equal width (two index lookups); other keys at their
    ``percentile_disc`` (one sort of the keys), which also balances a key with large gaps.
    """
    low, high = connection.execute(sa.select(sa.func.min(key), sa.func.max(key))).one()
    if low is None:
        return []
    if isinstance(low, int) and isinstance(high, int):
        cuts = [low - 1 + (high - low + 1) * i // n for i in range(1, n)]
    else:
        fractions = sa.literal([i / n for i in range(1, n)], sa.ARRAY(sa.Float))
        quantiles = sa.func.percentile_disc(fractions).within_group(key)
        cuts = list(connection.execute(sa.select(quantiles).select_from(table)).scalar_one())
    # The last slice stays open: rows inserted past today's largest key are filled too.
    edges = [None, *sorted(set(cuts)), None]
    return list(itertools.pairwise(edges))


@dataclass
class ParallelKeysetBackfill:
    """``workers`` keyset runners side by side, each on its own slice of the key and its own
    connection (autocommit, its own adaptive batches), with progress and ETA over all of them.

    One UPDATE uses one backend and one core; disjoint slices let the server use more. Each
    worker fills only rows still ``pending``, so a killed run resumes exactly as a single
    runner does. A failing worker stops the others after their current batch, and its error is
    raised once all have stopped.
    """

    url: URL
    table: sa.TableClause
    key: sa.ColumnClause[Any]
    values: Mapping[str, Any]
    pending: sa.ColumnElement[bool]
    label: str = "backfill"
    workers: int = 2
    batch_size: int = 1000
    target_seconds: float | None = None
    pause_seconds: float = 0.0
    throttle: Throttle | None = None
    batch_timeout: str | None = None
    connect_args: dict[str, Any] = field(default_factory=dict)
    progress_seconds: float = 5.0
    """Progress over all workers is logged at most this often (and at the end)."""

    def _engine(self) -> Any:
        return create_engine(self.url, poolclass=NullPool, connect_args=self.connect_args)

    async def _plan(self) -> tuple[list[tuple[Any, Any]], int]:
        engine = self._engine()
        try:
            async with engine.connect() as connection:
                slices = await connection.run_sync(key_slices, self.table, self.key, self.workers)
                count = sa.select(sa.func.count()).select_from(self.table).where(self.pending)
                total = (await connection.execute(count)).scalar_one()
        finally:
            await engine.dispose()
        return slices, total

    async def _work(self, runner: Callable[[Connection], Progress]) -> None:
        engine = self._engine()
        try:
            async with engine.connect() as connection:
                autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
                if self.batch_timeout is not None:
                    limit = sa.text("SELECT set_config('statement_timeout', :value, false)")
                    await autocommit.execute(limit.bindparams(value=self.batch_timeout))
                await autocommit.run_sync(runner)
        finally:
            await engine.dispose()

    def run(self) -> Progress:
        # Every event loop here runs in a thread of its own: run() itself may be called from
        # inside one (env.py runs the migrations under asyncio.run).
        planned: list[tuple[list[tuple[Any, Any]], int]] = []
        failed: list[BaseException] = []

        def plan() -> None:
            try:
                planned.append(asyncio.run(self._plan()))
            except BaseException as exc:  # raised below, in the caller's thread
                failed.append(exc)

        planner = threading.Thread(target=plan)
        planner.start()
        planner.join()
        if failed:
            raise failed[0]
        slices, total = planned[0]
        shared = Progress(self.label, total)
        log.info(
            "%s: %d rows to fill, %d workers on slices of the key", self.label, total, len(slices)
        )
        lock = threading.Lock()
        stop = threading.Event()
        errors: list[BaseException] = []
        reports = ProgressLog(self.progress_seconds)

        def report() -> BatchReport:
            return BatchReport.of(shared, self.batch_size, self.pause_seconds, "off")

        def worker(after: Any, until: Any) -> None:
            reported = 0

            def count(progress: Progress) -> None:
                nonlocal reported
                with lock:
                    shared.done += progress.done - reported
                    shared.batches += 1
                    shared.longest_batch = max(shared.longest_batch, progress.longest_batch)
                    reported = progress.done
                    reports.batch(report(), shared)

            def run(connection: Connection) -> Progress:
                runner = KeysetBackfill(
                    connection,
                    self.table,
                    self.key,
                    self.values,
                    self.pending,
                    label=self.label,
                    batch_size=self.batch_size,
                    target_seconds=self.target_seconds,
                    pause_seconds=self.pause_seconds,
                    on_batch=count,
                    throttle=self.throttle,
                    start_after=after,
                    stop_at=until,
                    log_batches=False,
                    should_stop=stop.is_set,
                )
                return runner.run()

            try:
                asyncio.run(self._work(run))
            except BaseException as exc:  # handed to run() below, which raises it
                stop.set()
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=edge) for edge in slices]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        reports.finished(report(), time.monotonic() - shared.started)
        return shared


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
    workers: int = 1,
    gentle: bool | None = None,
    budget: float | None = None,
) -> Progress | None:
    """Run a :class:`KeysetBackfill` from a migration (``workers`` > 1: a
    :class:`ParallelKeysetBackfill`, each worker on a connection of its own).

    Rows per batch: ``-x batch_size=N`` (or MIGRATION_BATCH_SIZE) for this run, else
    ``batch_size``, else sized to keep the application's commits within ``budget`` times what
    they took before the backfill (``-x backfill_budget=2`` for this run; see :mod:`.budget`),
    else the ``default_batch_size`` setting (GENTLE_BATCH_SIZE, 500 rows: the best trade-off
    ``alembic-pgsafe bench`` measured between the backfill's speed and the application's
    latency); ``gentle=False``: batches of about ``batch_target_seconds`` (TARGET_BATCH_SECONDS),
    the fastest one runner goes (parallel workers always do). Each batch may run for
    MIGRATION_BACKFILL_BATCH_TIMEOUT. Offline (``--sql``) the batches are emitted as a ``DO``
    block that commits after each one (see :func:`offline_backfill`), of
    ``offline_batch_size`` rows (OFFLINE_BATCH_SIZE) unless a size or ``gentle=True`` is given.
    """
    context = op.get_context()
    settings = migration_settings()
    size = settings.batch_size or batch_size
    wanted = latency_budget(settings, size, budget)
    factor = None if workers > 1 else wanted  # the budget paces one runner
    # 500-row batches by default, for one runner online; workers and offline SQL go faster.
    by_default = gentle is None and workers == 1 and not context.as_sql
    if size is None and factor is None and (gentle or by_default):
        size = settings.default_batch_size
    if context.as_sql:
        script = offline_backfill(
            table,
            key=key,
            values=values,
            pending=pending,
            label=label,
            batch_size=size or settings.offline_batch_size,
            pause_seconds=pause_seconds,
        )
        with committing(f"backfill_in_batches({label})"):
            # The DO block is one statement: statement_timeout would cut the whole backfill.
            op.execute(sa.text("SET statement_timeout = 0"))
            acknowledge_lint(
                "dynamic-sql", because=f"{label}: the toolkit's keyset batches, one COMMIT each"
            )
            op.execute(literal_sql(script))
            reset = sa.text("SET statement_timeout = :value")
            op.execute(reset.bindparams(value=settings.statement_timeout))
        return None
    with (
        committing(f"backfill_in_batches({label})"),
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
            target_seconds=None if size else settings.batch_target_seconds,
            pause_seconds=pause_seconds,
            throttle=backfill_throttle(settings),
            budget=factor,
            budget_min_rate=settings.backfill_budget_min_rate,
            progress_seconds=settings.progress_seconds,
        )
        if workers > 1 and wanted is not None:
            log.info(
                "%s: %d workers, each with batches of about %.0f ms: no latency budget (it"
                " paces one runner)",
                label,
                workers,
                settings.batch_target_seconds * 1000,
            )
        if workers > 1:
            # After autocommit_block() began: the revision's earlier DDL is committed, so the
            # workers' connections do not queue behind the locks it took.
            return ParallelKeysetBackfill(
                op.get_bind().engine.url,
                table,
                key,
                values,
                pending,
                label=label,
                workers=workers,
                batch_size=runner.batch_size,
                target_seconds=runner.target_seconds,
                pause_seconds=pause_seconds,
                throttle=runner.throttle,
                batch_timeout=settings.backfill_batch_timeout,
                progress_seconds=settings.progress_seconds,
            ).run()
        return runner.run()


def delete_in_batches(
    table: sa.TableClause,
    *,
    key: sa.ColumnClause[Any],
    where: sa.ColumnElement[bool],
    label: str,
    batch_size: int | None = None,
    pause_seconds: float = 0.0,
    gentle: bool | None = None,
    budget: float | None = None,
) -> Progress | None:
    """Delete the rows of ``table`` that match ``where``, in keyset batches on ``key``.

    The DELETE counterpart of :func:`backfill_in_batches`, with its batches, throttles and
    offline ``DO`` block: one ``DELETE`` of many rows (or ``TRUNCATE``) locks them all in one
    long transaction, or the whole table. Interrupted, it resumes: deleted rows stay deleted.
    """
    return backfill_in_batches(
        table,
        key=key,
        values={},
        pending=where,
        label=label,
        batch_size=batch_size,
        pause_seconds=pause_seconds,
        gentle=gentle,
        budget=budget,
    )


def latency_budget(
    settings: MigrationSettings, fixed_size: int | None, budget: float | None = None
) -> float | None:
    """The latency budget a run keeps: none with fixed batches; MIGRATION_BACKFILL_BUDGET
    (``-x backfill_budget``) wins over the call's ``budget``; 0 or None: none."""
    if fixed_size:
        return None
    chosen = settings.backfill_budget if settings.backfill_budget is not None else budget
    return chosen or None


def backfill_throttle(settings: MigrationSettings) -> Throttle | None:
    """What MIGRATION_MAX_REPLICA_LAG (``-x max_replica_lag=64MB``) and MIGRATION_MAX_WAL_RATE
    (``-x max_wal_rate=32MB``) ask for, if anything."""
    throttles: list[Throttle] = []
    if settings.max_replica_lag is not None:
        throttles.append(ReplicaThrottle(settings.max_replica_lag, settings.max_replica_lag_wait))
    if settings.max_wal_rate is not None:
        throttles.append(WalRateLimit(settings.max_wal_rate, settings.max_replica_lag_wait))
    if not throttles:
        return None
    return throttles[0] if len(throttles) == 1 else Throttles(throttles)


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
    after: sa.ColumnClause[Any] = sa.literal_column("backfill_after")
    until: sa.ColumnClause[Any] = sa.literal_column("backfill_until")
    preparer = dialect.identifier_preparer
    key_type = f"{preparer.format_table(table)}.{preparer.quote(key.name)}%TYPE"
    pause = f"        PERFORM pg_sleep({pause_seconds!r});\n" if pause_seconds else ""
    progress = compiled_sql(sa.literal(f"{label}: % rows filled, up to key %"))

    def batch(first: bool) -> str:
        update = batch_update(table, key, values, pending, None if first else after, until)
        return (
            f"        {compiled_sql(update)};\n"
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
        f"    backfill_until := ({compiled_sql(batch_end(key, None, batch_size))});\n"
        "    IF backfill_until IS NOT NULL THEN\n"
        f"{batch(first=True)}"
        "    END IF;\n"
        "    LOOP\n"
        "        backfill_after := backfill_until;\n"
        "        EXIT WHEN backfill_after IS NULL;\n"
        f"        backfill_until := ({compiled_sql(batch_end(key, after, batch_size))});\n"
        "        EXIT WHEN backfill_until IS NULL;\n"
        f"{pause}{batch(first=False)}"
        "    END LOOP;\n"
        "END\n"
        "$backfill$"
    )
