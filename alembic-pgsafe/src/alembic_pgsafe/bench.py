"""Measure backfill and index strategies on your PostgreSQL, with live traffic, in one run.

    alembic-pgsafe bench [--rows 1000000] [--batch-size 5000]
        [--strategies single-update,keyset-fixed,...] [--database-url URL]
        [--target-ms 50] [--pause 0] [--output DIR] [--plot] [--no-explain]
        [--scenario steady|load-step] [--step-writers 8] [--step-pause 0.001]

Each strategy gets a fresh scratch table (``bench_items``, dropped at the end; a CHECKPOINT
first when allowed) and fills its ``doubled`` column from ``n``, while a second process updates
random rows every few milliseconds, as an application would. Reported: wall time, rows/s, the
ratio to one plain UPDATE measured in the same run, the longest single transaction, the
writer's latency (p50 / p99 / max) against its latency with no migration running, the WAL
written and the checkpoints. Then plain CREATE INDEX against CREATE INDEX CONCURRENTLY under
the same writer, and EXPLAIN (ANALYZE, BUFFERS, WAL) of one batch of each loop half-way
through. Every strategy's data is checked. The ORM row-by-row loop runs on ``--orm-sample``
rows and is extrapolated (marked so).

``--scenario load-step`` asks when the latency budget is worth it: the application's write
rate steps up half-way through each backfill (``--step-writers`` more connections join the
writer, each writing every ``--step-pause`` seconds), and the table shows the writer's p99
before and after the step, each against the writer's p99 at the same load with no migration
running, for 500-row batches (``keyset-gentle``) and the latency budget (``keyset-budget``).
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection as Connection_
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, Session
from sqlalchemy.sql.expression import ClauseElement, Executable
from tqdm import tqdm

from alembic_pgsafe import bench_plot
from alembic_pgsafe.backfill import (
    GENTLE_BATCH_SIZE,
    TARGET_BATCH_SECONDS,
    KeysetBackfill,
    ParallelKeysetBackfill,
    Progress,
)
from alembic_pgsafe.budget import DEFAULT_BUDGET, DEFAULT_MIN_RATE
from alembic_pgsafe.connect import (
    create_engine,
    database_target,
    to_asyncpg_url,
)
from alembic_pgsafe.helpers import autocommit

FILL_CHUNK = 200_000


class _Base(DeclarativeBase):
    pass


metadata = sa.MetaData()
items = sa.Table(
    "bench_items",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("doubled", sa.Integer),
    sa.Column("payload", sa.Text, nullable=False, server_default="payload"),
)
WRITE = "UPDATE bench_items SET n = n WHERE id = $1"


class Item(_Base):
    """The scratch table, mapped for the ORM loop."""

    __table__ = items
    id: Mapped[int]
    n: Mapped[int]
    doubled: Mapped[int | None]


@dataclass
class Latencies:
    """What the concurrent writer saw: (seconds into the strategy, latency in seconds) per write."""

    samples: list[tuple[float, float]] = field(default_factory=list)

    def stats_ms(self) -> dict[str, float]:
        values = sorted(latency * 1000 for _, latency in self.samples)
        if not values:
            return {"writes": 0, "p50": 0.0, "p99": 0.0, "max": 0.0}
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
        return {
            "writes": len(values),
            "p50": statistics.median(values),
            "p99": p99,
            "max": values[-1],
        }


@dataclass
class Result:
    strategy: str
    kind: str
    seconds: float
    rows: int
    longest_transaction_s: float
    writer_ms: dict[str, float]
    data_ok: bool
    note: str = ""
    wal_mb: float = 0.0
    checkpoints: int = 0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class WriterPlan:
    """What one writer process does: ``connections`` clients, each updating a random row every
    ``pause`` seconds, from the moment ``start`` is set (None: at once)."""

    dsn: str
    rows: int
    pause: float = 0.005
    connections: int = 1
    start: EventType | None = None


async def _write_until_stopped(
    plan: WriterPlan, ready: EventType, stop: EventType, out: Connection_
) -> None:
    connections = [await asyncpg.connect(plan.dsn) for _ in range(plan.connections)]
    samples: list[tuple[float, float]] = []

    async def write(connection: asyncpg.Connection, seed: int) -> None:
        chooser = random.Random(seed)  # noqa: S311 (a workload, not a secret)
        # Events of another process: polled, as an asyncio.Event cannot cross to this one.
        while plan.start is not None and not plan.start.is_set() and not stop.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        while not stop.is_set():
            before = time.monotonic()  # one clock for every process on the machine
            await connection.execute(WRITE, chooser.randint(1, plan.rows))
            samples.append((before, time.monotonic() - before))
            await asyncio.sleep(plan.pause)

    try:
        ready.set()
        await asyncio.gather(*(write(c, 7 + i) for i, c in enumerate(connections)))
    finally:
        for connection in connections:
            await connection.close()
        out.send(samples)


def _writer_process(plan: WriterPlan, ready: EventType, stop: EventType, out: Connection_) -> None:
    asyncio.run(_write_until_stopped(plan, ready, stop, out))


class Writer:
    """A second client updating random rows while a strategy runs, timing each write.

    It is a process of its own: as a thread it would wait for the runner's GIL, and the
    benchmark would measure Python instead of PostgreSQL. ``window`` keeps the writes that
    started between two instants of ``time.monotonic()``. With ``connections`` and ``start``
    it is the load that joins at a step (:class:`LoadStep`), its clients in one process apart
    from the timed writer's.
    """

    def __init__(
        self,
        dsn: str,
        rows: int,
        pause: float = 0.005,
        connections: int = 1,
        start: EventType | None = None,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._ready, self._stop = context.Event(), context.Event()
        self._receive, self._send = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_writer_process,
            args=(
                WriterPlan(dsn, rows, pause, connections, start),
                self._ready,
                self._stop,
                self._send,
            ),
            daemon=True,
        )
        self._samples: list[tuple[float, float]] = []

    def __enter__(self) -> "Writer":
        self._process.start()
        self._send.close()  # the child holds the sending end: EOF here if it dies
        if not self._ready.wait(timeout=60):
            self._process.kill()
            raise RuntimeError("the concurrent writer could not connect within 60 s")
        time.sleep(0.2)  # let it reach its rhythm
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._samples = self._receive.recv()
        self._process.join()

    def window(self, started: float, ended: float) -> Latencies:
        return Latencies(
            [(at - started, took) for at, took in self._samples if started <= at <= ended]
        )


# --- progress ----------------------------------------------------------------------------------

PROGRESS_LINE_SECONDS = 5.0
"""Off a terminal (a CI log, a log collector), progress is one line this often, not a bar."""


@dataclass
class ProgressLines:
    """What a progress bar says, as a plain line every :data:`PROGRESS_LINE_SECONDS`: a bar's
    carriage returns make a log one endless line."""

    total: int
    desc: str
    n: int = 0
    _last: float = field(default_factory=time.monotonic)

    def update(self, count: int) -> None:
        self.n += count
        if time.monotonic() - self._last >= PROGRESS_LINE_SECONDS:
            self._last = time.monotonic()
            share = 100 * self.n / self.total if self.total else 100.0
            print(f"{self.desc}: {self.n:,}/{self.total:,} rows ({share:.0f}%)", file=sys.stderr)

    def __enter__(self) -> "ProgressLines":
        return self

    def __exit__(self, *_: object) -> None:
        return None


def progress_bar(total: int, desc: str) -> "tqdm[Any] | ProgressLines":
    """A tqdm bar on a terminal, else :class:`ProgressLines`."""
    if sys.stderr.isatty():
        return tqdm(total=total, desc=desc, unit="row", leave=False, file=sys.stderr)
    return ProgressLines(total, desc)


# --- the scratch table -------------------------------------------------------------------------


def create_table(connection: Connection, rows: int) -> bool:
    """A fresh, filled, vacuumed scratch table; whether a CHECKPOINT followed it."""
    items.drop(connection, checkfirst=True)
    items.create(connection)
    with progress_bar(rows, "  filling") as bar:
        for start in range(0, rows, FILL_CHUNK):
            count = min(FILL_CHUNK, rows - start)
            numbers = sa.select(sa.func.generate_series(start + 1, start + count))
            connection.execute(sa.insert(items).from_select(["n"], numbers))
            bar.update(count)
    with autocommit(connection):
        table = connection.dialect.identifier_preparer.format_table(items)
        connection.execute(sa.text(f"VACUUM ANALYZE {table}"))
    return checkpoint(connection)


def checkpoint(connection: Connection) -> bool:
    """Start every strategy from a fresh checkpoint, so none pays for the one before it.

    Needs superuser or (PostgreSQL 15+) the pg_checkpoint role; without it, says so.
    """
    try:
        with autocommit(connection):
            connection.execute(sa.text("CHECKPOINT"))
    except DBAPIError:
        return False
    return True


def wrong_rows(connection: Connection, scope: int) -> int:
    query = sa.select(sa.func.count()).where(
        items.c.id <= scope, items.c.doubled.is_distinct_from(items.c.n * 2)
    )
    wrong = int(connection.execute(query).scalar_one())
    connection.commit()
    return wrong


# --- what the server did: WAL written, checkpoints, one batch explained ----------------------


def server_counters(connection: Connection) -> tuple[float, int]:
    """(bytes of WAL written since the cluster began, checkpoints performed so far)."""
    wal = sa.func.pg_wal_lsn_diff(
        sa.func.pg_current_wal_insert_lsn(), sa.literal_column("'0/0'::pg_lsn")
    )
    if connection.dialect.server_version_info >= (17,):  # type: ignore[operator]
        done = sa.text("SELECT num_done FROM pg_stat_checkpointer")
    else:
        done = sa.text("SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")
    position = float(connection.execute(sa.select(wal)).scalar_one())
    checkpoints = int(connection.execute(done).scalar_one())
    connection.commit()
    return position, checkpoints


class Explain(Executable, ClauseElement):
    """``EXPLAIN (ANALYZE, BUFFERS, WAL)`` of a statement; SQLAlchemy has no construct for it."""

    inherit_cache = False
    _inline = False  # read by the compiler when the statement explained is an UPDATE

    def __init__(self, statement: sa.Executable) -> None:
        self.statement = statement


@compiles(Explain)
def _compile_explain(element: Explain, compiler: Any, **kw: Any) -> str:
    return "EXPLAIN (ANALYZE, BUFFERS, WAL) " + str(compiler.process(element.statement, **kw))


def explain_batches(connection: Connection, args: argparse.Namespace) -> dict[str, str]:
    """One batch of each loop at the table's midpoint, run and rolled back, with its plan.

    The first half is filled by one UPDATE first and left unvacuumed, as a backfill leaves it.
    """
    create_table(connection, args.rows)
    half = args.rows // 2
    connection.execute(items.update().where(items.c.id <= half).values(doubled=items.c.n * 2))
    connection.commit()
    checkpoint(connection)
    runner = keyset_runner(connection, args, target=None)
    batches = {
        "keyset": runner.batch_update(half, runner.batch_end(half)),
        "limit-loop": limit_loop_statement(args.batch_size),
    }
    plans = {}
    for name, statement in batches.items():
        plans[name] = "\n".join(connection.execute(Explain(statement)).scalars())
        connection.rollback()
    return plans


# --- strategies: each returns (rows done, longest transaction in seconds, note) ----------------

StrategyFn = Callable[[Connection, argparse.Namespace], tuple[int, float, str]]


def single_update(connection: Connection, args: argparse.Namespace) -> tuple[int, float, str]:
    started = time.monotonic()
    done = connection.execute(
        items.update().where(items.c.doubled.is_(None)).values(doubled=items.c.n * 2)
    ).rowcount
    connection.commit()
    return done, time.monotonic() - started, "one transaction"


def keyset_runner(
    connection: Connection,
    args: argparse.Namespace,
    target: float | None,
    on_batch: Callable[[Progress], None] | None = None,
    budget: float | None = None,
) -> KeysetBackfill:
    return KeysetBackfill(
        connection,
        items,
        items.c.id,
        {"doubled": items.c.n * 2},
        items.c.doubled.is_(None),
        label="bench_items.doubled",
        batch_size=args.batch_size,
        target_seconds=target,
        pause_seconds=args.pause,
        on_batch=on_batch,
        budget=budget,
        budget_min_rate=args.budget_min_rate,
    )


def _keyset(
    connection: Connection,
    args: argparse.Namespace,
    target: float | None,
    budget: float | None = None,
) -> tuple[int, float, str]:
    bar = progress_bar(args.rows, "  batches")
    with bar, autocommit(connection):

        def advance(progress: Progress) -> None:
            bar.update(progress.done - bar.n)
            if args.on_progress is not None:
                args.on_progress(progress)

        progress = keyset_runner(connection, args, target, advance, budget).run()
    return progress.done, progress.longest_batch, f"{progress.batches} batches"


def keyset_fixed(connection: Connection, args: argparse.Namespace) -> tuple[int, float, str]:
    return _keyset(connection, args, target=None)


def keyset_adaptive(connection: Connection, args: argparse.Namespace) -> tuple[int, float, str]:
    return _keyset(connection, args, target=args.target_ms / 1000)


def keyset_gentle(connection: Connection, args: argparse.Namespace) -> tuple[int, float, str]:
    """``backfill_in_batches``'s default: fixed batches of GENTLE_BATCH_SIZE rows."""
    return _keyset(
        connection,
        argparse.Namespace(**(vars(args) | {"batch_size": GENTLE_BATCH_SIZE})),
        target=None,
    )


