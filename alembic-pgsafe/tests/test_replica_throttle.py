"""Backfills wait for a real streaming replica that falls behind, and never fail because of it.

Replay is paused on the standby (``pg_wal_replay_pause()``), so every batch the backfill
commits on the primary adds to the standby's lag until the throttle holds the next one.
"""

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_backfills
from tests.replica import ReplicaPair, streaming_replica
from tests.scratch import scratch_chain

pytestmark = pytest.mark.slow  # a primary, a standby and 200,000 rows: pytest -m slow
ROWS = 200_000
BACKFILL = """
items = sa.table("items", sa.column("id", sa.BigInteger), sa.column("v"), sa.column("w"))


def upgrade() -> None:
    backfill_in_batches(
        items,
        key=items.c.id,
        values={"w": items.c.v * 2},
        pending=items.c.w.is_(None),
        label="items.w",
        batch_size=5000,
    )


def downgrade() -> None:
    \"\"\"Nothing to undo.\"\"\"
"""


SCHEDULED = """
items = sa.table("items", sa.column("id", sa.BigInteger), sa.column("v"), sa.column("w"))


def upgrade() -> None:
    schedule_backfill(
        items,
        key=items.c.id,
        values={"w": items.c.v * 2},
        pending=items.c.w.is_(None),
        name="items.w",
        batch_size=5000,
    )


def downgrade() -> None:
    unschedule_backfill("items.w")
"""


@pytest.fixture(scope="module")
def replica() -> Iterator[ReplicaPair]:
    with streaming_replica() as pair:
        yield pair


@pytest.fixture
def items(replica: ReplicaPair, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database on the primary with ROWS rows to fill, replicated; replay then paused."""
    database = f"throttle_{request.node.name[-40:].lower()}".replace("[", "_").replace("]", "")
    replica.primary.psql(f'CREATE DATABASE "{database}"')
    replica.primary.psql(
        "CREATE TABLE items (id bigint PRIMARY KEY, v int NOT NULL, w int)", database
    )
    # Keys with gaps (every third), as a table that has seen deletes.
    fill = "INSERT INTO items (id, v) SELECT g * 3, g FROM generate_series(1, 200000) AS g"
    replica.primary.psql(fill, database)
    replica.wait_until_caught_up()
    replica.standby.psql("SELECT pg_wal_replay_pause()")
    try:
        yield database
    finally:
        replica.standby.psql("SELECT pg_wal_replay_resume()")


def pending(replica: ReplicaPair, database: str) -> int:
    return int(replica.primary.psql("SELECT count(*) FROM items WHERE w IS NULL", database))


def wrong(replica: ReplicaPair, database: str) -> int:
    check = "SELECT count(*) FROM items WHERE w IS DISTINCT FROM v * 2"
    return int(replica.primary.psql(check, database))


def test_the_backfill_pauses_while_the_replica_is_behind_and_goes_on_after_it_caught_up(
    replica: ReplicaPair,
    items: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MIGRATION_MAX_REPLICA_LAG", "2MB")
    caplog.set_level(logging.INFO, logger="alembic.backfill")
    chain = scratch_chain(tmp_path, BACKFILL)
    failures: list[BaseException] = []

    def migrate() -> None:
        try:
            chain.upgrade(replica.primary.url(items))
        except BaseException as exc:  # reported by the test below
            failures.append(exc)

    runner = threading.Thread(target=migrate)
    runner.start()
    deadline = time.monotonic() + 60
    while "paused:" not in caplog.text:
        assert runner.is_alive(), failures
        assert time.monotonic() < deadline, caplog.text
        time.sleep(0.05)
    left = pending(replica, items)
    behind = replica.bytes_behind()
    time.sleep(2)

    assert 0 < left < ROWS  # some batches ran, then it held
    assert pending(replica, items) == left  # not one batch while the replica is behind
    assert behind < 2 * 1024 * 1024 + 2 * 1024 * 1024  # the limit, plus at most one batch
    print(f"paused with {behind / 1024 / 1024:.2f} MB of WAL unreplayed (limit 2MB)")
    replica.standby.psql("SELECT pg_wal_replay_resume()")
    runner.join(timeout=120)
    assert not runner.is_alive()
    assert failures == []
    assert "going on after" in caplog.text
    assert pending(replica, items) == 0
    assert wrong(replica, items) == 0  # what one unthrottled UPDATE would have written


def test_a_replica_that_stays_behind_stops_the_backfill_resumably(
    replica: ReplicaPair, items: str, tmp_path: Path
) -> None:
    chain = scratch_chain(tmp_path, BACKFILL)
    url = replica.primary.url(items)
    limits = ["-x", "max_replica_lag=1MB", "-x", "max_replica_lag_wait=2"]

    stopped = chain.run(*limits, "upgrade", "head", url=url)

    said = stopped.stdout + stopped.stderr
    assert stopped.returncode != 0
    assert "FAILED: items.w: stopped: " in said
    assert "stayed more than 1MB behind for 2 s" in said
    assert "run the migration again once the replica has caught up" in said
    left = pending(replica, items)
    assert 0 < left < ROWS  # what was filled stays filled
    replica.standby.psql("SELECT pg_wal_replay_resume()")
    replica.wait_until_caught_up()
    resumed = chain.run(*limits, "upgrade", "head", url=url)
    assert resumed.returncode == 0, resumed.stderr
    assert f"items.w: {left} rows to fill" in resumed.stderr
    assert wrong(replica, items) == 0


def test_make_backfill_stops_resumably_while_the_replica_stays_behind(
    replica: ReplicaPair, items: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = replica.primary.url(items)
    scratch_chain(tmp_path, SCHEDULED).upgrade(url)
    monkeypatch.setenv("MIGRATION_MAX_REPLICA_LAG", "1MB")
    monkeypatch.setenv("MIGRATION_MAX_REPLICA_LAG_WAIT", "2")

    stopped = run_backfills("run", database_url=url)
    status = run_backfills("status", database_url=url)

    assert stopped.returncode == 1, stopped.stdout + stopped.stderr
    assert "items.w: paused: " in stopped.stdout
    assert stopped.stderr.startswith("backfill: items.w: stopped: ")
    assert "stayed more than 1MB behind for 2 s" in stopped.stderr
    left = pending(replica, items)
    assert 0 < left < ROWS  # what was filled stays filled
    assert status.stdout.startswith(f"items.w: stopped after {ROWS - left}/{ROWS} rows")
    assert status.stdout.rstrip().endswith("'alembic-pgsafe backfill run' resumes it")
    replica.standby.psql("SELECT pg_wal_replay_resume()")
    replica.wait_until_caught_up()

    resumed = run_backfills("run", database_url=url)

    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "items.w: resuming after key " in resumed.stdout
    assert f"items.w: finished, {ROWS} rows filled" in resumed.stdout
    assert wrong(replica, items) == 0
