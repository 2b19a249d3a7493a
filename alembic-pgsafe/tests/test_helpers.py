"""Unit tests of the migration helpers that need no Alembic run, on real PostgreSQL."""

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import URL, Connection, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from alembic_pgsafe.helpers import (
    MigrationSafetyError,
    add_check_constraint,
    add_unique_constraint,
    deploy_lock,
    deploy_lock_key,
    refuse_broken_concurrent_builds,
    set_timeouts,
)
from tests.scratch import scratch_chain


@pytest.fixture
async def engine(create_database: Callable[[], URL]) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(create_database())
    yield engine
    await engine.dispose()


@pytest.mark.parametrize("version", [(14, 0), (14, 3), (14, 3, 1)])
def test_index_builds_are_refused_on_postgresql_14_0_to_14_3(version: tuple[int, ...]) -> None:
    with pytest.raises(MigrationSafetyError, match=r"fixed in 14\.4"):
        refuse_broken_concurrent_builds(version)


@pytest.mark.parametrize("version", [(13, 9), (14, 4), (15, 0), (18, 1)])
def test_index_builds_are_allowed_elsewhere(version: tuple[int, ...]) -> None:
    refuse_broken_concurrent_builds(version)


def test_deploy_lock_key_is_stable_and_per_name() -> None:
    assert deploy_lock_key("a:alembic") == deploy_lock_key("a:alembic")
    assert deploy_lock_key("a:alembic") != deploy_lock_key("b:alembic")
    assert -(2**63) <= deploy_lock_key("a:alembic") < 2**63


def _timeouts_after_autocommit_statements(connection: Connection) -> tuple[str, str]:
    autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
    set_timeouts(autocommit, lock_timeout="1234ms", statement_timeout="42s")
    autocommit.execute(text("SELECT 1"))  # a later transaction of its own
    row = autocommit.execute(
        select(func.current_setting("lock_timeout"), func.current_setting("statement_timeout"))
    ).one()
    return row[0], row[1]


async def test_timeouts_hold_in_autocommit_mode(engine: AsyncEngine) -> None:
    # SET LOCAL would have lasted one statement here; the helper's settings stay.
    async with engine.connect() as connection:
        settings = await connection.run_sync(_timeouts_after_autocommit_statements)

    assert settings == ("1234ms", "42s")


async def test_a_second_deploy_waits_for_the_lock_then_gives_up_clearly(
    engine: AsyncEngine,
) -> None:
    key = deploy_lock_key("tests:alembic")

    def try_to_migrate(connection: Connection) -> None:
        with deploy_lock(connection, key, wait_seconds=0.5):
            raise AssertionError("the lock was granted twice")

    async with engine.connect() as first, engine.connect() as second:
        await first.execute(select(func.pg_advisory_lock(key)))
        with pytest.raises(MigrationSafetyError, match="another deploy held the migration lock"):
            await second.run_sync(try_to_migrate)
        in_transaction = await second.run_sync(lambda connection: connection.in_transaction())

    assert in_transaction is False  # nothing left open by the wait


async def test_deploy_lock_is_released_after_the_migration(engine: AsyncEngine) -> None:
    key = deploy_lock_key("tests:alembic")

    def migrate_then_report(connection: Connection) -> None:
        with deploy_lock(connection, key, wait_seconds=1):
            connection.execute(text("SELECT 1"))

    async with engine.connect() as first, engine.connect() as second:
        await first.run_sync(migrate_then_report)
        acquired = (await second.execute(select(func.pg_try_advisory_lock(key)))).scalar_one()

    assert acquired is True


