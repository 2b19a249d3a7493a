"""CHECK constraints of the models against the migrated schema (autogenerate cannot see them).

The models' schema is built by ``create_all`` in a scratch schema of a migrated database, and
the definitions PostgreSQL gives for both are compared: a CheckConstraint added, changed or
removed in a model without a revision fails here.
"""

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from sqlalchemy import URL, Connection, MetaData, text

from {{ cookiecutter.project_slug }}.migration_toolkit.backfill_jobs import JOBS_TABLE
from {{ cookiecutter.project_slug }}.models import Base

from tests.conftest import connect, migrate

MODELS_SCHEMA = "models_as_written"
Checks = dict[tuple[str, str], str]


def check_constraints(connection: Connection, schema: str) -> Checks:
    rows = connection.execute(
        text(
            "SELECT c.relname, k.conname, pg_get_constraintdef(k.oid) FROM pg_constraint AS k"
            " JOIN pg_class AS c ON c.oid = k.conrelid"
            " WHERE k.contype = 'c' AND k.connamespace = to_regnamespace(:schema)"
            " AND c.relname <> :toolkit_table"  # the jobs of schedule_backfill: no model
        ),
        {"schema": schema, "toolkit_table": JOBS_TABLE},
    )
    return {(row[0], row[1]): row[2] for row in rows}


def drift(connection: Connection, metadata: MetaData) -> dict[str, Checks]:
    """CHECK constraints only in the migrations, or only in (or different in) the models."""
    connection.execute(sa.schema.CreateSchema(MODELS_SCHEMA))
    try:
        as_written = connection.execution_options(schema_translate_map={None: MODELS_SCHEMA})
        metadata.create_all(as_written)
        migrated = check_constraints(connection, "public")
        modelled = check_constraints(connection, MODELS_SCHEMA)
    finally:
        connection.rollback()
    return {
        "only_in_migrations": {k: v for k, v in migrated.items() if modelled.get(k) != v},
        "only_in_models": {k: v for k, v in modelled.items() if migrated.get(k) != v},
    }


async def drift_at_head(url: URL, metadata: MetaData) -> dict[str, Checks]:
    async with connect(url) as connection:
        return await connection.run_sync(drift, metadata)


@pytest.fixture(scope="module")
def database_at_head(create_database: Callable[[], URL]) -> URL:
    url = create_database()
    migrate(url)
    return url


async def test_models_and_migrations_have_the_same_check_constraints(
    database_at_head: URL,
) -> None:
    found = await drift_at_head(database_at_head, Base.metadata)

    assert found == {"only_in_migrations": {}, "only_in_models": {}}


async def test_a_check_constraint_missing_from_the_migrations_is_caught(
    database_at_head: URL,
) -> None:
    models = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(models)
    sa.Table(
        "drift_probe",
        models,
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.CheckConstraint("id > 0", name="positive"),
    )

    found = await drift_at_head(database_at_head, models)

    assert found == {
        "only_in_migrations": {},
        "only_in_models": {("drift_probe", "ck_drift_probe_positive"): "CHECK ((id > 0))"},
    }
