"""``make migrate`` says why it could not connect in one line (beside make's and localdb's own),
and never the password; with DATABASE_URL only in ``.env``, it migrates that database and starts
no embedded server.

``make migrate`` runs through scripts/localdb.py, as every make target that needs a database.
The commands it ends in (``alembic upgrade head`` through ``alembic_pgsafe.environment``,
``alembic-pgsafe backfill``, ``trace``...) and the connect timeout are proven in alembic-pgsafe's
own suite (tests/test_connections.py); here, what this service's Makefile and script add.
Each test runs make, localdb and alembic as processes of their own: slow, run by make test-all.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from alembic_pgsafe.connect import where
from sqlalchemy import URL, text

from {{ cookiecutter.project_slug }}.settings import PROJECT_ROOT

from tests.conftest import CreateDatabase, connect, revisions, run_blocking
from tests.servers import free_port

pytestmark = pytest.mark.slow

PASSWORD = "hunter2-not-a-real-secret"  # noqa: S105  # must never be printed
COMMANDS = {"make migrate": ["make", "--no-print-directory", "migrate"]}


def environment(**settings: str) -> dict[str, str]:
    """This process's environment without any database setting, plus ``settings``."""
    names = ("DATABASE_URL", "DATABASE_URL_FILE", "MIGRATIONS_DATABASE_URL", "DATABASE_POOLER")
    env = {key: value for key, value in os.environ.items() if key not in names}
    return env | settings


def run(command: list[str], url: str, **settings: str) -> subprocess.CompletedProcess[str]:
    # MIGRATIONS_DATABASE_URL too: a .env in the checkout must not name another database.
    env = environment(DATABASE_URL=url, MIGRATIONS_DATABASE_URL=url, **settings)
    return subprocess.run(
        command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def assert_one_readable_line(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    said = (result.stdout + result.stderr).strip()
    assert result.returncode != 0, said
    # make's own lines aside (the recipe it echoes, its "Error 1"): localdb's line and ours.
    ours = [line for line in said.splitlines() if not _from_make(line)]
    assert len([line for line in ours if not line.startswith("localdb: ")]) == 1, said
    assert "Traceback" not in said
    assert PASSWORD not in said
    for part in expected:
        assert part in said
    return said


def _from_make(line: str) -> bool:
    """``make: *** ...`` (``make[1]: ...`` under another make) or the recipe make echoes."""
    return re.match(r"make(\[\d+\])?: ", line) is not None or "scripts/localdb.py --" in line


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


@pytest.mark.parametrize("case", ["unknown host", "missing database", "missing role"])
@pytest.mark.parametrize("command", COMMANDS)
def test_each_bad_url_is_one_line_from_every_command(
    server_url: URL, command: str, case: str
) -> None:
    url, says = bad_urls(server_url)[case]

    result = run(COMMANDS[command], url.render_as_string(hide_password=False))

    assert_one_readable_line(result, f"cannot connect to {where(url)}", says)


def test_make_migrate_migrates_the_database_dot_env_names(
    create_database: CreateDatabase, tmp_path: Path
) -> None:
    database = create_database()
    url = database.set(drivername="postgresql")
    (tmp_path / ".env").write_text(
        f"DATABASE_URL={url.render_as_string(hide_password=False)}\n", encoding="utf-8"
    )
    # make migrate's command, run where that .env is: the settings read it from there.
    command = [sys.executable, str(PROJECT_ROOT / "scripts" / "localdb.py"), "--"]
    command += ["alembic", "-c", str(PROJECT_ROOT / "alembic.ini"), "upgrade", "head"]

    result = subprocess.run(
        command, cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=300
    )

    assert result.returncode == 0, result.stderr
    first = result.stderr.splitlines()[0]
    assert first == f"localdb: the database in DATABASE_URL from .env: {where(url)}"
    assert "embedded" not in result.stderr
    assert not (tmp_path / ".localdb").exists()
    assert run_blocking(version_num(database)) == revisions()[-1]


async def version_num(url: URL) -> str:
    async with connect(url) as connection:
        return str(
            (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        )
