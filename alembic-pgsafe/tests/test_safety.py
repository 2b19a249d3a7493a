"""The safety net of every migration, proved against real PostgreSQL and the real command line.

Deploy lock, lock timeouts with retries, concurrent index builds that fail and heal, sessions
idle in a transaction, timeouts in offline SQL. The revisions are a scratch chain of the
test's own (tests/scratch.py), run through the fixture project's env.py, so the proofs hold
whatever a project's own migrations are. No timing is asserted, only outcomes.
"""

import asyncio
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import URL, text

from tests.conftest import connect, run_alembic
from tests.scratch import ScratchChain, scratch_chain

pytestmark = pytest.mark.slow  # races, lock waits and failed builds: pytest -m slow

TABLES, LABEL, UNIQUE_CODE, OWNER = 0, 1, 2, 3  # places in the chain
CHAIN = [
    """
def upgrade() -> None:
    op.create_table("owners", sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True))
    op.create_table(
        "items",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("items")
    op.drop_table("owners")
""",
    """
def upgrade() -> None:
    with_lock_retry(lambda: op.add_column("items", sa.Column("label", sa.Text)), table="items")


def downgrade() -> None:
    with_lock_retry(lambda: op.drop_column("items", "label"), table="items")
""",
    """
def upgrade() -> None:
    create_index_concurrently("ix_items_code", "items", ["code"], unique=True)


def downgrade() -> None:
    drop_index_concurrently("ix_items_code", "items")
""",
    """
def upgrade() -> None:
    owner = sa.Column("owner_id", sa.BigInteger)
    with_lock_retry(lambda: op.add_column("items", owner, if_not_exists=True), table="items")
    create_index_concurrently("ix_items_owner_id", "items", ["owner_id"])
    add_foreign_key(
        "fk_items_owner_id_owners", "items", "owners", ["owner_id"], ["id"], ondelete="SET NULL"
    )


def downgrade() -> None:
    with_lock_retry(
        lambda: op.drop_constraint("fk_items_owner_id_owners", "items", type_="foreignkey"),
        table="items",
    )
    drop_index_concurrently("ix_items_owner_id", "items")
    with_lock_retry(lambda: op.drop_column("items", "owner_id"), table="items")
""",
]


@pytest.fixture
def chain(tmp_path: Path) -> ScratchChain:
    return scratch_chain(tmp_path, *CHAIN)


async def scalar(url: URL, sql: str) -> object:
    async with connect(url) as connection:
        return (await connection.execute(text(sql))).scalar()


async def execute(url: URL, *statements: str) -> None:
    async with connect(url) as connection:
        for statement in statements:
            await connection.execute(text(statement))
        await connection.commit()


async def alembic(chain: ScratchChain, *args: str, url: URL) -> tuple[int, str]:
    """Run alembic in a subprocess without blocking the event loop; return (code, output)."""
    command, env = chain.command_line(*args, url=url)
    process = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=300)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def current(url: URL) -> object:
    return await scalar(url, "SELECT version_num FROM alembic_version")


async def index_state(url: URL, name: str) -> bool | None:
    """True/False for a valid/invalid index of that name, None when there is none."""
    async with connect(url) as connection:
        result = await connection.execute(
            text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"),
            {"name": name},
        )
        valid = result.scalar()
    return None if valid is None else bool(valid)


@pytest.fixture
def items_before_code_index(chain: ScratchChain, create_database: Callable[[], URL]) -> URL:
    """A database just before the unique index on items.code, holding three items."""
    url = create_database()
    chain.upgrade(url, chain.revisions[LABEL])
    asyncio.run(
        execute(
            url,
            "INSERT INTO items (code, name) VALUES ('a', 'Ada'), ('b', 'Grace'), ('c', 'Alan')",
        )
    )
    return url


def test_eight_concurrent_deploys_all_succeed_and_migrate_once(
    chain: ScratchChain, create_database: Callable[[], URL]
) -> None:
    url = create_database()
    command, env = chain.command_line("upgrade", "head", url=url)
    processes = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(8)
    ]
    results = [(process.communicate(timeout=300), process.returncode) for process in processes]

    failures = "\n\n".join(err[-3000:] for (_, err), code in results if code != 0)
    assert [code for _, code in results] == [0] * 8, failures
    applied = [re.findall(r"Running upgrade \S* -> (\w+)", err) for (_, err), _ in results]
    # Each revision ran exactly once, in one deploy or another.
    assert sorted(revision for ran in applied for revision in ran) == sorted(chain.revisions)
    assert asyncio.run(current(url)) == chain.revisions[-1]


async def test_ddl_behind_a_held_lock_gives_up_naming_the_holder(
    chain: ScratchChain, create_database: Callable[[], URL]
) -> None:
    url = create_database()
    before, label = chain.revisions[TABLES], chain.revisions[LABEL]
    await asyncio.to_thread(chain.upgrade, url, before)
    async with connect(url) as holder:
        await holder.execute(text("LOCK TABLE items IN SHARE MODE"))
        holder_pid = (await holder.execute(text("SELECT pg_backend_pid()"))).scalar_one()

        code, output = await alembic(
            chain, "-x", "lock_timeout=100ms", "-x", "lock_attempts=3", "upgrade", label, url=url
        )

    assert code != 0
    assert len(re.findall(r"lock on items not granted \(attempt \d/3\)", output)) == 3
    assert "FAILED: could not lock items after 3 attempts (lock_timeout 100ms each)" in output
    assert f"pid {holder_pid} (idle in transaction, ShareLock)" in output
    assert "Traceback" not in output
    assert await current(url) == before
    columns = "SELECT count(*) FROM information_schema.columns WHERE table_name = 'items'"
    assert await scalar(url, columns) == 3  # id, code, name: no label

    # With the lock released, the same deploy goes through.
    assert (await alembic(chain, "upgrade", label, url=url))[0] == 0


