import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from pytest_alembic.config import Config as PytestAlembicConfig
from sqlalchemy import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from {{ cookiecutter.project_slug }}.settings import PROJECT_ROOT

TOOLKIT = "alembic_pgsafe"


@pytest.fixture
def alembic_config() -> PytestAlembicConfig:
    return PytestAlembicConfig(config_options={"file": str(PROJECT_ROOT / "alembic.ini")})


@pytest.fixture
def alembic_engine(create_database: Callable[[], URL]) -> AsyncEngine:
    """pytest-alembic's tests each get an empty database of their own."""
    return create_async_engine(create_database(), poolclass=NullPool)


def alembic_command(
    *args: str, database_url: URL | None, alembic_ini: Path = PROJECT_ROOT / "alembic.ini"
) -> tuple[list[str], dict[str, str]]:
    """The alembic command line and its environment: DATABASE_URL set, or not at all."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "MIGRATIONS_DATABASE_URL"}
    }
    if database_url is not None:
        env["DATABASE_URL"] = database_url.render_as_string(hide_password=False)
    return [sys.executable, "-m", "alembic", "-c", str(alembic_ini), *args], env


def backfill_command(*args: str, database_url: URL) -> tuple[list[str], dict[str, str]]:
    """``make backfill`` (``run``) or ``make backfill-status`` (``status``) on ``database_url``."""
    _, env = alembic_command(database_url=database_url)
    return [sys.executable, "-m", TOOLKIT, "backfill", *args], env


def run_backfills(*args: str, database_url: URL) -> subprocess.CompletedProcess[str]:
    command, env = backfill_command(*args, database_url=database_url)
    return subprocess.run(
        command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def run_alembic(
    *args: str,
    database_url: URL | None,
    cwd: Path = PROJECT_ROOT,
    alembic_ini: Path = PROJECT_ROOT / "alembic.ini",
) -> subprocess.CompletedProcess[str]:
    command, env = alembic_command(*args, database_url=database_url, alembic_ini=alembic_ini)
    return subprocess.run(
        command,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