def keyset_budget(connection: Connection, args: argparse.Namespace) -> tuple[int, float, str]:
    """``backfill_in_batches(..., budget=2)``: batches sized to keep commits within ``--budget``
    times their latency before the backfill (a canary process measures them), from 1,000 rows,
    each under ``--target-ms``."""
    done, longest, note = _keyset(
        connection,
        argparse.Namespace(**(vars(args) | {"batch_size": 1000})),
        target=args.target_ms / 1000,
        budget=args.budget,
    )
    floor = f", floor {args.budget_min_rate:,.0f} rows/s" if args.budget_min_rate else ", no floor"
    return done, longest, f"{note}, budget {args.budget:g}x{floor}"


def keyset_parallel(connection: Connection, args: argparse.Namespace) -> tuple[int, float, str]:
    """The keyset runner in ``--workers`` connections on disjoint slices of the key."""
    connection.commit()
    runner = ParallelKeysetBackfill(
        to_asyncpg_url(args.database_url),
        items,
        items.c.id,
        {"doubled": items.c.n * 2},
        items.c.doubled.is_(None),
        label="bench_items.doubled",
        workers=args.workers,
        batch_size=args.batch_size,
        target_seconds=args.target_ms / 1000,
        pause_seconds=args.pause,
    )
    progress = runner.run()
    return (
        progress.done,
        progress.longest_batch,
        f"{args.workers} workers, {progress.batches} batches",
    )


