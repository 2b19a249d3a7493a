"""alembic-pgsafe trace: probes whose locks, hold times and rewrites are known; its exit codes."""

import asyncio
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import URL, text

from alembic_pgsafe.trace import (
    DEFAULT_MAX_LOCK_MS,
    GENERATED_ROWS_NOTE,
    Line,
    Trace,
    trace_revisions,
)
from tests.conftest import PROJECT, TOOLKIT, CreateDatabase, command_environment, connect
from tests.scratch import ScratchChain, scratch_chain

pytestmark = pytest.mark.slow  # a scratch database per trace

ITEMS = """
def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("amount", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("items")
"""
ADD_COLUMN_THEN_UPDATES = """
items = sa.table("items", sa.column("id"), sa.column("flag"))


def upgrade() -> None:
    op.add_column("items", sa.Column("flag", sa.Boolean(), nullable=True))
    op.execute(sa.select(sa.func.pg_sleep(0.3)))  # a slow batch, in the same transaction
    op.execute(sa.update(items).where(items.c.id <= 1000).values(flag=sa.true()))


def downgrade() -> None:
    op.drop_column("items", "flag")
"""
CONCURRENT_INDEX = """
def upgrade() -> None:
    create_index_concurrently("ix_items_name", "items", ["name"])


def downgrade() -> None:
    drop_index_concurrently("ix_items_name", "items")
"""
INTEGER_TO_BIGINT = """
def upgrade() -> None:
    op.alter_column("items", "amount", type_=sa.BigInteger())


def downgrade() -> None:
    op.alter_column("items", "amount", type_=sa.Integer())
"""
ROWS = 20_000


def traced(
    tmp_path: Path, url: URL, *bodies: str, max_lock_ms: float = DEFAULT_MAX_LOCK_MS
) -> tuple[ScratchChain, list[Trace]]:
    """Trace ``bodies`` (after ITEMS, applied) on a database at ``url``."""
    chain = scratch_chain(tmp_path, ITEMS, *bodies)
    chain.upgrade(url, chain.revisions[0])
    traces = trace_revisions(url, str(chain.alembic_ini), rows=ROWS, max_lock_ms=max_lock_ms)
    return chain, traces


def lines_on(trace: Trace, table: str) -> list[Line]:
    return [line for line in trace.lines if line.table == table]


def test_add_column_holds_access_exclusive_through_the_rest_of_its_transaction(
    create_database: CreateDatabase, tmp_path: Path
) -> None:
    _, [trace] = traced(tmp_path, create_database(), ADD_COLUMN_THEN_UPDATES, max_lock_ms=200)

    first, *rest = lines_on(trace, "items")
    assert first.statement.startswith("ALTER TABLE items ADD COLUMN flag")
    assert first.mode == "AccessExclusiveLock"
    assert first.held_ms >= 300  # through the sleep and the update, until the commit
    assert first.rows == ROWS
    assert not first.rewrite
    assert [(line.statement.split()[0], line.mode) for line in rest] == [
        ("UPDATE", "RowExclusiveLock")
    ]
    assert len(trace.failures) == 1
    assert "holds ACCESS EXCLUSIVE on items (20000 rows) for" in trace.failures[0]
    assert "over 200 ms" in trace.failures[0]


def test_a_concurrent_index_takes_share_update_exclusive_and_rewrites_nothing(
    create_database: CreateDatabase, tmp_path: Path
) -> None:
    _, [trace] = traced(tmp_path, create_database(), CONCURRENT_INDEX)

    [build] = lines_on(trace, "items")
    assert build.statement == "CREATE INDEX CONCURRENTLY ix_items_name ON items (name)"
    assert build.mode == "ShareUpdateExclusiveLock"
    assert not build.blocks_writes
    assert not build.rewrite
    assert trace.failures == []
    assert "| items | SHARE UPDATE EXCLUSIVE |" in trace.markdown()


def test_integer_to_bigint_rewrites_the_table(
    create_database: CreateDatabase, tmp_path: Path
) -> None:
    _, [trace] = traced(tmp_path, create_database(), INTEGER_TO_BIGINT)

    [change] = lines_on(trace, "items")
    assert change.mode == "AccessExclusiveLock"
    assert change.rewrite
    assert trace.failures == [f"{trace.file}: `{change.statement}` rewrites items ({ROWS} rows)"]


