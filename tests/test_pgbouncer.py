"""The rendered service behind a real PgBouncer in transaction mode: no 5xx under load.

Each test session starts its own PgBouncer (own ini, a free port, ``pool_mode = transaction``,
``default_pool_size = 10``, as the ``postgres`` user: it refuses root) in front of the test
server, and stops it by pid. The rendered app runs under uvicorn with ``DATABASE_URL`` through
the pooler, and 30 concurrent clients send 300 requests; the service's API tests run through
it too. Migrations through the pooler are refused with what to set, declared or not (then
found by two clients handed the same server session), and leave no session setting behind; through
MIGRATIONS_DATABASE_URL they run.
"""

import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from tests.conftest import Project, bake, free_port

CLIENTS = 30
REQUESTS = 300
POOL_SIZE = 10


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    pytest.fail(f"nothing listens on {port} after 20 s:\n{log.read_text(errors='replace')}")


@dataclass
class Pooler:
    port: int
    log: Path

    def url(self, direct_url: str) -> str:
        """``direct_url`` (a database on the test server), through this PgBouncer."""
        parts = urlsplit(direct_url)
        return parts._replace(netloc=f"postgres@127.0.0.1:{self.port}", query="").geturl()


@pytest.fixture(scope="session")
def pgbouncer(postgres_url: str) -> Iterator[Pooler]:
    binary = shutil.which("pgbouncer", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("pgbouncer is not installed (.ci/run installs it with apt-get)")
        pytest.skip("pgbouncer is not installed (optional here: apt-get install pgbouncer)")
    server = urlsplit(postgres_url)
    host = parse_qs(server.query).get("host", [server.hostname or "127.0.0.1"])[0]
    # Outside pytest's private temporary root: PgBouncer runs as another user.
    directory = Path(tempfile.mkdtemp(prefix="template-pgbouncer-"))
    as_user: dict[str, Any] = {}
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        as_user = {"user": "postgres"}
        os.chown(directory, pwd.getpwnam("postgres").pw_uid, -1)
    port = free_port()
    log = directory / "pgbouncer.log"
    (directory / "userlist.txt").write_text('"postgres" ""\n', encoding="utf-8")
    (directory / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={host} port={server.port or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {directory / 'userlist.txt'}\n"
        f"pool_mode = transaction\ndefault_pool_size = {POOL_SIZE}\nmax_client_conn = 500\n"
        f"logfile = {log}\npidfile = {directory / 'pgbouncer.pid'}\n",
        encoding="utf-8",
    )
    process = subprocess.Popen([binary, str(directory / "pgbouncer.ini")], **as_user)
    try:
        wait_for_port(port, process, log)
        yield Pooler(port, log)
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def service(cookies_session: Any, shared_env: dict[str, str]) -> Project:
    project = bake(cookies_session, shared_env, {"project_name": "Pooled Service"})
    assert project.run("uv", "sync", "--locked", "--quiet").returncode == 0
    return project


@dataclass
class Load:
    statuses: Counter[int]
    seconds: float
    log: str

    def summary(self) -> str:
        statuses = ", ".join(f"{count} x {code}" for code, count in sorted(self.statuses.items()))
        errors = self.log.count("prepared statement") + self.log.count("through a pooler")
        rate = sum(self.statuses.values()) / self.seconds
        took = f"{self.seconds:.2f} s ({rate:.0f} requests/s)"
        return f"{statuses} in {took}; {errors} log lines naming a prepared statement or a pooler"


def request(base: str, number: int, run: str) -> int:
    if number % 3 == 0:
        user = {"email": f"load-{run}-{number}@example.com", "full_name": f"Load {number}"}
        body = json.dumps(user)
        call = urllib.request.Request(
            f"{base}/users", data=body.encode(), headers={"Content-Type": "application/json"}
        )
    elif number % 3 == 1:
        call = urllib.request.Request(f"{base}/health")
    else:
        call = urllib.request.Request(f"{base}/users?limit=20")
    try:
        with urllib.request.urlopen(call, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def serve_under_load(service: Project, env: dict[str, str], tmp_path: Path) -> Load:
    """The app under uvicorn with ``env``; CLIENTS clients send REQUESTS requests to it."""
    port = free_port()
    log = tmp_path / "uvicorn.log"
    with log.open("wb") as output:
        command = ["uv", "run", "--no-sync", "uvicorn", f"{service.path.name}.main:app"]
        app = subprocess.Popen(
            [*command, f"--port={port}"],
            cwd=service.path,
            env=service.env | env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(port, app, log)
            base = f"http://127.0.0.1:{port}"
            run = uuid.uuid4().hex[:8]
            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=CLIENTS) as clients:
                statuses = Counter(clients.map(lambda n: request(base, n, run), range(REQUESTS)))
            seconds = time.monotonic() - started
        finally:
            app.terminate()
            app.wait(timeout=20)
    return Load(statuses, seconds, log.read_text(errors="replace"))


@pytest.fixture
def migrated(service: Project, create_database: Callable[[], str]) -> str:
    database = create_database()
    service.make("migrate", DATABASE_URL=database)
    return database


def test_the_app_behind_pgbouncer_answers_every_request(
    service: Project, pgbouncer: Pooler, migrated: str, tmp_path: Path
) -> None:
    pooled = {"DATABASE_URL": pgbouncer.url(migrated), "DATABASE_POOLER": "pgbouncer"}

    load = serve_under_load(service, pooled, tmp_path)

    print(f"DATABASE_POOLER=pgbouncer, {CLIENTS} clients: {load.summary()}")
    assert sum(load.statuses.values()) == REQUESTS
    assert set(load.statuses) == {200, 201}, (load.statuses, load.log[-3000:])
    assert "prepared statement" not in load.log


def test_without_the_pooler_setting_the_same_load_fails(
    service: Project, pgbouncer: Pooler, migrated: str, tmp_path: Path
) -> None:
    """The control: asyncpg's defaults behind transaction pooling break (what the setting fixes)."""
    load = serve_under_load(service, {"DATABASE_URL": pgbouncer.url(migrated)}, tmp_path)

    print(f"asyncpg defaults, {CLIENTS} clients: {load.summary()}")

    assert any(status >= 500 for status in load.statuses), load.statuses
    # Each failed request is a 503 whose one log line names the cause (asyncpg's prepared
    # statements on a server session another client was handed).
    assert "goes through a pooler in transaction mode" in load.log, load.log[-3000:]


def test_migrations_through_the_pooler_are_refused_with_what_to_set(
    service: Project, pgbouncer: Pooler, create_database: Callable[[], str]
) -> None:
    database = create_database()
    pooled = {"DATABASE_URL": pgbouncer.url(database), "DATABASE_POOLER": "pgbouncer"}

    refused = service.run("make", "migrate", **pooled)

    assert refused.returncode != 0
    assert "Set MIGRATIONS_DATABASE_URL to a direct connection" in refused.stderr
    direct = service.make("migrate", **pooled, MIGRATIONS_DATABASE_URL=database)
    assert "Running upgrade" in direct
    assert f"{service.run('uv', 'run', 'alembic', 'heads').stdout.split()[0]} (head)" in (
        service.make("current", MIGRATIONS_DATABASE_URL=database, **pooled)
    )


def server_defaults_seen_through(pooler: Pooler, database: str) -> set[tuple[str, str]]:
    """``lock_timeout`` and ``statement_timeout`` as every server session of the pool has them:
    as many clients at once as the pool has sessions, each in a transaction of its own."""
    pooled = pooler.url(database)
    clients = [psycopg.connect(pooled) for _ in range(POOL_SIZE)]
    try:
        seen = set()
        for client in clients:  # each holds its server session until it commits
            row = client.execute(
                "SELECT current_setting('lock_timeout'), current_setting('statement_timeout')"
            ).fetchone()
            assert row is not None
            seen.add((str(row[0]), str(row[1])))
        return seen
    finally:
        for client in clients:
            client.close()


@pytest.mark.parametrize("target", ["migrate", "backfill-status"])
def test_a_pooler_nobody_declared_is_refused_and_leaves_no_session_settings(
    service: Project, pgbouncer: Pooler, create_database: Callable[[], str], target: str
) -> None:
    database = create_database()
    undeclared = {"DATABASE_URL": pgbouncer.url(database), "DATABASE_POOLER": None}
    service.make("migrate", DATABASE_URL=database)  # so backfill-status has its table's schema

    refused = service.run("make", target, **undeclared)

    lines = refused.stderr.splitlines()
    said = [line for line in lines if not line.startswith(("make", "localdb"))]
    assert refused.returncode != 0
    assert len(said) == 1, refused.stderr
    assert "goes through a pooler in transaction mode" in said[0]
    assert "Set MIGRATIONS_DATABASE_URL to a direct connection" in said[0]
    assert "Traceback" not in refused.stdout + refused.stderr
    assert server_defaults_seen_through(pgbouncer, database) == {("0", "0")}


def test_the_services_api_tests_pass_through_pgbouncer(
    service: Project, pgbouncer: Pooler, postgres_url: str
) -> None:
    pooled = {"TEST_DATABASE_URL": pgbouncer.url(postgres_url), "DATABASE_POOLER": "pgbouncer"}

    # The fast ones: the slow app-role module migrates through TEST_DATABASE_URL, which a
    # transaction pooler rightly refuses (the test above proves that refusal).
    result = service.run(
        "uv", "run", "--no-sync", "pytest", "tests/api", "-q", "-m", "not slow", **pooled
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"^\d+ passed(, \d+ deselected)? in", result.stdout, re.MULTILINE), (
        result.stdout[-2000:]
    )
