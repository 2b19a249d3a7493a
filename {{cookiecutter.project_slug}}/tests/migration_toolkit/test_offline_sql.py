"""Offline SQL a DBA can run: the batched backfill, run as plain SQL, equals the online run."""

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from pglast import split
from sqlalchemy import URL, text

from tests.conftest import connect
from tests.migration_toolkit.scratch import scratch_chain

pytestmark = pytest.mark.slow  # two databases and a psql-style script: make test-all
NAMES = ["Ada Lovelace", "!!!", "Ünïcode Ñame", "  Alan  Turing ", "O'Brien: the 2nd"]
ROWS = 1234
CHAIN = [
    """
def upgrade() -> None:
    op.create_table(
        "people",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("full_name", sa.Text, nullable=False),
        sa.Column("handle", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("people")
""",
    """
people = sa.table(
    "people",
    sa.column("id", sa.BigInteger),
    sa.column("full_name", sa.Text),
    sa.column("handle", sa.Text),
)
HANDLE = sa.func.lower(sa.func.regexp_replace(people.c.full_name, "[^a-zA-Z]+", ":", "g"))


def upgrade() -> None:
    backfill_in_batches(
        people,
        key=people.c.id,
        values={"handle": HANDLE + "-" + sa.cast(people.c.id, sa.Text)},
        pending=people.c.handle.is_(None),
        label="people.handle",
    )


def downgrade() -> None:
    pass
""",
]


async def seed(url: URL) -> None:
    async with connect(url) as connection:
        await connection.execute(
            text(
                "INSERT INTO people (full_name) SELECT (CAST(:names AS text[]))[1 + g % 5]"
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
        rows = await connection.execute(text("SELECT id, handle FROM people ORDER BY id"))
        version = await connection.execute(text("SELECT version_num FROM alembic_version"))
        return [(row.id, row.handle) for row in rows], str(version.scalar_one())


def test_offline_backfill_is_batched_and_gives_the_online_result(
    create_database: Callable[[], URL], tmp_path: Path
) -> None:
    chain = scratch_chain(tmp_path, *CHAIN)
    first, backfill = chain.revisions
    online, offline = create_database(), create_database()
    for url in (online, offline):
        chain.upgrade(url, first)
        asyncio.run(seed(url))

    span = f"{first}:{backfill}"
    rendered = chain.run("-x", "batch_size=100", "upgrade", span, "--sql", url=None)
    assert rendered.returncode == 0, rendered.stderr
    script = rendered.stdout
    asyncio.run(run_script(offline, script))
    applied = chain.run("upgrade", backfill, url=online)
    assert applied.returncode == 0, applied.stderr

    # Batches: a DO block committing per batch, outside the migration's transaction, and no
    # whole-table UPDATE at the top level. The colons in the values are not bind parameters.
    assert "DO $backfill$" in script
    assert script.count("COMMIT;\n        RAISE NOTICE") == 2  # the first batch, then the loop
    assert "LIMIT 100" in script
    do_block = script.index("DO $backfill$")
    assert script.rindex("COMMIT;", 0, do_block) > script.rindex("BEGIN;", 0, do_block)
    top_level = [s for s in split(script) if s.lstrip().upper().startswith("UPDATE PEOPLE")]
    assert top_level == []
    online_state = asyncio.run(table_state(online))
    offline_state = asyncio.run(table_state(offline))
    assert offline_state == online_state
    assert all(handle is not None for _, handle in offline_state[0])
    assert "o:brien:the:nd-4" in {handle for _, handle in offline_state[0]}
    assert offline_state[1] == backfill