def run_trace(chain: ScratchChain, url: URL, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TOOLKIT, "trace", "--alembic-ini", str(chain.alembic_ini), "--rows", "1000", *args],
        cwd=PROJECT,
        env=command_environment(url),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_command_traces_what_is_not_applied_and_fails_on_a_rewrite(
    create_database: CreateDatabase, tmp_path: Path
) -> None:
    url = create_database()
    chain = scratch_chain(tmp_path, ITEMS, CONCURRENT_INDEX, INTEGER_TO_BIGINT)
    chain.upgrade(url, chain.revisions[1])

    pending = run_trace(chain, url)
    alone = run_trace(chain, url, "--rev", chain.revisions[1])
    chain.upgrade(url)
    nothing = run_trace(chain, url)

    assert pending.returncode == 1, pending.stderr
    assert "### 0003_scratch.py" in pending.stdout
    assert "### 0002_scratch.py" not in pending.stdout  # applied already
    assert "| items | ACCESS EXCLUSIVE |" in pending.stdout
    assert "TOO LONG: 0003_scratch.py: `ALTER TABLE items ALTER COLUMN amount TYPE BIGINT`" in (
        pending.stderr
    )
    assert alone.returncode == 0, alone.stderr
    assert "### 0002_scratch.py" in alone.stdout
    assert "| items | SHARE UPDATE EXCLUSIVE |" in alone.stdout
    assert nothing.returncode == 0, nothing.stderr
    assert "no revision to trace: the database is at head" in nothing.stdout


NOTES = """
def upgrade() -> None:
    op.create_table(
        "notes",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("body", sa.Text(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("notes")
"""
BARE_NOT_NULL = """
def upgrade() -> None:
    op.alter_column("notes", "body", nullable=False, server_default="")


def downgrade() -> None:
    op.alter_column("notes", "body", nullable=True, server_default=None)
"""


def test_a_not_null_the_old_rows_break_fails_in_the_trace_as_on_the_real_table(
    create_database: CreateDatabase, tmp_path: Path
) -> None:
    """The generated rows hold NULLs in nullable columns, as a real table does: the trial's
    SET DEFAULT + SET NOT NULL, green on rows without NULLs, fails here before production."""
    url = create_database()
    chain = scratch_chain(tmp_path, NOTES, BARE_NOT_NULL)
    chain.upgrade(url, chain.revisions[0])

    result = run_trace(chain, url)

    assert result.returncode == 1, result.stdout
    [said] = result.stderr.splitlines()
    assert said.startswith("trace: on the generated rows, "), said
    assert 'column "body" of relation "notes" contains null values' in said
    assert chain.revisions[1] in said
    assert "Traceback" not in result.stderr


def test_the_trace_says_what_generated_rows_cannot_show(
    create_database: CreateDatabase, tmp_path: Path
) -> None:
    url = create_database()
    chain = scratch_chain(tmp_path, ITEMS, CONCURRENT_INDEX)
    chain.upgrade(url, chain.revisions[0])

    result = run_trace(chain, url)

    assert result.returncode == 0, result.stderr
    assert GENERATED_ROWS_NOTE in result.stdout


async def trace_databases(server_url: URL) -> set[str]:
    async with connect(server_url) as connection:
        names = await connection.execute(
            text("SELECT datname FROM pg_database WHERE starts_with(datname, 'trace_')")
        )
        return set(names.scalars())


async def test_the_scratch_database_is_dropped_and_the_traced_one_untouched(
    create_database: CreateDatabase, tmp_path: Path, server_url: URL
) -> None:
    url = create_database()
    before = await trace_databases(server_url)

    chain, _ = await asyncio.to_thread(traced, tmp_path, url, CONCURRENT_INDEX)

    assert await trace_databases(server_url) == before
    async with connect(url) as connection:
        version = await connection.execute(text("SELECT version_num FROM alembic_version"))
        assert version.scalar() == chain.revisions[0]  # where it was: the trace ran elsewhere
        indexes = await connection.execute(
            text("SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_items_name'")
        )
        assert indexes.scalar() == 0