def limit_loop_statement(batch_size: int) -> sa.Update:
    """The batch many guides teach: find n pending rows anywhere, update them."""
    pending = sa.select(items.c.id).where(items.c.doubled.is_(None)).limit(batch_size)
    return items.update().where(items.c.id.in_(pending)).values(doubled=items.c.n * 2)


def limit_loop(connection: Connection, args: argparse.Namespace) -> tuple[int, float, str]:
    """The LIMIT loop: each batch searches again for pending rows from the start."""
    update = limit_loop_statement(args.batch_size)
    done, longest, batches = 0, 0.0, 0
    bar = progress_bar(args.rows, "  batches")
    with bar, autocommit(connection):
        while True:
            started = time.monotonic()
            count = connection.execute(update).rowcount
            longest = max(longest, time.monotonic() - started)
            if count == 0:
                break
            done, batches = done + count, batches + 1
            bar.update(count)
    return done, longest, f"{batches} batches"


def orm_loop(connection: Connection, args: argparse.Namespace) -> tuple[int, float, str]:
    """Row by row through the ORM, a commit per row; run on a sample only."""
    sample = min(args.orm_sample, args.rows)
    longest = 0.0
    with Session(bind=connection) as session:
        query = sa.select(Item).where(Item.doubled.is_(None)).order_by(Item.id).limit(sample)
        items_ = session.scalars(query).all()
        for item in tqdm(items_, desc="  rows", leave=False, file=sys.stderr, disable=None):
            started = time.monotonic()
            item.doubled = item.n * 2
            session.commit()
            longest = max(longest, time.monotonic() - started)
    return sample, longest, f"extrapolated from {sample} rows"


