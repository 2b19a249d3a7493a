"""TLS as managed providers hand it out, on a cluster of the test's own that accepts only TLS.

``sslmode=require`` and ``sslmode=verify-full`` with the test's CA: the toolkit's engine
(``alembic_pgsafe.connect.create_engine``), Alembic (through ``alembic_pgsafe.environment``, in
the fixture project) and the backfill runner connect encrypted. ``verify-full`` to a host name
the certificate does not carry, a plain connection the server refuses, and a wrong password each
end in one line.
"""

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from sqlalchemy import URL, text

from alembic_pgsafe.connect import create_engine
from tests.cluster import APP_PASSWORD, TlsCluster, tls_cluster
from tests.conftest import PROJECT, TOOLKIT

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
        command, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def modes(cluster: TlsCluster) -> dict[str, URL]:
    return {
        "require": cluster.url("sslmode=require"),
        "verify-full": cluster.url(f"sslmode=verify-full&sslrootcert={cluster.ca}"),
    }


@pytest.mark.parametrize("mode", ["require", "verify-full"])
async def test_the_engine_alembic_and_the_runner_connect_encrypted(
    cluster: TlsCluster, mode: str
) -> None:
    url = modes(cluster)[mode]
    engine = create_engine(url.render_as_string(hide_password=False))
    try:
        async with engine.connect() as connection:
            query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            encrypted = (await connection.execute(text(query))).scalar_one()
    finally:
        await engine.dispose()

    migrated = run([sys.executable, "-m", "alembic", "upgrade", "head"], url)
    runner = run([*TOOLKIT, "backfill", "run"], url)

    assert encrypted is True
    assert migrated.returncode == 0, migrated.stderr
    assert runner.returncode == 0, runner.stderr


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
    executable = {
        "alembic": [sys.executable, "-m", "alembic", "current"],
        "backfill": [*TOOLKIT, "backfill", "status"],
    }[command]

    result = run(executable, url)

    said = (result.stdout + result.stderr).strip()
    assert result.returncode != 0
    assert len(said.splitlines()) == 1, said
    assert f"cannot connect to {url.username}@{url.host}:{cluster.port}/postgres" in said
    assert says in said
    assert "Traceback" not in said
    assert APP_PASSWORD not in said
