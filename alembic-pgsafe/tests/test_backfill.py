"""The keyset backfill runner: batches, adaptive size, parallel workers, kill -9 safety."""

import asyncio
import os
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import URL, Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from alembic_pgsafe.backfill import (
    KeysetBackfill,
    ParallelKeysetBackfill,
    Progress,
    key_slices,
)
from tests.scratch import scratch_chain
from tests.servers import own_server

ROWS = 3000
metadata = sa.MetaData()
items = sa.Table(
    "backfill_items",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("doubled", sa.Integer),
    sa.Column("visits", sa.Integer, nullable=False, server_default="0"),
)

# The runner as a process of its own, so that it can be killed like a real deploy:
# python worker.py URL WORKERS BUDGET (1: one KeysetBackfill, with a latency budget unless
# BUDGET is "none"; more: a ParallelKeysetBackfill), its progress logged after every batch.
WORKER = """
import asyncio, logging, sys
import sqlalchemy as sa
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from alembic_pgsafe import backfill
KeysetBackfill, ParallelKeysetBackfill = backfill.KeysetBackfill, backfill.ParallelKeysetBackfill

logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
items = sa.table("backfill_items", sa.column("id"), sa.column("n"), sa.column("doubled"),
                 sa.column("visits"))
values = {"doubled": items.c.n * 2, "visits": items.c.visits + 1}
settings = {"application_name": "backfill-under-test"}
workers = int(sys.argv[2])
budget = None if sys.argv[3] == "none" else float(sys.argv[3])

def run(connection):
    KeysetBackfill(connection.execution_options(isolation_level="AUTOCOMMIT"), items,
                   items.c.id, values, items.c.doubled.is_(None), batch_size=25, budget=budget,
                   budget_min_rate=0,  # no floor: the budget's slow start leaves time to kill
                   connect_args={"server_settings": settings}, progress_seconds=0).run()

async def main():
    engine = create_async_engine(sys.argv[1], connect_args={"server_settings": settings})
    async with engine.connect() as connection:
        await connection.run_sync(run)
    await engine.dispose()

if workers == 1:
    asyncio.run(main())
else:
    ParallelKeysetBackfill(make_url(sys.argv[1]), items, items.c.id, values,
                           items.c.doubled.is_(None), workers=workers, batch_size=25,
                           connect_args={"server_settings": settings}, progress_seconds=0).run()
"""


@pytest.fixture
async def engine(create_database: Callable[[], URL]) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(create_database())
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
        await connection.execute(items.insert(), [{"n": n} for n in range(ROWS)])
    yield engine
    await engine.dispose()


def run_backfill(connection: Connection, /, **options: float) -> Progress:
    runner = KeysetBackfill(
        connection.execution_options(isolation_level="AUTOCOMMIT"),
        items,
        items.c.id,
        {"doubled": items.c.n * 2, "visits": items.c.visits + 1},
        items.c.doubled.is_(None),
        **options,  # type: ignore[arg-type]
    )
    return runner.run()


PARALLEL_REVISION = """
items = sa.table(
    "backfill_items", sa.column("id"), sa.column("n"), sa.column("doubled"), sa.column("visits")
)


def upgrade() -> None:
    backfill_in_batches(
        items,
        key=items.c.id,
        values={"doubled": items.c.n * 2, "visits": items.c.visits + 1},
        pending=items.c.doubled.is_(None),
        label="backfill_items.doubled",
        workers=2,
    )


def downgrade() -> None:
    \"\"\"Nothing to undo.\"\"\"
"""


async def make_key_uneven(engine: AsyncEngine) -> None:
    """Gaps, as in a table that has seen deletes: a wide hole and every seventh key missing."""
    async with engine.begin() as connection:
        gone = sa.or_(items.c.id.between(1200, 2400), items.c.id % 7 == 0)
        await connection.execute(items.delete().where(gone))


async def final_rows(engine: AsyncEngine) -> list[tuple[int, int, int | None, int]]:
    async with engine.connect() as connection:
        rows = await connection.execute(sa.select(items).order_by(items.c.id))
        return [(row.id, row.n, row.doubled, row.visits) for row in rows]