def create_index_on_n(connection: Connection, *, concurrently: bool) -> sa.TextClause:
    quote = connection.dialect.identifier_preparer.quote
    table = connection.dialect.identifier_preparer.format_table(items)
    how = "CONCURRENTLY " if concurrently else ""
    return sa.text(f"CREATE INDEX {how}{quote('ix_bench_n')} ON {table} ({quote('n')})")


def index_plain(connection: Connection, args: argparse.Namespace) -> tuple[int, float, str]:
    started = time.monotonic()
    connection.execute(create_index_on_n(connection, concurrently=False))
    connection.commit()
    return args.rows, time.monotonic() - started, "blocks writes"


def index_concurrent(connection: Connection, args: argparse.Namespace) -> tuple[int, float, str]:
    with autocommit(connection):
        started = time.monotonic()
        connection.execute(create_index_on_n(connection, concurrently=True))
    return args.rows, time.monotonic() - started, "writes go on"


STRATEGIES: dict[str, tuple[str, StrategyFn]] = {
    "single-update": ("backfill", single_update),
    "keyset-fixed": ("backfill", keyset_fixed),
    "keyset-adaptive": ("backfill", keyset_adaptive),
    "keyset-parallel": ("backfill", keyset_parallel),
    "keyset-gentle": ("backfill", keyset_gentle),
    "keyset-budget": ("backfill", keyset_budget),
    "limit-loop": ("backfill", limit_loop),
    "orm-loop": ("backfill", orm_loop),
    "index-plain": ("index", index_plain),
    "index-concurrent": ("index", index_concurrent),
}


# --- the load step: the application's write rate steps up half-way through -------------------

STEP_STRATEGIES = ("single-update", "keyset-gentle", "keyset-budget")
"""What ``--scenario load-step`` runs unless ``--strategies`` says otherwise: one UPDATE (the
throughput baseline, with the writer at its first rate: it reports no progress to step at),
500-row batches and the latency budget."""
STEPPABLE = {"keyset-fixed", "keyset-adaptive", "keyset-gentle", "keyset-budget"}
"""The strategies that report their progress after each batch, so the step can come half-way."""


class LoadStep:
    """The application's extra writers, connected and idle until :meth:`step`: then
    ``args.step_writers`` more clients update random rows every ``args.step_pause`` seconds."""

    def __init__(self, dsn: str, args: argparse.Namespace) -> None:
        self._event = multiprocessing.get_context("spawn").Event()
        self._load = Writer(dsn, args.rows, args.step_pause, args.step_writers, self._event)
        self.at: float | None = None

    def __enter__(self) -> "LoadStep":
        self._load.__enter__()
        return self

    def __exit__(self, *_: object) -> None:
        self._load.__exit__()

    def step(self) -> None:
        if self.at is None:
            self.at = time.monotonic()
            self._event.set()

    def writes_per_second(self, started: float, ended: float) -> float:
        return len(self._load.window(started, ended).samples) / max(ended - started, 1e-9)


