"""TLS as managed providers hand it out, on a cluster of the test's own that accepts only TLS.

``sslmode=require`` and ``sslmode=verify-full`` with the test's CA: the app (its engine and
``/health``) connects encrypted to a database this service's migrations brought to head.
Alembic's and the backfill runner's TLS, and each TLS failure in one line, are proven in
alembic-pgsafe's own suite (tests/test_tls.py).
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
from tests.connections.cluster import TlsCluster, tls_cluster

pytestmark = pytest.mark.slow


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
async def test_the_app_connects_encrypted(cluster: TlsCluster, mode: str) -> None:
    url = modes(cluster)[mode]
    settings = Settings(database_url=url.render_as_string(hide_password=False))
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            encrypted = (await connection.execute(text(query))).scalar_one()
    finally:
        await engine.dispose()

    # /health is 200 only at the migrations' head.
    migrated = run([sys.executable, "-m", "alembic", "upgrade", "head"], url)
    async with serve(create_app(settings)) as client:
        health = await client.get("/health")

    assert encrypted is True
    assert migrated.returncode == 0, migrated.stderr
    assert health.status_code == 200, health.text
    assert health.json()["database"] == "ok"