def _unique_code_on_a_table_with_rows(connection: Connection) -> list[tuple[str, str]]:
    connection.execute(text("CREATE TABLE coupons (id bigint PRIMARY KEY, code text NOT NULL)"))
    connection.execute(
        text("INSERT INTO coupons SELECT g, 'c' || g FROM generate_series(1, 500) g")
    )
    connection.commit()  # the helper opens autocommit blocks: no transaction may be open
    context = MigrationContext.configure(connection)
    with Operations.context(context), context.begin_transaction():  # as in a migration
        add_unique_constraint("uq_coupons_code", "coupons", ["code"])
    rows = connection.execute(
        text(
            "SELECT c.contype::text, i.relname FROM pg_constraint AS c"
            " JOIN pg_class AS i ON i.oid = c.conindid WHERE c.conname = 'uq_coupons_code'"
        )
    )
    return [(row[0], row[1]) for row in rows]


async def test_unique_constraint_is_attached_to_a_concurrently_built_index(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as connection:
        constraint = await connection.run_sync(_unique_code_on_a_table_with_rows)
        await connection.commit()

        with pytest.raises(IntegrityError, match="uq_coupons_code"):
            await connection.execute(text("INSERT INTO coupons VALUES (501, 'c1')"))

    assert constraint == [("u", "uq_coupons_code")]


CHECK = "ck_coupons_percent_range"


def _check_on_coupons(connection: Connection) -> None:
    connection.commit()  # the helper opens autocommit blocks: no transaction may be open
    context = MigrationContext.configure(connection)
    with Operations.context(context), context.begin_transaction():
        add_check_constraint(CHECK, "coupons", "percent BETWEEN 0 AND 100")


async def test_check_constraint_that_fails_to_validate_leaves_nothing_behind(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as connection:
        await connection.execute(
            text("CREATE TABLE coupons (id bigint PRIMARY KEY, percent int NOT NULL)")
        )
        await connection.execute(
            text("INSERT INTO coupons SELECT g, g % 90 FROM generate_series(1, 500) g")
        )
        await connection.execute(text("UPDATE coupons SET percent = 150 WHERE id IN (7, 9)"))
        await connection.commit()

        with pytest.raises(MigrationSafetyError) as failure:
            await connection.run_sync(_check_on_coupons)
        left = await connection.execute(
            text("SELECT count(*) FROM pg_constraint WHERE conname = :name"), {"name": CHECK}
        )
        assert left.scalar_one() == 0
        await connection.execute(text("INSERT INTO coupons VALUES (501, 200)"))  # not refused
        await connection.execute(text("UPDATE coupons SET percent = 100 WHERE percent > 100"))
        await connection.commit()

        await connection.run_sync(_check_on_coupons)  # the same step, after the fix
        await connection.commit()
        with pytest.raises(IntegrityError, match=CHECK):
            await connection.execute(text("INSERT INTO coupons VALUES (502, 101)"))

    message = str(failure.value)
    assert "2 row(s) of coupons break CHECK (percent BETWEEN 0 AND 100)" in message
    assert "(for example the row with id=7)" in message
    assert "It was removed again: writes go on as before." in message


BUILD_WORKERS_REVISION = """
def upgrade() -> None:
    op.execute("CREATE TABLE wide (id bigint PRIMARY KEY, n integer NOT NULL)")
    op.execute("INSERT INTO wide SELECT g, g FROM generate_series(1, 1000) AS g")
    show = sa.text("SHOW max_parallel_maintenance_workers")
    before = op.get_bind().execute(show).scalar_one()
    create_index_concurrently("ix_wide_n", "wide", ["n"])
    after = op.get_bind().execute(show).scalar_one()
    if after != before:
        raise RuntimeError(f"max_parallel_maintenance_workers left at {after}, was {before}")


def downgrade() -> None:
    op.execute("DROP TABLE wide")
"""


@pytest.mark.parametrize("workers", ["0", "1"])
def test_index_build_workers_apply_to_the_build_alone(
    create_database: Callable[[], URL], tmp_path: Path, workers: str
) -> None:
    chain = scratch_chain(tmp_path, BUILD_WORKERS_REVISION)
    url = create_database()

    result = chain.run("-x", f"index_build_workers={workers}", "upgrade", "head", url=url)

    assert result.returncode == 0, result.stderr
    line = f"building ix_wide_n with max_parallel_maintenance_workers = {workers}"
    assert line in result.stderr
