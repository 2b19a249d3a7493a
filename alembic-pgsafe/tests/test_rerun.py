"""A revision that fails after its helpers committed: the error says what stayed, and the
revision, fixed, runs again to head without doing any of it twice.

Helpers that build an index concurrently, validate a constraint or fill rows in batches commit
on their own (an autocommit block), and with the first of them the revision's transaction so
far. PostgreSQL rolls back only the rest. Here the revision adds a column, builds an index
concurrently, then adds a CHECK the rows break: ``alembic upgrade`` fails in one line that
names what stayed; the author puts the backfill the CHECK needed before it and runs the
upgrade again, which reaches head with the same index (the same storage: not rebuilt) and
the column added once.
"""

import asyncio
from asyncio.subprocess import PIPE, STDOUT

import pytest
from sqlalchemy import URL, text

from tests.conftest import CreateDatabase, connect
from tests.scratch import ScratchChain, scratch_chain

pytestmark = pytest.mark.slow  # the command line twice, on a table with rows

SCHEMA = """
def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("reference", sa.Text(), nullable=False),
    )
    op.execute(
        "INSERT INTO orders (reference) SELECT 'r-' || g FROM generate_series(1, 2000) AS g"
    )


def downgrade() -> None:
    op.drop_table("orders")
"""
FILL = """
    backfill_in_batches(
        orders,
        key=orders.c.id,
        values={"reference": sa.func.upper(orders.c.reference)},
        pending=orders.c.reference != sa.func.upper(orders.c.reference),
        label="orders.reference",
    )
"""
REVISION = """
orders = sa.table("orders", sa.column("id"), sa.column("reference"))


def upgrade() -> None:
    with_lock_retry(
        lambda: op.add_column("orders", sa.Column("code", sa.Text()), if_not_exists=True),
        table="orders",
    )
    create_index_concurrently("ix_orders_reference", "orders", ["reference"])
    # FILL
    add_check_constraint("ck_orders_reference_upper", "orders", "reference = upper(reference)")


def downgrade() -> None:
    op.drop_constraint("ck_orders_reference_upper", "orders")
    drop_index_concurrently("ix_orders_reference", "orders")
    op.drop_column("orders", "code")
"""
STATE = """
SELECT
    (SELECT count(*) FROM information_schema.columns
     WHERE table_name = 'orders' AND column_name = 'code') AS code_columns,
    (SELECT relfilenode FROM pg_class WHERE relname = 'ix_orders_reference') AS index_storage,
    (SELECT indisvalid FROM pg_index
     WHERE indexrelid = to_regclass('ix_orders_reference')) AS index_valid,
    (SELECT oid FROM pg_constraint WHERE conname = 'ck_orders_reference_upper') AS check_oid,
    (SELECT convalidated FROM pg_constraint
     WHERE conname = 'ck_orders_reference_upper') AS check_valid,
    (SELECT version_num FROM alembic_version) AS version
"""


async def state(url: URL) -> dict[str, object]:
    async with connect(url) as connection:
        row = (await connection.execute(text(STATE))).mappings().one()
    return dict(row)


async def test_a_failed_revision_says_what_stayed_and_runs_again_to_head(
    create_database: CreateDatabase, tmp_path: pytest.TempPathFactory
) -> None:
    url = create_database()
    chain: ScratchChain = scratch_chain(tmp_path, SCHEMA, REVISION)  # type: ignore[arg-type]
    first, second = chain.revisions

    failed = chain.run("upgrade", "head", url=url)

    assert failed.returncode != 0
    output = failed.stdout + failed.stderr  # Alembic prints FAILED: on stdout
    [said] = [line for line in output.splitlines() if line.startswith("FAILED:")]
    assert "ck_orders_reference_upper" in said, said
    assert (
        f"{second} had committed, and keeps: anything it ran before"
        " create_index_concurrently(ix_orders_reference);"
        " create_index_concurrently(ix_orders_reference);"
        " the rest was rolled back."
    ) in said, said
    assert "Traceback" not in failed.stderr
    after_failure = await state(url)
    assert after_failure["version"] == first
    assert after_failure["code_columns"] == 1  # committed with the index build
    assert after_failure["index_valid"] is True
    assert after_failure["check_oid"] is None  # taken back, as the error said

    revision = chain.alembic_ini.parent / "versions" / "0002_scratch.py"
    revision.write_text(revision.read_text().replace("    # FILL\n", FILL), encoding="utf-8")
    again = chain.run("upgrade", "head", url=url)

    assert again.returncode == 0, again.stderr
    at_head = await state(url)
    assert at_head["version"] == second
    assert at_head["code_columns"] == 1
    assert at_head["index_storage"] == after_failure["index_storage"]  # not built again
    assert at_head["check_valid"] is True


USERS_POSTS = """
def upgrade() -> None:
    op.create_table("users", sa.Column("id", sa.BigInteger(), primary_key=True))
    op.create_table(
        "posts",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
    )
    create_index_concurrently("ix_posts_user_id", "posts", ["user_id"])


def downgrade() -> None:
    op.drop_table("posts")
    op.drop_table("users")
"""
FOREIGN_KEY = """
def upgrade() -> None:
    add_foreign_key("fk_posts_user_id_users", "posts", "users", ["user_id"], ["id"])


def downgrade() -> None:
    op.drop_constraint("fk_posts_user_id_users", "posts")
"""
WAITING_ON_USERS = """
SELECT count(*) FROM pg_locks
WHERE relation = to_regclass('users') AND NOT granted AND pid <> pg_backend_pid()
"""


async def test_a_deadlock_with_the_application_is_retried_not_fatal(
    create_database: CreateDatabase, tmp_path: pytest.TempPathFactory
) -> None:
    """The foreign key locks posts, then users; the application's transaction holds users (it
    inserted a user) and then inserts a post. PostgreSQL cancels one of the two: the DDL step,
    which waited first. Its retry, once the application's transaction is done, succeeds."""
    url = create_database()
    chain: ScratchChain = scratch_chain(tmp_path, USERS_POSTS, FOREIGN_KEY)  # type: ignore[arg-type]
    await asyncio.to_thread(chain.upgrade, url, chain.revisions[0])
    command, env = chain.command_line("upgrade", "head", url=url)

    async with connect(url) as application, connect(url) as watcher:
        await application.execute(text("INSERT INTO users (id) VALUES (1)"))  # holds users
        migration = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=PIPE, stderr=STDOUT
        )
        for _ in range(200):  # until the foreign key waits for users
            if (await watcher.execute(text(WAITING_ON_USERS))).scalar():
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the migration never waited for users")
        await application.execute(text("INSERT INTO posts (id, user_id) VALUES (1, 1)"))
        await application.commit()
        output, _ = await asyncio.wait_for(migration.communicate(), timeout=120)

    said = output.decode()
    assert migration.returncode == 0, said
    assert "lock on posts not granted (attempt 1/" in said
    async with connect(url) as connection:
        version = await connection.execute(text("SELECT version_num FROM alembic_version"))
        assert version.scalar() == chain.revisions[1]
