"""The release still serving, derived from this service's schema, never from a list of tables.

Every revision is deployed in turn while the release before it keeps writing: a writer that
knows only the tables and columns the database had before that revision (read from the
database: ``alembic_pgsafe.testing``) inserts a row into each of them, with every column a row
must have, through the whole migration and once after it. None of its writes may fail. Your own
models and revisions are covered as you add them; a rename or a removal done the documented way
(MIGRATIONS.md) keeps this green, one that would break the running release fails it.
"""

import pytest
from alembic_pgsafe.testing import OldRelease, deploy_each_revision, old_release_writer
from sqlalchemy import URL

from {{ cookiecutter.project_slug }}.models import Base

from tests.conftest import CreateDatabase, connect, migrate, revisions, upgrade_as_deploys_do

pytestmark = pytest.mark.slow  # every revision applied under a live writer: make test-all


def deploy_to(url: URL, revision: str) -> None:
    """``alembic upgrade <revision>``, with the backfills a revision requires run in between,
    as an operator does between two deploys."""
    upgrade_as_deploys_do(lambda: migrate(url, revision), url)


async def test_every_deploy_keeps_the_release_before_it_writing(
    create_database: CreateDatabase,
) -> None:
    url = create_database()

    steps = await deploy_each_revision(url, revisions(), lambda rev: deploy_to(url, rev))

    assert [str(step) for step in steps if step.report.failures] == []
    assert [step.revision for step in steps] == revisions()
    # The release deployed last writes too: into every table the models declare.
    async with connect(url) as connection:
        current = await connection.run_sync(OldRelease.of_database)
        await connection.run_sync(current.seed)
        await connection.commit()
    assert {table.name for table in current.tables} == set(Base.metadata.tables)
    async with old_release_writer(url, current.insert) as report:
        pass
    assert report.failures == [], report.summary()
