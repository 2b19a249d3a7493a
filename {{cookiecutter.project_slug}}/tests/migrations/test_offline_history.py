"""The service's own history as offline SQL a DBA runs: ``make sql`` applied by psql to a new
database reaches head in one run, every scheduled backfill recorded as finished (MIGRATIONS.md,
"Offline SQL for a DBA"). How the toolkit renders backfills offline is proved in alembic-pgsafe's
own tests; this proves the revisions this project ships."""

import asyncio
import io
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic_pgsafe.backfill_jobs import JOBS_TABLE, jobs
from sqlalchemy import URL, text

from tests.conftest import alembic_config, connect, revisions
from tests.servers import BIN


def psql(url: URL, script: str, directory: Path) -> subprocess.CompletedProcess[str]:
    """``psql -v ON_ERROR_STOP=1 -f upgrade.sql`` on ``url``."""
    path = directory / "upgrade.sql"
    path.write_text(script, encoding="utf-8")
    target = url.set(drivername="postgresql").render_as_string(hide_password=False)
    command = [
        str(BIN / "psql"),
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        target,
        "-f",
        str(path),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def offline_sql(span: str, config: Config) -> str:
    """``alembic upgrade <span> --sql``, run in process."""
    output = io.StringIO()
    config.output_buffer = output
    command.upgrade(config, span, sql=True)
    return output.getvalue()


async def fetch(url: URL, query: str | sa.Executable) -> list[tuple[object, ...]]:
    statement = text(query) if isinstance(query, str) else query
    async with connect(url) as connection:
        return [tuple(row) for row in await connection.execute(statement)]


def version(url: URL) -> str:
    return str(asyncio.run(fetch(url, "SELECT version_num FROM alembic_version"))[0][0])


def job_states(url: URL) -> dict[str, str]:
    """Each scheduled backfill's state; none when no revision ever scheduled one."""
    if asyncio.run(fetch(url, sa.select(sa.func.to_regclass(JOBS_TABLE))))[0][0] is None:
        return {}
    rows = asyncio.run(fetch(url, sa.select(jobs.c.name, jobs.c.state)))
    return {str(name): str(state) for name, state in rows}


def test_the_whole_chain_offline_reaches_head_on_a_new_database_in_one_run(
    create_database: Callable[[], URL], tmp_path: Path
) -> None:
    url = create_database()
    script = offline_sql("head", alembic_config())
    scheduled = re.findall(r"^-- Backfill '(.+)' is scheduled, not run", script, re.MULTILINE)

    applied = psql(url, script, tmp_path)

    assert applied.returncode == 0, applied.stderr
    assert version(url) == revisions()[-1]
    states = job_states(url)  # a squashed baseline inserts its jobs as they were: finished
    assert set(scheduled) <= set(states)
    assert set(states.values()) <= {"finished"}  # nothing left to fill
