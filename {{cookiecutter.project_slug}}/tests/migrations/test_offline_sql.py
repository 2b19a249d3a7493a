"""Offline SQL a DBA can run: the batched backfill, run as plain SQL, equals the online run."""

import asyncio
from collections.abc import Callable

from pglast import split
from sqlalchemy import URL, text

from tests.conftest import connect, migrate, revision_at
from tests.migrations.conftest import run_alembic

NAMES = ["Ada Lovelace", "!!!", "Ünïcode Ñame", "  Alan  Turing ", "O'Brien: the 2nd"]
ROWS = 1234


async def seed(url: URL) -> None:
    async with connect(url) as connection:
        await connection.execute(
            text(
                "INSERT INTO users (email, full_name)"
                " SELECT 'u' || g || '@example.com', (CAST(:names AS text[]))[1 + g % 5]"
                " FROM generate_series(1, :rows) AS g"
            ),
            {"names": NAMES, "rows": ROWS},
        )
        await connection.commit()


async def run_script(url: URL, script: str) -> None:
    """Each statement on its own in autocommit mode, as psql runs a file."""
    async with connect(url, isolation_level="AUTOCOMMIT") as connection:
        for statement in split(script):
            await connection.exec_driver_sql(statement)


async def table_state(url: URL) -> tuple[list[tuple[int, str]], str]:
    async with connect(url) as connection:
        rows = await connection.execute(text("SELECT id, slug FROM users ORDER BY id"))
        version = await connection.execute(text("SELECT version_num FROM alembic_version"))
        return [(row.id, row.slug) for row in rows], str(version.scalar_one())


def test_offline_backfill_is_batched_and_gives_the_online_result(
    create_database: Callable[[], URL],
) -> None:
    online, offline = create_database(), create_database()
    for url in (online, offline):
        migrate(url, revision_at(1))
        asyncio.run(seed(url))
    span = f"{revision_at(1)}:{revision_at(2)}"

    rendered = run_alembic("-x", "batch_size=100", "upgrade", span, "--sql", database_url=None)
    assert rendered.returncode == 0, rendered.stderr
    script = rendered.stdout
    asyncio.run(run_script(offline, script))
    applied = run_alembic("upgrade", revision_at(2), database_url=online)
    assert applied.returncode == 0, applied.stderr

    # Batches: a DO block committing per batch, outside the migration's transaction, and no
    # whole-table UPDATE of users at the top level.
    assert "DO $backfill$" in script
    assert script.count("COMMIT;\n        RAISE NOTICE") == 2  # the first batch, then the loop
    assert "LIMIT 100" in script
    do_block = script.index("DO $backfill$")
    assert script.rindex("COMMIT;", 0, do_block) > script.rindex("BEGIN;", 0, do_block)
    top_level = [s for s in split(script) if s.lstrip().upper().startswith("UPDATE USERS")]
    assert top_level == []
    online_state = asyncio.run(table_state(online))
    offline_state = asyncio.run(table_state(offline))
    assert offline_state == online_state
    assert all(slug is not None for _, slug in offline_state[0])
    assert offline_state[1] == revision_at(2)