@dataclass
class Phase:
    """One side of the step: rows filled, batches and the writer's latency."""

    seconds: float
    rows: int
    batches: int
    writer_ms: dict[str, float]
    writes_per_second: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


@dataclass
class StepResult:
    strategy: str
    seconds: float
    rows: int
    longest_transaction_s: float
    before: Phase
    after: Phase
    data_ok: bool
    note: str = ""

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def measure_step(
    connection: Connection, dsn: str, args: argparse.Namespace, name: str
) -> StepResult:
    """``name`` with the writer, and the step load joining it once half the rows are filled."""
    _, strategy = STRATEGIES[name]
    create_table(connection, args.rows)
    half, last = (0, 0), (0, 0)  # (rows done, batches) at the step, and at the end

    with Writer(dsn, args.rows) as writer, LoadStep(dsn, args) as load:

        def step_at_half(progress: Progress) -> None:
            nonlocal half, last
            last = (progress.done, progress.batches)
            if load.at is None and progress.done * 2 >= args.rows:
                load.step()
                half = last

        started = time.monotonic()
        done, longest, note = strategy(
            connection, argparse.Namespace(**(vars(args) | {"on_progress": step_at_half}))
        )
        ended = time.monotonic()
    stepped = load.at if load.at is not None else ended

    def phase(start: float, end: float, rows: int, count: int) -> Phase:
        latencies = writer.window(start, end).stats_ms()
        return Phase(end - start, rows, count, latencies, load.writes_per_second(start, end))

    return StepResult(
        name,
        ended - started,
        done,
        longest,
        phase(started, stepped, *half),
        phase(stepped, ended, last[0] - half[0], last[1] - half[1]),
        wrong_rows(connection, args.rows) == 0,
        note,
    )


def idle_step(dsn: str, args: argparse.Namespace) -> tuple[dict[str, float], dict[str, float]]:
    """The writer's latency with no migration running, before the step and after it."""
    with Writer(dsn, args.rows) as writer, LoadStep(dsn, args) as load:
        started = time.monotonic()
        time.sleep(args.idle_seconds)
        load.step()
        stepped = time.monotonic()
        time.sleep(args.idle_seconds)
        ended = time.monotonic()
    return writer.window(started, stepped).stats_ms(), writer.window(stepped, ended).stats_ms()


def report_step(
    header: dict[str, Any],
    idle: tuple[dict[str, float], dict[str, float]],
    baseline: Result | None,
    results: list[StepResult],
) -> str:
    before, after = idle
    lines = [
        f"# Migration benchmark, load step: {header['rows']:,} rows",
        "",
        f"PostgreSQL {header['postgresql']} · {header['cores']} cores · {header['date']}",
        "",
        "The writer updates a random row every 5 ms; once half the rows are filled,"
        f" {header['step_writers']} more clients join it, each writing every"
        f" {header['step_pause'] * 1000:g} ms.",
        f"Writer with no migration running: p99 {before['p99']:.1f} ms before the step,"
        f" {after['p99']:.1f} ms after it ({int(before['writes'])} and {int(after['writes'])}"
        " writes).",
        _single_update_line(baseline),
        "",
        "| strategy | wall s | x single UPDATE | rows/s before → after step |"
        " rows per batch before → after | writer p99 ms before step (x idle) |"
        " writer p99 ms after step (x idle) | writes/s of the step load | longest tx ms |"
        " data | note |",
        "| --- | ---: | ---: | --- | --- | --- | --- | ---: | ---: | --- | --- |",
    ]
    for r in results:
        ratio = r.rows_per_second / baseline.rows_per_second if baseline else float("nan")
        per_batch = [p.rows / p.batches if p.batches else 0.0 for p in (r.before, r.after)]
        lines.append(
            f"| {r.strategy} | {r.seconds:.2f} | {ratio:.2f} |"
            f" {r.before.rows_per_second:,.0f} → {r.after.rows_per_second:,.0f} |"
            f" {per_batch[0]:,.0f} → {per_batch[1]:,.0f} |"
            f" {_p99(r.before, before)} | {_p99(r.after, after)} |"
            f" {r.after.writes_per_second:,.0f} | {r.longest_transaction_s * 1000:.0f} |"
            f" {'ok' if r.data_ok else 'WRONG'} | {r.note} |"
        )
    return "\n".join(lines) + "\n"


def _single_update_line(baseline: Result | None) -> str:
    if baseline is None:
        return "No single UPDATE in this run: add single-update to --strategies for the ratios."
    return (
        f"One UPDATE (the throughput baseline, with the writer alone): {baseline.seconds:.2f} s,"
        f" {baseline.rows_per_second:,.0f} rows/s."
    )


def _p99(phase: Phase, idle: dict[str, float]) -> str:
    p99 = phase.writer_ms["p99"]
    ratio = f"{p99 / idle['p99']:.2f}x" if idle["p99"] else "n/a"
    return f"{p99:.1f} ({ratio})"


# --- running and reporting ---------------------------------------------------------------------


