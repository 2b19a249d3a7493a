"""The release still serving, derived from the schema: every deploy of the fixture project's
history keeps the previous release writing, a deploy that would break it is caught, and
add_not_null over a NULL takes its CHECK away again and says where."""

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import URL, text

from alembic_pgsafe.testing import OldRelease, deploy_each_revision, value_for
from tests.conftest import (
    ALEMBIC_INI,
    CreateDatabase,
    connect,
    migrate,
    revisions,
    run_alembic,
    upgrade_as_deploys_do,
)
from tests.scratch import scratch_chain

pytestmark = pytest.mark.slow  # each revision applied under a live writer


def deploys(url: URL, ini: Path = ALEMBIC_INI) -> Callable[[str], None]:
    """``alembic upgrade <revision>`` as a deploy runs it (scheduled backfills in between)."""

    def upgrade_to(revision: str) -> None:
        upgrade_as_deploys_do(lambda: migrate(url, revision, ini), url)

    return upgrade_to


async def scalar(url: URL, query: str) -> object:
    async with connect(url) as connection:
        return (await connection.execute(text(query))).scalar()


async def test_every_deploy_of_the_history_keeps_the_previous_release_writing(
    create_database: CreateDatabase,
) -> None:
    url = create_database()

    steps = await deploy_each_revision(url, revisions(), deploys(url))

    assert [str(step) for step in steps if step.report.failures] == []
    assert [step.revision for step in steps] == revisions()
    # Before the first deploy there is nothing to write; posts come with the last one.
    assert [step.tables for step in steps] == [[], ["users"], ["users"], ["users"], ["users"]]
    assert all(step.report.writes >= 2 for step in steps)  # before and after each deploy
    written = await scalar(url, "SELECT count(*) FROM users WHERE full_name IS NOT NULL")
    assert isinstance(written, int)
    assert written >= 2 * (len(steps) - 1)


async def test_a_deploy_that_breaks_the_previous_release_is_caught(
    create_database: CreateDatabase, tmp_path: Path
) -> None:
    chain = scratch_chain(
        tmp_path,
        """
def upgrade():
    op.create_table(
        "orders",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("customer", sa.Text, nullable=False),
    )


def downgrade():
    op.drop_table("orders")
""",
        # NOT NULL without a default: the release before it does not write the column.
        """
def upgrade():
    op.add_column("orders", sa.Column("total", sa.Integer, nullable=False, server_default="0"))
    op.alter_column("orders", "total", server_default=None)


def downgrade():
    op.drop_column("orders", "total")
""",
    )
    url = create_database()

    steps = await deploy_each_revision(url, chain.revisions, deploys(url, chain.alembic_ini))

    [first, second] = steps
    assert first.report.failures == []
    assert second.tables == ["orders"]
    assert second.report.failures, str(second)
    assert 'null value in column "total"' in second.report.failures[-1]


def test_values_fit_their_column_and_differ_per_write() -> None:
    table = sa.Table(
        "t",
        sa.MetaData(),
        sa.Column("code", sa.String(8), nullable=False),
        sa.Column("small", sa.SmallInteger, nullable=False),
        sa.Column("price", sa.Numeric(5, 2), nullable=False),
        sa.Column("state", sa.Enum("a", "b", name="state"), nullable=False),
    )
    codes = {value_for(table.c.code, n) for n in range(1, 50)}

    assert len(codes) == 49
    assert all(len(code) <= 8 for code in codes)
    assert value_for(table.c.small, 1_000_001) < 32_768
    assert value_for(table.c.price, 1_000_001) < 1000
    assert value_for(table.c.state, 3) in ("a", "b")
    release = OldRelease([table])
    assert set(release.insert(1)[0].compile().params) == {"code", "small", "price", "state"}


@pytest.fixture
def slugs_backfilled(create_database: CreateDatabase) -> URL:
    """A database at revision 3 (slugs filled, the fill trigger in place) with three users."""
    url = create_database()
    migrate(url, revisions()[0])
    asyncio.run(
        execute(
            url,
            "INSERT INTO users (email, full_name) VALUES"
            " ('a@example.com', 'A'), ('b@example.com', 'B'), ('c@example.com', 'C')",
        )
    )
    migrate(url, revisions()[2])
    return url


async def execute(url: URL, *statements: str) -> None:
    async with connect(url) as connection:
        for statement in statements:
            await connection.execute(text(statement))
        await connection.commit()


def test_add_not_null_over_a_null_removes_its_check_and_says_how_many_and_where(
    slugs_backfilled: URL,
) -> None:
    url = slugs_backfilled
    # Rows the trigger does not cover: a slug cleared by hand, one inserted with it disabled.
    asyncio.run(
        execute(
            url,
            "UPDATE users SET slug = NULL WHERE id = 2",
            "ALTER TABLE users DISABLE TRIGGER users_fill_slug",
        )
    )

    failed = run_alembic("upgrade", revisions()[3], database_url=url)

    output = failed.stdout + failed.stderr
    assert failed.returncode != 0
    assert "FAILED: 1 row(s) of users have slug NULL (for example the row with id=2)" in output
    assert "It was removed again: writes go on as before." in output
    assert "Then run the migration again." in output
    assert "Traceback" not in output
    constraint = "SELECT count(*) FROM pg_constraint WHERE conname = 'ck_users_slug_not_null'"
    assert asyncio.run(scalar(url, constraint)) == 0
    # Writers are unaffected: a row without a slug still goes in.
    asyncio.run(execute(url, "INSERT INTO users (email, full_name) VALUES ('d@x.org', 'D')"))
    assert asyncio.run(scalar(url, "SELECT version_num FROM alembic_version")) == revisions()[2]

    again = run_alembic("upgrade", revisions()[3], database_url=url)
    assert again.returncode != 0
    assert "2 row(s) of users have slug NULL" in again.stdout + again.stderr

    asyncio.run(
        execute(
            url,
            "UPDATE users SET slug = 'fixed-' || id WHERE slug IS NULL",
            "ALTER TABLE users ENABLE TRIGGER users_fill_slug",
        )
    )
    fixed = run_alembic("upgrade", revisions()[3], database_url=url)

    assert fixed.returncode == 0, fixed.stderr
    not_null = "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'users'::regclass"
    assert asyncio.run(scalar(url, f"{not_null} AND attname = 'slug'")) is True
    assert asyncio.run(scalar(url, constraint)) == 0
