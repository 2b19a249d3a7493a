"""The keyset backfill runner: batches, adaptive size, and crash-safety under kill -9."""

import asyncio
import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import URL, Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from {{ cookiecutter.project_slug }}.db.backfill import KeysetBackfill, Progress

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

# The runner as a process of its own, so that it can be killed like a real deploy.
WORKER = """
import asyncio, logging, sys
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from {{ cookiecutter.project_slug }}.db.backfill import KeysetBackfill

logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
items = sa.table("backfill_items", sa.column("id"), sa.column("n"), sa.column("doubled"),
                 sa.column("visits"))

def run(connection):
    KeysetBackfill(connection.execution_options(isolation_level="AUTOCOMMIT"), items,
                   items.c.id, {"doubled": items.c.n * 2, "visits": items.c.visits + 1},
                   items.c.doubled.is_(None), batch_size=25).run()

async def main():
    settings = {"application_name": "backfill-under-test"}
    engine = create_async_engine(sys.argv[1], connect_args={"server_settings": settings})
    async with engine.connect() as connection:
        await connection.run_sync(run)
    await engine.dispose()

asyncio.run(main())
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


@pytest.mark.slow  # kill -9, three times: make test-all
async def test_killed_runs_resume_and_process_every_row_exactly_once(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    worker = tmp_path / "backfill_worker.py"
    worker.write_text(WORKER, encoding="utf-8")
    url = engine.url.render_as_string(hide_password=False)
    seed = random.randrange(2**32)
    chooser = random.Random(seed)
    kills = 0
    for _ in range(3):
        kills += await run_and_kill_after(engine, [sys.executable, str(worker), url], chooser)

    partial = [doubled is not None for _, _, doubled, _ in await final_rows(engine)]
    finished = await asyncio.to_thread(
        subprocess.run, [sys.executable, str(worker), url], capture_output=True, check=False
    )

    assert finished.returncode == 0, finished.stderr
    assert kills == 3, f"seed {seed}: the worker finished before it could be killed"
    assert 0 < sum(partial) < ROWS, f"seed {seed}: the killed runs left {sum(partial)} rows done"
    rows = await final_rows(engine)
    assert [(row_id, n, doubled, visits) for row_id, n, doubled, visits in rows] == [
        (row_id, n, 2 * n, 1) for row_id, n, _, _ in rows
    ], f"seed {seed}"


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