def measure(connection: Connection, dsn: str, args: argparse.Namespace, name: str) -> Result:
    kind, strategy = STRATEGIES[name]
    create_table(connection, args.rows)
    with Writer(dsn, args.rows) as writer:
        wal_before, checkpoints_before = server_counters(connection)
        started = time.monotonic()
        done, longest, note = strategy(connection, args)
        ended = time.monotonic()
        wal_after, checkpoints_after = server_counters(connection)
    seconds = ended - started
    latencies = writer.window(started, ended)
    scope = done if name == "orm-loop" else args.rows
    if name == "orm-loop":  # extrapolate the sample to the whole table
        seconds, done = seconds * args.rows / done, args.rows
    data_ok = kind == "index" or wrong_rows(connection, scope) == 0
    return Result(
        name,
        kind,
        seconds,
        done,
        longest,
        latencies.stats_ms(),
        data_ok,
        note,
        wal_mb=(wal_after - wal_before) / 2**20,
        checkpoints=checkpoints_after - checkpoints_before,
    )


def idle_writer(dsn: str, args: argparse.Namespace) -> Latencies:
    """The writer on the scratch table with no migration running: the baseline."""
    with Writer(dsn, args.rows) as writer:
        started = time.monotonic()
        time.sleep(args.idle_seconds)
        ended = time.monotonic()
    return writer.window(started, ended)


def report(
    header: dict[str, Any], idle: dict[str, float], results: list[Result], plans: dict[str, str]
) -> str:
    baseline = next((r for r in results if r.strategy == "single-update"), None)
    lines = [
        f"# Migration benchmark: {header['rows']:,} rows",
        "",
        f"PostgreSQL {header['postgresql']} · {header['cores']} cores · batch size"
        f" {header['batch_size']} · {header['date']}",
        "",
        "Each strategy starts on a fresh table"
        + (" after a CHECKPOINT." if header["checkpoint"] else " (no CHECKPOINT: not allowed)."),
        f"Writer with no migration running: p50 {idle['p50']:.1f} ms, p99 {idle['p99']:.1f} ms,"
        f" max {idle['max']:.1f} ms ({int(idle['writes'])} writes)",
        "",
        "| strategy | wall s | rows/s | x single UPDATE | longest tx ms | writer p50 / p99 / max ms"
        " | WAL MB | checkpoints | data | note |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | --- |",
    ]
    for r in (r for r in results if r.kind == "backfill"):
        ratio = r.rows_per_second / baseline.rows_per_second if baseline else float("nan")
        lines.append(
            f"| {r.strategy} | {r.seconds:.2f} | {r.rows_per_second:,.0f} | {ratio:.2f} |"
            f" {r.longest_transaction_s * 1000:.0f} | {_writer(r)} | {r.wal_mb:,.0f} |"
            f" {r.checkpoints} | {'ok' if r.data_ok else 'WRONG'} | {r.note} |"
        )
    indexes = [r for r in results if r.kind == "index"]
    if indexes:
        lines += ["", "| index build | build s | writer p50 / p99 / max ms | WAL MB | note |"]
        lines.append("| --- | ---: | --- | ---: | --- |")
        for r in indexes:
            lines.append(
                f"| {r.strategy} | {r.seconds:.2f} | {_writer(r)} | {r.wal_mb:,.0f} | {r.note} |"
            )
    by_name = {r.strategy: r for r in results}
    lines += ["", "Targets:", *targets(idle, by_name, rows=header["rows"])]
    for name, plan in plans.items():
        lines += ["", f"One {name} batch at the table's midpoint:", "", "```", plan, "```"]
    return "\n".join(lines) + "\n"


def _writer(result: Result) -> str:
    w = result.writer_ms
    return f"{w['p50']:.1f} / {w['p99']:.1f} / {w['max']:.1f}"


def _verdict(value: float, target: float, *, at_most: bool) -> str:
    met = value <= target if at_most else value >= target
    return "met" if met else f"MISSED by {abs(value - target):.2f}"


