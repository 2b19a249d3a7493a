"""A constant default is catalog-only on PostgreSQL 11+; a volatile one rewrites the table."""

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import URL, Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

pytestmark = pytest.mark.slow  # a table of 50,000 rows rewritten: pytest -m slow
ROWS = 50_000


def storage(connection: Connection) -> tuple[int, int]:
    """The table's file node and size: a rewrite gives it a new file."""
    row = connection.execute(
        text("SELECT relfilenode, pg_relation_size(oid) FROM pg_class WHERE relname = 'parcels'")
    ).one()
    return int(row[0]), int(row[1])


def add_columns_and_measure(connection: Connection) -> dict[str, object]:
    connection.execute(
        text("CREATE TABLE parcels (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n int)")
    )
    fill = "INSERT INTO parcels (n) SELECT g FROM generate_series(1, :rows) AS g"
    connection.execute(text(fill), {"rows": ROWS})
    connection.commit()
    operations = Operations(MigrationContext.configure(connection))
    filled = storage(connection)

    status = sa.Column("status", sa.String(20), nullable=False, server_default="draft")
    operations.add_column("parcels", status)
    after_constant = storage(connection)
    stamped = sa.Column("stamped", sa.DateTime(timezone=True), server_default=sa.func.now())
    operations.add_column("parcels", stamped)
    after_stable = storage(connection)
    touched = sa.Column("touched", sa.Float, server_default=sa.func.random())
    operations.add_column("parcels", touched)
    after_volatile = storage(connection)

    counts = connection.execute(
        text(
            "SELECT count(*) FILTER (WHERE status = 'draft'),"
            " count(DISTINCT stamped), count(DISTINCT touched) FROM parcels"
        )
    ).one()
    connection.commit()
    return {
        "filled": filled,
        "after_constant": after_constant,
        "after_stable": after_stable,
        "after_volatile": after_volatile,
        "counts": tuple(counts),
    }


async def test_constant_default_rewrites_nothing_and_a_volatile_one_does(
    create_database: Callable[[], URL],
) -> None:
    engine = create_async_engine(create_database())
    try:
        async with engine.connect() as connection:
            seen = await connection.run_sync(add_columns_and_measure)
    finally:
        await engine.dispose()

    # NOT NULL DEFAULT 'draft' and DEFAULT now(): same file, same size, every row has the value.
    assert seen["after_constant"] == seen["filled"]
    assert seen["after_stable"] == seen["filled"]
    # DEFAULT random(): a new file, every row rewritten with a value of its own.
    assert seen["after_volatile"][0] != seen["filled"][0]  # type: ignore[index]
    assert seen["counts"] == (ROWS, 1, ROWS)
