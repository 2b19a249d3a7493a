"""The batched backfill lesson (revision 3): batches, uniqueness, resuming after a crash."""

import asyncio
import re
import signal
from collections.abc import Callable

import pytest
from sqlalchemy import URL, column, func, select, table, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from {{ cookiecutter.project_slug }}.models import slug_base

from tests.conftest import connect, migrate, revision_at
from tests.migrations.conftest import alembic_command, run_alembic

pytestmark = pytest.mark.slow  # alembic runs killed and resumed: make test-all
ROWS = 1000
BATCH = 7
NAMES = ["Ada Lovelace", "ada lovelace", "Grace Hopper", "!!!", "Ünïcode Ñame", "  Alan  Turing "]
users = table("users", column("id"), column("full_name"), column("email"), column("slug"))


@pytest.fixture
def database_before_backfill(create_database: Callable[[], URL]) -> URL:
    """A database at revision 2 (slug column added, empty) holding ROWS users."""
    url = create_database()
    migrate(url, revision_at(1))
    asyncio.run(_seed(url))
    return url


async def _seed(url: URL) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        rows = [
            {"email": f"user{i}@example.com", "full_name": NAMES[i % len(NAMES)]}
            for i in range(ROWS)
        ]
        await connection.execute(users.insert(), rows)
    await engine.dispose()


async def slugs(url: URL) -> dict[int, str | None]:
    async with connect(url) as connection:
        rows = await connection.execute(select(users.c.id, users.c.slug).order_by(users.c.id))
        return {row.id: row.slug for row in rows}


def expected_slugs() -> dict[int, str]:
    return {i + 1: f"{slug_base(NAMES[i % len(NAMES)])}-{i + 1}" for i in range(ROWS)}


def test_backfill_in_batches_gives_every_user_a_unique_slug(database_before_backfill: URL) -> None:
    url = database_before_backfill
    result = run_alembic("-x", f"batch_size={BATCH}", "upgrade", revision_at(2), database_url=url)

    assert result.returncode == 0, result.stderr
    # The backfill's last line: every row, in 143 batches of at most 7.
    done = re.findall(r"users\.slug: (\d+) rows in [\d.]+ s \((\d+) batches\)", result.stderr)
    assert done == [(str(ROWS), str(-(-ROWS // BATCH)))]
    filled = asyncio.run(slugs(url))
    assert filled == expected_slugs()
    assert len(set(filled.values())) == ROWS


def test_backfill_rejects_a_bad_batch_size(database_before_backfill: URL) -> None:
    result = run_alembic(
        "-x", "batch_size=0", "upgrade", revision_at(2), database_url=database_before_backfill
    )

    assert result.returncode != 0
    assert "Invalid migration setting" in result.stderr
    assert "batch_size" in result.stderr


async def test_interrupted_backfill_resumes_to_the_same_result(
    database_before_backfill: URL,
) -> None:
    url = database_before_backfill
    locked_id = 500  # in the batch of ids 498..504: the 71 batches before it commit
    async with connect(url) as holder:
        await holder.execute(select(users.c.id).where(users.c.id == locked_id).with_for_update())
        command, env = alembic_command(
            "-x", f"batch_size={BATCH}", "upgrade", revision_at(2), database_url=url
        )
        migration = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        backend = await wait_for_backend_blocked_by(holder, migration)
        # Crash: the client dies, and so does its backend (a killed client's backend would
        # otherwise finish the statement it is running).
        migration.send_signal(signal.SIGKILL)
        await migration.wait()
        await holder.execute(select(func.pg_terminate_backend(backend)))
        await holder.rollback()

    after_crash = await slugs(url)
    assert sum(slug is not None for slug in after_crash.values()) == 71 * BATCH
    assert await current_revision(url) == revision_at(1)

    resumed = run_alembic("-x", f"batch_size={BATCH}", "upgrade", revision_at(2), database_url=url)

    assert resumed.returncode == 0, resumed.stderr
    assert f"users.slug: {ROWS - 71 * BATCH} rows in " in resumed.stderr  # only those left
    assert await slugs(url) == expected_slugs()


async def wait_for_backend_blocked_by(
    holder: AsyncConnection, migration: asyncio.subprocess.Process
) -> int:
    """The pid of the backend waiting for the holder's row lock (the migration's UPDATE)."""
    blocked = text(
        "SELECT pid FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))"
    )
    for _ in range(600):
        # pg_stat_activity is read once per transaction unless the snapshot is cleared.
        await holder.execute(select(func.pg_stat_clear_snapshot()))
        pid = (await holder.execute(blocked)).scalar()
        if pid is not None:
            return int(pid)
        assert migration.returncode is None, "the migration ended without reaching the lock"
        await asyncio.sleep(0.05)
    raise AssertionError("the migration never blocked on the locked row")


async def current_revision(url: URL) -> str:
    async with connect(url) as connection:
        version = await connection.execute(text("SELECT version_num FROM alembic_version"))
        return str(version.scalar_one())