def targets(idle: dict[str, float], by_name: dict[str, Result], *, rows: int) -> list[str]:
    """The template's claims, checked against this run's figures, for each keyset variant."""
    lines = []
    single, loop = by_name.get("single-update"), by_name.get("limit-loop")
    budget_goal = 0.6 if rows >= 10_000_000 else 0.7  # while the writer's p99 stays within 2x
    goals = {"keyset-parallel": 1.3, "keyset-gentle": 0.5, "keyset-budget": budget_goal}
    for name in (
        "keyset-fixed",
        "keyset-adaptive",
        "keyset-parallel",
        "keyset-gentle",
        "keyset-budget",
    ):
        if (keyset := by_name.get(name)) is None:
            continue
        if single:
            ratio = keyset.rows_per_second / single.rows_per_second
            longest = keyset.longest_transaction_s * 1000
            goal = goals.get(name, 0.9)
            lines.append(
                f"- {name} throughput {ratio:.2f}x single UPDATE (target >= {goal}x):"
                f" {_verdict(ratio, goal, at_most=False)}; longest transaction {longest:.0f} ms"
                f" (target <= 200 ms): {_verdict(longest, 200, at_most=True)}"
            )
        if loop:
            speedup = keyset.rows_per_second / loop.rows_per_second
            lines.append(
                f"- {name} throughput {speedup:.2f}x the LIMIT loop's (target >= 10x at 10 M"
                f" rows): {_verdict(speedup, 10, at_most=False)}"
            )
        if idle["p99"]:
            ratio = keyset.writer_ms["p99"] / idle["p99"]
            extra = keyset.writer_ms["p99"] - idle["p99"]
            lines.append(
                f"- writer p99 during {name} {ratio:.2f}x idle, {extra:+.1f} ms (target <= 2x):"
                f" {_verdict(ratio, 2, at_most=True)}"
            )
    if concurrent := by_name.get("index-concurrent"):
        worst = concurrent.writer_ms["max"]
        plain = by_name.get("index-plain")
        stall = f"; plain CREATE INDEX: {plain.writer_ms['max']:.1f} ms" if plain else ""
        lines.append(
            f"- writer max during CREATE INDEX CONCURRENTLY {worst:.1f} ms (target <= 50 ms):"
            f" {_verdict(worst, 50, at_most=True)}{stall}"
        )
    return lines


def plot_refusal(args: argparse.Namespace) -> str | None:
    """Why ``--plot`` cannot draw, said before the benchmark runs rather than after; or None."""
    if not args.plot:
        return None
    if not args.output:
        return "--plot draws bench.png into the --output directory: add --output DIR"
    if args.scenario != "steady":
        return "--plot draws the steady scenario's results: leave it out with --scenario load-step"
    if bench_plot.matplotlib_missing():
        return (
            "--plot needs matplotlib, which alembic-pgsafe does not depend on: add it for the"
            " run, uv run --with matplotlib alembic-pgsafe bench ... --plot (a render's"
            ' make bench ARGS="... --plot" does)'
        )
    return None