async def test_fixed_batches_fill_every_row_once(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        progress = await connection.run_sync(run_backfill, batch_size=128)

    assert progress.done == progress.total == ROWS
    assert progress.batches == -(-ROWS // 128)
    assert all(
        doubled == 2 * n and visits == 1 for _, n, doubled, visits in await final_rows(engine)
    )


async def test_batch_size_adapts_to_the_target_time(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        # An unreachable target: every batch halves the size down to the floor.
        shrinking = await connection.run_sync(
            run_backfill, batch_size=800, target_seconds=1e-9, min_size=50
        )

    assert shrinking.done == ROWS
    assert shrinking.batches > ROWS // 800 + 1  # more, smaller batches than fixed 800s


async def test_progress_reports_rows_rate_and_eta() -> None:
    line = Progress("t.col", total=200, done=50).line(batch_size=25)

    assert line.startswith("t.col: 50/200 rows (25.0%), ")
    assert "rows/s, ETA " in line
    assert line.endswith("next batch 25")


@pytest.mark.slow  # kill -9, three times: pytest -m slow
@pytest.mark.parametrize(
    ("workers", "budget"), [(1, "none"), (1, "2"), (2, "none"), (3, "none")], ids=str
)
async def test_killed_runs_resume_and_process_every_row_exactly_once(
    engine: AsyncEngine, tmp_path: Path, workers: int, budget: str
) -> None:
    worker = tmp_path / "backfill_worker.py"
    worker.write_text(WORKER, encoding="utf-8")
    command = [sys.executable, str(worker), engine.url.render_as_string(hide_password=False)]
    command += [str(workers), budget]
    await make_key_uneven(engine)
    seed = random.randrange(2**32)
    chooser = random.Random(seed)
    kills = 0
    for _ in range(3):
        kills += await run_and_kill_after(engine, command, chooser)

    partial = [doubled is not None for _, _, doubled, _ in await final_rows(engine)]
    finished = await asyncio.to_thread(subprocess.run, command, capture_output=True, check=False)

    assert finished.returncode == 0, finished.stderr
    assert kills == 3, f"seed {seed}: the worker finished before it could be killed"
    done = sum(partial)
    assert 0 < done < len(partial), f"seed {seed}: the killed runs left {done} rows done"
    rows = await final_rows(engine)
    assert [(row_id, n, doubled, visits) for row_id, n, doubled, visits in rows] == [
        (row_id, n, 2 * n, 1) for row_id, n, _, _ in rows
    ], f"seed {seed}"


@pytest.mark.parametrize("workers", [2, 3])
async def test_parallel_workers_fill_disjoint_slices_every_row_once(
    engine: AsyncEngine, workers: int
) -> None:
    await make_key_uneven(engine)
    runner = ParallelKeysetBackfill(
        engine.url,
        items,
        items.c.id,
        {"doubled": items.c.n * 2, "visits": items.c.visits + 1},
        items.c.doubled.is_(None),
        workers=workers,
        batch_size=100,
    )

    progress = await asyncio.to_thread(runner.run)

    rows = await final_rows(engine)
    assert progress.done == progress.total == len(rows)
    assert [(n, doubled, visits) for _, n, doubled, visits in rows] == [
        (n, 2 * n, 1) for _, n, _, _ in rows
    ]


async def test_a_migration_runs_the_workers_from_inside_alembics_event_loop(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    await make_key_uneven(engine)
    chain = scratch_chain(tmp_path, PARALLEL_REVISION)

    await asyncio.to_thread(chain.upgrade, engine.url)

    rows = await final_rows(engine)
    assert [(doubled, visits) for _, _, doubled, visits in rows] == [
        (2 * n, 1) for _, n, _, _ in rows
    ]


async def test_key_slices_are_disjoint_and_cover_every_key(engine: AsyncEngine) -> None:
    await make_key_uneven(engine)
    async with engine.connect() as connection:
        slices = await connection.run_sync(key_slices, items, items.c.id, 3)
        keys = (await connection.execute(sa.select(items.c.id))).scalars().all()

    assert len(slices) == 3
    assert slices[0][0] is None
    assert slices[-1][1] is None  # open: rows inserted during the run are in the last slice
    owners = [
        [
            i
            for i, (after, until) in enumerate(slices)
            if (after is None or key > after) and (until is None or key <= until)
        ]
        for key in keys
    ]
    assert all(len(owner) == 1 for owner in owners)


async def run_and_kill_after(
    engine: AsyncEngine, command: list[str], chooser: random.Random
) -> int:
    """Start the worker, kill -9 it after a random number of batches, and its backend too."""
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    process = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    assert process.stdout is not None
    batches_to_let_through = chooser.randint(1, 30)
    seen = 0
    while seen <= batches_to_let_through:
        line = await asyncio.wait_for(process.stdout.readline(), timeout=120)
        if not line:
            break
        seen += b" rows (" in line
    killed = process.returncode is None
    process.kill()
    await process.wait()
    # A killed client's backend would finish the statement it runs: end it as well.
    async with engine.connect() as connection:
        await connection.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'backfill-under-test'"
            )
        )
    return int(killed)


WAL_ROWS = 40_000
WAL_BUDGET_MB = 2
WAL_BUDGET_REVISIONS = (
    """
def upgrade() -> None:
    op.execute(
        "CREATE TABLE wal_items (id bigint PRIMARY KEY, note text NOT NULL, copied text)"
    )
    op.execute(
        "INSERT INTO wal_items (id, note) SELECT g, repeat('n', 200) || g"
        " FROM generate_series(1, WAL_ROWS) AS g"
    )


def downgrade() -> None:
    op.execute("DROP TABLE wal_items")
""".replace("WAL_ROWS", str(WAL_ROWS)),
    """
wal_items = sa.table("wal_items", sa.column("id"), sa.column("note"), sa.column("copied"))


def upgrade() -> None:
    backfill_in_batches(
        wal_items,
        key=wal_items.c.id,
        values={"copied": wal_items.c.note},
        pending=wal_items.c.copied.is_(None),
        label="wal_items.copied",
        batch_size=2000,
    )


def downgrade() -> None:
    \"\"\"Nothing to undo.\"\"\"
""",
)
WAL_POSITION = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"


@pytest.fixture
async def own_engine() -> AsyncIterator[AsyncEngine]:
    """An engine on a server of the test's own: the server-wide WAL position and commit latency
    the throttles read are the test's alone, whatever else writes to the shared server."""
    with own_server() as server:
        engine = create_async_engine(server.url())
        yield engine
        await engine.dispose()


@pytest.mark.slow  # seconds of pauses, by design: pytest -m slow
async def test_the_wal_budget_holds_the_backfill_to_its_rate(
    own_engine: AsyncEngine, tmp_path: Path
) -> None:
    engine = own_engine
    chain = scratch_chain(tmp_path, *WAL_BUDGET_REVISIONS)
    await asyncio.to_thread(chain.upgrade, engine.url, chain.revisions[0])
    async with engine.connect() as connection:
        before = (await connection.execute(sa.text(WAL_POSITION))).scalar_one()
    started = time.monotonic()

    budget = ["-x", f"max_wal_rate={WAL_BUDGET_MB}MB"]
    result = await asyncio.to_thread(chain.run, *budget, "upgrade", "head", url=engine.url)

    elapsed = time.monotonic() - started
    output = f"the runner's output:\n{result.stdout}\n{result.stderr}"
    assert result.returncode == 0, output
    async with engine.connect() as connection:
        written = (await connection.execute(sa.text(WAL_POSITION))).scalar_one() - before
        wrong = "SELECT count(*) FROM wal_items WHERE copied IS DISTINCT FROM note"
        assert (await connection.execute(sa.text(wrong))).scalar_one() == 0, output
    assert f"above the budget of {WAL_BUDGET_MB}MB/s" in result.stderr, output
    # The throttle lets a batch start only once the WAL before it is within the budget: the
    # run lasts at least the WAL written, less the last batch's and what came before the first
    # (1 MB is more than either here), divided by the rate. An unthrottled run takes ~0.3 s.
    megabytes = written / 1024 / 1024
    print(f"{megabytes:.1f} MB of WAL in {elapsed:.1f} s, budget {WAL_BUDGET_MB} MB/s")
    assert megabytes > 4 * WAL_BUDGET_MB, "too little WAL for the bound to mean anything"
    assert elapsed >= (megabytes - 1) / WAL_BUDGET_MB


# The budgeted runner as a process of its own, logging each change of pace:
# python budget_worker.py URL. Slow by design (small batches, a pause after each), so that the
# test can load the server and unload it while it runs.
BUDGET_WORKER = """
import asyncio, logging, sys
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from alembic_pgsafe.backfill import KeysetBackfill

logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
items = sa.table("backfill_items", sa.column("id"), sa.column("n"), sa.column("doubled"),
                 sa.column("visits"))

def run(connection):
    KeysetBackfill(connection.execution_options(isolation_level="AUTOCOMMIT"), items, items.c.id,
                   {"doubled": items.c.n * 2, "visits": items.c.visits + 1},
                   items.c.doubled.is_(None), label="backfill_items.doubled", batch_size=200,
                   target_seconds=0.05, min_size=20, max_size=1000, pause_seconds=0.005,
                   budget=2.0, log_batches=False).run()

async def main():
    engine = create_async_engine(sys.argv[1])
    async with engine.connect() as connection:
        await connection.run_sync(run)
    await engine.dispose()

asyncio.run(main())
"""
BUDGET_ROWS = 300_000
# The synthetic load: a few MB of WAL in each transaction, so that every other commit on the
# server waits for its flush, as under a burst of the application's writes.
LOAD = "INSERT INTO ballast SELECT g, repeat('x', 300) FROM generate_series(1, 10000) AS g"


async def run_load(engine: AsyncEngine, stop: asyncio.Event) -> int:
    transactions = 0
    async with engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        while not stop.is_set():
            await autocommit.execute(sa.text(LOAD))
            transactions += 1
    return transactions


async def next_line_with(process: asyncio.subprocess.Process, text: str, seen: list[str]) -> str:
    """The runner's next line that contains ``text`` (every line read is kept in ``seen``)."""
    assert process.stdout is not None
    while True:
        raw = await asyncio.wait_for(process.stdout.readline(), timeout=120)
        line = raw.decode()
        if not line:
            pytest.fail(f"the runner ended before saying {text!r}:\n" + "".join(seen))
        seen.append(line)
        if text in line:
            return line


@pytest.mark.slow  # a load on a server of its own, for seconds: pytest -m slow
async def test_the_latency_budget_slows_under_load_and_speeds_up_after_it(
    own_engine: AsyncEngine, tmp_path: Path
) -> None:
    engine = own_engine
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
        await connection.execute(sa.text("CREATE TABLE ballast (id int, note text)"))
        fill = sa.select(sa.func.generate_series(1, BUDGET_ROWS))
        await connection.execute(items.insert().from_select(["n"], fill))
    worker = tmp_path / "budget_worker.py"
    worker.write_text(BUDGET_WORKER, encoding="utf-8")
    url = engine.url.render_as_string(hide_password=False)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(worker),
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    seen: list[str] = []
    stop = asyncio.Event()
    try:
        await next_line_with(process, "before the backfill", seen)
        await asyncio.sleep(0.5)
        load = asyncio.create_task(run_load(engine, stop))
        loaded_at = len(seen)
        slower = await next_line_with(process, "slowing down", seen)
        await asyncio.sleep(1)  # long enough under the load for its pace to fall further
        stop.set()
        transactions = await load
        unloaded_at = len(seen)
        faster = await next_line_with(process, "speeding up", seen)
        assert await asyncio.wait_for(process.wait(), timeout=300) == 0, "".join(seen)
    finally:
        stop.set()
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.stdout is not None
    seen.append((await process.stdout.read()).decode())

    log = "".join(seen)
    print(log)
    assert transactions > 0
    assert "canary commits took over the budget" in slower, log
    assert seen.index(slower) >= loaded_at, log
    assert seen.index(faster) >= unloaded_at, log
    rows = await final_rows(engine)
    assert len(rows) == BUDGET_ROWS
    assert all(doubled == 2 * n and visits == 1 for _, n, doubled, visits in rows), log