async def test_failed_concurrent_index_is_left_invalid_and_healed_by_the_next_run(
    chain: ScratchChain, items_before_code_index: URL
) -> None:
    url = items_before_code_index
    unique_code = chain.revisions[UNIQUE_CODE]
    await execute(url, "UPDATE items SET code = 'duplicate' WHERE id IN (1, 2)")

    code, output = await alembic(chain, "upgrade", unique_code, url=url)

    assert code != 0
    assert "building ix_items_code concurrently failed" in output
    assert await index_state(url, "ix_items_code") is False  # INVALID, as PostgreSQL leaves it
    assert await current(url) == chain.revisions[LABEL]

    await execute(url, "UPDATE items SET code = 'fixed-' || id WHERE code = 'duplicate'")
    code, output = await alembic(chain, "upgrade", unique_code, url=url)

    assert code == 0, output
    assert "index ix_items_code is INVALID (a failed earlier build): rebuilding it" in output
    assert await index_state(url, "ix_items_code") is True
    assert await current(url) == unique_code


async def test_session_idle_in_transaction_makes_the_index_build_fail_fast(
    chain: ScratchChain, items_before_code_index: URL
) -> None:
    url = items_before_code_index
    async with connect(url, isolation_level="REPEATABLE READ") as idle:
        await idle.execute(text("SELECT count(*) FROM items"))  # holds a snapshot, then idles
        idle_pid = (await idle.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        await asyncio.sleep(1.5)  # idle for over a second: not merely between two statements

        code, output = await alembic(chain, "upgrade", chain.revisions[UNIQUE_CODE], url=url)

    assert code != 0
    assert "CREATE INDEX CONCURRENTLY would wait for sessions idle in a transaction" in output
    assert f"pid {idle_pid}: " in output
    assert await index_state(url, "ix_items_code") is None
    assert await current(url) == chain.revisions[LABEL]


async def test_migration_that_failed_half_way_is_simply_run_again(
    chain: ScratchChain, create_database: Callable[[], URL]
) -> None:
    url = create_database()
    before, owner = chain.revisions[UNIQUE_CODE], chain.revisions[OWNER]
    await asyncio.to_thread(chain.upgrade, url, before)
    async with connect(url, isolation_level="REPEATABLE READ") as idle:
        await idle.execute(text("SELECT 1"))  # a snapshot, and no lock on items
        await asyncio.sleep(1.5)

        code, output = await alembic(chain, "upgrade", owner, url=url)

    # The index build refused to start, after the new column had been committed.
    assert code != 0
    assert "not building ix_items_owner_id" in output
    assert await current(url) == before
    column = (
        "SELECT count(*) FROM information_schema.columns"
        " WHERE table_name = 'items' AND column_name = 'owner_id'"
    )
    assert await scalar(url, column) == 1

    code, output = await alembic(chain, "upgrade", owner, url=url)

    assert code == 0, output
    assert await current(url) == owner
    assert await index_state(url, "ix_items_owner_id") is True
    validated = "SELECT convalidated FROM pg_constraint WHERE conname = 'fk_items_owner_id_owners'"
    assert await scalar(url, validated) is True


async def test_valid_index_with_another_definition_is_refused(
    chain: ScratchChain, items_before_code_index: URL
) -> None:
    url = items_before_code_index
    await execute(url, "CREATE INDEX ix_items_code ON items (name)")

    code, output = await alembic(chain, "upgrade", chain.revisions[UNIQUE_CODE], url=url)

    assert code != 0
    assert "index ix_items_code exists with another definition" in output
    assert "CREATE INDEX ix_items_code ON public.items USING btree (name)" in output


def test_offline_sql_starts_with_the_timeouts() -> None:
    default = run_alembic("upgrade", "head", "--sql", database_url=None)
    custom = run_alembic(
        "-x",
        "lock_timeout=2s",
        "-x",
        "statement_timeout=1h",
        "upgrade",
        "head",
        "--sql",
        database_url=None,
    )

    assert default.returncode == 0, default.stderr
    assert "SET lock_timeout = '5s';" in default.stdout
    assert "SET statement_timeout = '10min';" in default.stdout
    assert "SET lock_timeout = '2s';" in custom.stdout
    assert "SET statement_timeout = '1h';" in custom.stdout


def test_a_bad_migration_setting_is_refused_before_anything_runs() -> None:
    result = run_alembic("-x", "lock_timeout=soon", "upgrade", "head", "--sql", database_url=None)

    assert result.returncode != 0
    assert "Invalid migration setting" in result.stderr
    assert "expected a PostgreSQL duration" in result.stderr


def test_a_misspelled_setting_is_refused_with_the_known_ones() -> None:
    result = run_alembic("-x", "lock_timout=1s", "upgrade", "head", "--sql", database_url=None)

    assert result.returncode != 0
    assert "Unknown -x setting(s): lock_timout." in result.stderr
    assert "Known: lock_timeout, statement_timeout," in result.stderr
    assert "batch_size" in result.stderr