def plot(document: dict[str, Any], path: Path) -> str:
    """bench.png from what bench.json holds, drawn by :mod:`alembic_pgsafe.bench_plot`."""
    bench_plot.plot(document, path)
    again = f"uv run --with matplotlib alembic-pgsafe bench-plot {path.with_suffix('.json')}"
    return f"plot written to {path} (to redraw it from the JSON: {again})"


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="alembic-pgsafe bench", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the scratch table")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=5000,
        help="rows per batch of keyset-fixed and the LIMIT loop",
    )
    parser.add_argument(
        "--strategies",
        help=f"comma-separated, from {', '.join(STRATEGIES)} (default: all of them)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="default: $DATABASE_URL (a render's make bench picks one)",
    )
    parser.add_argument("--output", type=Path, help="directory for bench.md and bench.json")
    parser.add_argument(
        "--plot",
        action="store_true",
        help="also bench.png in --output DIR, the results as small multiples (needs matplotlib:"
        " uv run --with matplotlib; a render's make bench adds it for the run)",
    )
    parser.add_argument(
        "--orm-sample",
        type=int,
        default=2000,
        help="rows the ORM loop updates before extrapolating",
    )
    parser.add_argument(
        "--target-ms",
        type=float,
        default=TARGET_BATCH_SECONDS * 1000,
        help="time each keyset-adaptive batch aims at (and keyset-budget's longest batch)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=DEFAULT_BUDGET,
        help="keyset-budget: commits may take this many times their latency before the backfill",
    )
    parser.add_argument(
        "--budget-min-rate",
        type=float,
        default=DEFAULT_MIN_RATE,
        help="keyset-budget: rows per second the budget never slows below (its floor; 0: none)",
    )
    parser.add_argument(
        "--scenario",
        choices=("steady", "load-step"),
        default="steady",
        help="load-step: the application's write rate steps up half-way through each backfill;"
        f" runs {','.join(STEP_STRATEGIES)} unless --strategies says otherwise",
    )
    parser.add_argument(
        "--step-writers",
        type=int,
        default=8,
        help="load-step: clients that join the writer at the step",
    )
    parser.add_argument(
        "--step-pause",
        type=float,
        default=0.001,
        help="load-step: seconds between two writes of each client that joins",
    )
    parser.add_argument(
        "--pause", type=float, default=0.0, help="seconds between keyset batches (throttling)"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="connections of keyset-parallel, one slice each"
    )
    parser.add_argument(
        "--idle-seconds", type=float, default=5.0, help="how long the writer is measured alone"
    )
    parser.add_argument(
        "--explain",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="EXPLAIN (ANALYZE, BUFFERS, WAL) one batch of each loop at the table's midpoint",
    )
    parser.set_defaults(on_progress=None)
    args = parser.parse_args(argv)
    if args.scenario == "load-step" and args.strategies is None:
        args.strategies = ",".join(STEP_STRATEGIES)
    args.strategies = [s.strip() for s in (args.strategies or ",".join(STRATEGIES)).split(",")]
    args.strategies = [s for s in args.strategies if s]
    if unknown := [s for s in args.strategies if s not in STRATEGIES]:
        parser.error(f"unknown strategies {unknown}; choose from {', '.join(STRATEGIES)}")
    steps = STEPPABLE | {"single-update"}
    if args.scenario == "load-step" and (others := [s for s in args.strategies if s not in steps]):
        parser.error(
            f"--scenario load-step steps up the load half-way through a backfill that reports its"
            f" progress: {others} do not; choose from {', '.join(sorted(steps))}"
        )
    if args.step_writers < 1 or args.step_pause < 0 or args.budget_min_rate < 0:
        parser.error("--step-writers must be positive, --step-pause and --budget-min-rate >= 0")
    if not args.database_url:
        parser.error("give --database-url or set DATABASE_URL (a render's make bench does)")
    if args.rows < 1 or args.batch_size < 1 or args.orm_sample < 1 or args.workers < 1:
        parser.error("--rows, --batch-size, --orm-sample and --workers must be positive")
    return args


def run(connection: Connection, dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    header = {
        "rows": args.rows,
        "batch_size": args.batch_size,
        "cores": os.cpu_count(),
        "postgresql": connection.execute(sa.text("SHOW server_version")).scalar_one(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    connection.commit()
    try:
        print("writer alone (no migration)...", file=sys.stderr)
        header["checkpoint"] = create_table(connection, args.rows)
        if args.scenario == "load-step":
            return run_step(connection, dsn, args, header)
        idle = idle_writer(dsn, args).stats_ms()
        results = []
        for name in args.strategies:
            print(f"{name}...", file=sys.stderr)
            results.append(measure(connection, dsn, args, name))
        plans = {}
        if args.explain:
            print("one batch of each loop, explained...", file=sys.stderr)
            plans = explain_batches(connection, args)
    finally:
        connection.rollback()
        items.drop(connection, checkfirst=True)
        connection.commit()
    return {"header": header, "idle": idle, "results": results, "plans": plans}


def run_step(
    connection: Connection, dsn: str, args: argparse.Namespace, header: dict[str, Any]
) -> dict[str, Any]:
    """``--scenario load-step``: the writer alone before and after the step, then each
    strategy with the step half-way through (one UPDATE without it: the baseline)."""
    header |= {"scenario": "load-step", "step_writers": args.step_writers}
    header["step_pause"] = args.step_pause
    idle = idle_step(dsn, args)
    results: list[Result] = []
    stepped: list[StepResult] = []
    for name in args.strategies:
        print(f"{name}...", file=sys.stderr)
        if name in STEPPABLE:
            stepped.append(measure_step(connection, dsn, args, name))
        else:
            results.append(measure(connection, dsn, args, name))
    return {"header": header, "idle": idle, "results": results, "stepped": stepped, "plans": {}}


def main(argv: Sequence[str]) -> int:
    args = parse(argv)
    if refusal := plot_refusal(args):
        print(refusal, file=sys.stderr)
        return 2
    url = to_asyncpg_url(args.database_url)
    # The writer's own asyncpg connection: a DSN with the URL's TLS parameters (sslmode...).
    dsn = database_target(url).asyncpg_arguments()["dsn"]

    async def go() -> dict[str, Any]:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(run, dsn, args)
        finally:
            await engine.dispose()

    outcome = asyncio.run(go())
    results: list[Result] = outcome["results"]
    stepped: list[StepResult] | None = outcome.get("stepped")
    if stepped is None:
        table = report(outcome["header"], outcome["idle"], results, outcome["plans"])
    else:
        baseline = next((r for r in results if r.strategy == "single-update"), None)
        table = report_step(outcome["header"], outcome["idle"], baseline, stepped)
    print(table)
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
        (args.output / "bench.md").write_text(table, encoding="utf-8")
        document = {
            "header": outcome["header"],
            "idle_writer_ms": outcome["idle"],
            "explained_batches": outcome["plans"],
            "results": [asdict(r) | {"rows_per_second": r.rows_per_second} for r in results],
        }
        if stepped is not None:
            before, after = outcome["idle"]
            document["idle_writer_ms"] = {"before_step": before, "after_step": after}
            document["load_step"] = [_stepped_json(r) for r in stepped]
        (args.output / "bench.json").write_text(json.dumps(document, indent=2), encoding="utf-8")
        if args.plot:
            print(plot(document, args.output / "bench.png"), file=sys.stderr)
    checked = [r.data_ok for r in results] + [r.data_ok for r in stepped or []]
    return 0 if all(checked) else 1


def _stepped_json(result: StepResult) -> dict[str, Any]:
    phases = {
        name: asdict(phase) | {"rows_per_second": phase.rows_per_second}
        for name, phase in (("before", result.before), ("after", result.after))
    }
    return asdict(result) | phases | {"rows_per_second": result.rows_per_second}
