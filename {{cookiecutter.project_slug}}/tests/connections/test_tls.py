"""TLS as managed providers hand it out, on a cluster of the test's own that accepts only TLS.

``sslmode=require`` and ``sslmode=verify-full`` with the test's CA: the app (its engine and
``/health``), Alembic and the backfill runner connect encrypted. ``verify-full`` to a host name
the certificate does not carry, a plain connection the server refuses, and a wrong password each
end in one line.
"""

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from sqlalchemy import URL, text

from {{ cookiecutter.project_slug }}.db.session import create_engine
from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.settings import PROJECT_ROOT, Settings

from tests.api.conftest import serve
from tests.connections.cluster import APP_PASSWORD, TlsCluster, tls_cluster

pytestmark = pytest.mark.slow

TOOLKIT = [sys.executable, "-m", "alembic_pgsafe"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[TlsCluster]:
    with tls_cluster() as cluster:
        yield cluster


def run(command: list[str], url: URL) -> subprocess.CompletedProcess[str]:
    rendered = url.render_as_string(hide_password=False)
    names = ("DATABASE_URL", "DATABASE_URL_FILE", "MIGRATIONS_DATABASE_URL", "DATABASE_POOLER")
    env = {key: value for key, value in os.environ.items() if key not in names}
    env |= {"DATABASE_URL": rendered, "MIGRATIONS_DATABASE_URL": rendered}
    return subprocess.run(
        command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def modes(cluster: TlsCluster) -> dict[str, URL]:
    return {
        "require": cluster.url("sslmode=require"),
        "verify-full": cluster.url(f"sslmode=verify-full&sslrootcert={cluster.ca}"),
    }


@pytest.mark.parametrize("mode", ["require", "verify-full"])
async def test_the_app_alembic_and_the_runner_connect_encrypted(
    cluster: TlsCluster, mode: str
) -> None:
    url = modes(cluster)[mode]
    settings = Settings(database_url=url.render_as_string(hide_password=False))
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            encrypted = (await connection.execute(text(query))).scalar_one()
    finally:
        await engine.dispose()

    migrated = run([sys.executable, "-m", "alembic", "upgrade", "head"], url)
    runner = run([*TOOLKIT, "backfill", "run"], url)
    async with serve(create_app(settings)) as client:
        health = await client.get("/health")

    assert encrypted is True
    assert migrated.returncode == 0, migrated.stderr
    assert runner.returncode == 0, runner.stderr
    assert health.status_code == 200, health.text
    assert health.json()["database"] == "ok"


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("host name not in the certificate", "the server's certificate was refused"),
        ("plain connection refused by the server", "accepts only encrypted connections"),
        ("wrong password", 'password authentication failed for user "app"'),
    ],
)
@pytest.mark.parametrize("command", ["alembic", "backfill"])
def test_each_tls_failure_is_one_line(
    cluster: TlsCluster, case: str, says: str, command: str
) -> None:
    url = {
        # The certificate names localhost; 127.0.0.1 is the same server under another name.
        "host name not in the certificate": cluster.url(
            f"sslmode=verify-full&sslrootcert={cluster.ca}", host="127.0.0.1"
        ),
        "plain connection refused by the server": cluster.url("sslmode=disable"),
        "wrong password": cluster.url("sslmode=require", user="app").set(password="wrong"),  # noqa: S106
    }[case]
    arguments = {"alembic": ["alembic", "current"], "backfill": ["backfill", "status"]}[command]
    executable = [sys.executable, "-m"] + (
        arguments if command == "alembic" else [TOOLKIT[-1], *arguments]
    )

    result = run(executable, url)

    said = (result.stdout + result.stderr).strip()
    assert result.returncode != 0
    assert len(said.splitlines()) == 1, said
    assert f"cannot connect to {url.username}@{url.host}:{cluster.port}/postgres" in said
    assert says in said
    assert "Traceback" not in said
    assert APP_PASSWORD not in said
