"""Every command line that connects says why it could not, in one line, and never the password.

Each bad URL goes through each command as a person runs it in a project (the fixture project,
as the working directory): ``alembic upgrade head`` (through ``alembic_pgsafe.environment``),
``alembic-pgsafe backfill run``, ``alembic-pgsafe backfill status`` and ``alembic-pgsafe
trace``. A host that accepts and never answers is given up on after DATABASE_CONNECT_TIMEOUT.
"""

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import URL

from alembic_pgsafe.connect import where
from tests.conftest import PROJECT, TOOLKIT
from tests.servers import free_port, silent_port

PASSWORD = "hunter2-not-a-real-secret"  # noqa: S105  # must never be printed
COMMANDS = {
    "alembic upgrade head": [sys.executable, "-m", "alembic", "upgrade", "head"],
    "alembic-pgsafe backfill run": [*TOOLKIT, "backfill", "run"],
    "alembic-pgsafe backfill status": [*TOOLKIT, "backfill", "status"],
    "alembic-pgsafe trace": [*TOOLKIT, "trace"],
}


def environment(**settings: str) -> dict[str, str]:
    """This process's environment without any database setting, plus ``settings``."""
    names = ("DATABASE_URL", "DATABASE_URL_FILE", "MIGRATIONS_DATABASE_URL", "DATABASE_POOLER")
    env = {key: value for key, value in os.environ.items() if key not in names}
    return env | settings


def run(command: list[str], url: str, **settings: str) -> subprocess.CompletedProcess[str]:
    # MIGRATIONS_DATABASE_URL too: a .env in the project must not name another database.
    env = environment(DATABASE_URL=url, MIGRATIONS_DATABASE_URL=url, **settings)
    return subprocess.run(
        command, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def assert_one_readable_line(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    said = (result.stdout + result.stderr).strip()
    assert result.returncode != 0, said
    assert len(said.splitlines()) == 1, said
    assert "Traceback" not in said
    assert PASSWORD not in said
    for part in expected:
        assert part in said
    return said


def bad_urls(server: URL) -> dict[str, tuple[URL, str]]:
    """Each bad URL on the test server, and what its line must say."""
    host, port = server.host or "127.0.0.1", server.port or 5432
    # Over TCP: an embedded server's URL may name its Unix socket folder (?host=...).
    url = server.set(drivername="postgresql", password=PASSWORD, host=host, port=port, query={})
    closed = free_port()
    return {
        "server down": (url.set(port=closed), "connection refused"),
        "unknown host": (url.set(host="no-such-host.invalid"), "does not resolve"),
        "missing database": (url.set(database="no_such_database"), "does not exist"),
        "missing role": (url.set(username="no_such_role"), 'role "no_such_role" does not exist'),
    }


@pytest.mark.parametrize("command", COMMANDS)
def test_a_server_that_is_down_is_one_line_from_every_command(
    server_url: URL, command: str
) -> None:
    url, says = bad_urls(server_url)["server down"]

    result = run(COMMANDS[command], url.render_as_string(hide_password=False))

    assert_one_readable_line(result, f"cannot connect to {where(url)}", says)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["unknown host", "missing database", "missing role"])
@pytest.mark.parametrize("command", COMMANDS)
def test_each_bad_url_is_one_line_from_every_command(
    server_url: URL, command: str, case: str
) -> None:
    url, says = bad_urls(server_url)[case]

    result = run(COMMANDS[command], url.render_as_string(hide_password=False))

    assert_one_readable_line(result, f"cannot connect to {where(url)}", says)


@pytest.mark.parametrize("command", ["alembic upgrade head", "alembic-pgsafe backfill run"])
def test_a_url_that_is_not_postgresql_is_refused_without_quoting_it(command: str) -> None:
    result = run(COMMANDS[command], f"mysql://app:{PASSWORD}@db/app")

    said = assert_one_readable_line(result, "DATABASE_URL", "got scheme 'mysql'")
    assert "mysql://" not in said


@pytest.fixture
def silent_host() -> Iterator[int]:
    with silent_port() as port:
        yield port


@pytest.mark.parametrize("command", ["alembic upgrade head", "alembic-pgsafe backfill run"])
def test_a_host_that_never_answers_is_given_up_on_within_the_connect_timeout(
    silent_host: int, command: str
) -> None:
    url = f"postgresql://app:{PASSWORD}@127.0.0.1:{silent_host}/app"

    started = time.monotonic()
    result = run(COMMANDS[command], url, DATABASE_CONNECT_TIMEOUT="1")
    seconds = time.monotonic() - started

    assert_one_readable_line(result, f"app@127.0.0.1:{silent_host}/app", "no answer in time")
    assert seconds < 15, f"{seconds:.1f} s: the 1 s connect timeout was not applied"
