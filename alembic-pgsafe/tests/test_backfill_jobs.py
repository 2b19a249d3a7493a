"""Post-deploy backfills: scheduled by a migration, run by `alembic-pgsafe backfill run` (a
render's `make backfill`), required later."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pglast import split
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import URL

from alembic_pgsafe.backfill_jobs import (
    JOBS_TABLE,
    jobs,
    status_lines,
)
from alembic_pgsafe.helpers import MigrationSafetyError
from tests.conftest import (
    PROJECT,
    backfill_command,
    connect,
    run_backfills,
    run_scheduled_backfills,
)
from tests.scratch import ScratchChain, scratch_chain
from tests.servers import free_port

JOB = "jobs_items.doubled"
TABLE = """
def upgrade() -> None:
    op.execute(
        "CREATE TABLE jobs_items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
        " n integer NOT NULL, doubled integer, visits integer NOT NULL DEFAULT 0)"
    )
    op.execute("INSERT INTO jobs_items (n) SELECT g FROM generate_series(1, ROWS) AS g")


def downgrade() -> None:
    op.execute("DROP TABLE jobs_items")
"""
SCHEDULE = """
items = sa.table(
    "jobs_items", sa.column("id"), sa.column("n"), sa.column("doubled"), sa.column("visits")
)


def upgrade() -> None:
    schedule_backfill(
        items,
        key=items.c.id,
        values={"doubled": items.c.n * 2, "visits": items.c.visits + 1},
        pending=items.c.doubled.is_(None),
        name="jobs_items.doubled",
        batch_size=BATCH_SIZE,
    )


def downgrade() -> None:
    unschedule_backfill("jobs_items.doubled")
"""
REQUIRE = """
def upgrade() -> None:
    require_backfill_finished("jobs_items.doubled")


def downgrade() -> None:
    \"\"\"Nothing to undo.\"\"\"
"""


def chain_of(directory: Path, rows: int, batch_size: int = 100) -> ScratchChain:
    """The table with ``rows`` rows, the revision that schedules its backfill, the one that
    requires it."""
    return scratch_chain(
        directory,
        TABLE.replace("ROWS", str(rows)),
        SCHEDULE.replace("BATCH_SIZE", str(batch_size)),
        REQUIRE,
    )


def sql(url: URL, query: str, **parameters: object) -> list[sa.Row[Any]]:
    async def run() -> list[sa.Row[Any]]:
        async with connect(url) as connection:
            result = await connection.execute(sa.text(query), parameters)
            rows = list(result.all()) if result.returns_rows else []
            await connection.commit()
            return rows

    return asyncio.run(run())


def run_in_process(url: URL) -> tuple[int, list[str]]:
    """``make backfill``, then ``make backfill-status``, in process."""

    async def status() -> list[str]:
        async with connect(url, isolation_level="AUTOCOMMIT") as connection:
            return await connection.run_sync(status_lines)

    return run_scheduled_backfills(url), asyncio.run(status())


def every_row_filled_once(url: URL) -> bool:
    wrong = sql(url, "SELECT count(*) FROM jobs_items WHERE doubled IS DISTINCT FROM 2 * n")
    twice = sql(url, "SELECT count(*) FROM jobs_items WHERE visits <> 1")
    return bool(wrong[0][0] == 0 and twice[0][0] == 0)


def job(url: URL) -> tuple[Any, ...]:
    """The job's state, last key and rows done."""

    async def read() -> tuple[Any, ...]:
        async with connect(url) as connection:
            query = sa.select(jobs.c.state, jobs.c.last_key, jobs.c.rows_done)
            return tuple((await connection.execute(query.where(jobs.c.name == JOB))).one())

    return asyncio.run(read())


def test_upgrade_schedules_require_refuses_until_the_backfill_ran(
    create_database: Callable[[], URL], tmp_path: Path
) -> None:
    url = create_database()
    chain = chain_of(tmp_path, rows=600)
    schedule = chain.revisions[1]

    chain.upgrade(url, schedule)

    # The deploy returned without filling a row: the job waits for `make backfill`.
    assert sql(url, "SELECT count(*) FROM jobs_items WHERE doubled IS NULL")[0][0] == 600
    assert job(url) == ("pending", None, 0)
    with pytest.raises(MigrationSafetyError) as refused:
        chain.upgrade(url)
    assert str(refused.value).startswith(
        f"backfill '{JOB}' is not finished (pending, not started). This revision relies on its"
        " data: run 'alembic-pgsafe backfill run' against this database"
    )
    assert sql(url, "SELECT version_num FROM alembic_version")[0][0] == schedule

    ran, status = run_in_process(url)

    assert ran == 1
    assert every_row_filled_once(url)
    assert job(url) == ("finished", "600", 600)
    assert status[0].startswith(f"{JOB}: finished, 600 rows, at ")
    chain.upgrade(url)  # now the requiring revision applies
    assert sql(url, "SELECT version_num FROM alembic_version")[0][0] == chain.revisions[-1]
    assert run_in_process(url)[0] == 0  # nothing left to run

    chain.downgrade(url)
    assert sql(url, "SELECT to_regclass(:t) IS NULL", t=JOBS_TABLE)[0][0] is True


def test_nothing_pending_is_finished_at_once_and_head_applies_in_one_go(
    create_database: Callable[[], URL], tmp_path: Path
) -> None:
    url = create_database()
    chain = chain_of(tmp_path, rows=0)

    chain.upgrade(url)

    assert job(url) == ("finished", None, 0)
    assert run_in_process(url)[1][0].startswith(f"{JOB}: finished, 0 rows, at ")


def test_require_names_a_job_never_scheduled(
    create_database: Callable[[], URL], tmp_path: Path
) -> None:
    url = create_database()
    chain = scratch_chain(tmp_path, REQUIRE)

    with pytest.raises(MigrationSafetyError, match="was never scheduled in this database"):
        chain.upgrade(url)


def test_command_line_without_jobs_and_with_an_unknown_name(
    create_database: Callable[[], URL],
) -> None:
    url = create_database()

    status = run_backfills("status", database_url=url)
    unknown = run_backfills("run", "nope", database_url=url)

    assert status.returncode == 0, status.stderr
    assert status.stdout == "no backfill was ever scheduled in this database\n"
    assert unknown.returncode == 0, unknown.stderr
    assert "no backfill was ever scheduled in this database" in unknown.stdout


COMMAND_LINES = "alembic-pgsafe backfill run, alembic-pgsafe backfill status"


@pytest.mark.parametrize(
    ("runtime", "project", "named"),
    [
        (None, "", "alembic-pgsafe backfill run, alembic-pgsafe backfill status"),
        (None, "Makefile", "make backfill, make backfill-status"),
        (
            None,
            "Makefile, commands = cli",
            "alembic-pgsafe backfill run, alembic-pgsafe backfill status",
        ),
        ("image", "Makefile", "docker run <image> backfill, docker run <image> backfill-status"),
    ],
)
def test_messages_name_the_command_that_works_where_they_are_printed(
    runtime: str | None, project: str, named: str, tmp_path: Path
) -> None:
    """A plain Alembic project gets the command lines; one with a Makefile (a template's
    render), its targets, unless the ``commands`` setting says otherwise; the image (its
    Dockerfile sets SERVICE_RUNTIME=image), its own commands."""
    env = {key: value for key, value in os.environ.items() if key != "SERVICE_RUNTIME"}
    if runtime is not None:
        env["SERVICE_RUNTIME"] = runtime
    if "Makefile" in project:
        (tmp_path / "Makefile").write_text("backfill:\n\techo\n", encoding="utf-8")
    if "commands = cli" in project:
        table = '[tool.alembic-pgsafe]\ncommands = "cli"\n'
        (tmp_path / "pyproject.toml").write_text(table, encoding="utf-8")
    module = "alembic_pgsafe.backfill_jobs"
    show = f"from {module} import RUN_COMMAND, STATUS_COMMAND as S; print(RUN_COMMAND, S, sep=', ')"

    said = subprocess.run(
        [sys.executable, "-c", show],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    assert said.strip() == named


@pytest.mark.slow
def test_offline_sql_schedules_and_its_require_raises_until_the_backfill_ran(
    create_database: Callable[[], URL], tmp_path: Path
) -> None:
    url = create_database()
    chain = chain_of(tmp_path, rows=300)
    _, schedule, require = chain.revisions

    def script(span: str) -> str:
        rendered = chain.run("upgrade", span, "--sql", url=None)
        assert rendered.returncode == 0, rendered.stderr
        return rendered.stdout

    async def run_script(sql_script: str) -> None:
        async with connect(url, isolation_level="AUTOCOMMIT") as connection:
            for statement in split(sql_script):
                await connection.exec_driver_sql(statement)

    scheduling = script(f"base:{schedule}")
    assert f"CREATE TABLE IF NOT EXISTS {JOBS_TABLE}" in scheduling
    assert f"-- Backfill '{JOB}' is scheduled, not run: this script does not fill a row." in (
        scheduling
    )
    asyncio.run(run_script(scheduling))
    assert job(url) == ("pending", None, 0)

    requiring = script(f"{schedule}:{require}")
    with pytest.raises(sa.exc.DBAPIError, match=f"backfill '{JOB}' is not finished"):
        asyncio.run(run_script(requiring))
    assert run_in_process(url)[0] == 1
    asyncio.run(run_script(requiring))

    assert every_row_filled_once(url)
    assert sql(url, "SELECT version_num FROM alembic_version")[0][0] == require


# --- two runners, and a killed one: the runner as the command line, as `make backfill` runs it


ROWS = 3000
BATCH = 50


@contextmanager
def rows_locked_after(url: URL, key: int) -> Iterator[None]:
    """An application transaction holding the rows past ``key``: a runner's batch that reaches
    them waits there (its earlier batches committed)."""

    async def hold(release: asyncio.Event, held: asyncio.Event) -> None:
        async with connect(url) as connection:
            await connection.execute(
                sa.text("SELECT id FROM jobs_items WHERE id > :key FOR UPDATE"), {"key": key}
            )
            held.set()
            await release.wait()
            await connection.rollback()

    loop = asyncio.new_event_loop()
    release, held = asyncio.Event(), asyncio.Event()
    task = loop.create_task(hold(release, held))
    loop.run_until_complete(held.wait())
    try:
        yield
    finally:
        loop.call_soon(release.set)
        loop.run_until_complete(task)
        loop.close()


def start_runner(url: URL, *args: str, **env: str) -> subprocess.Popen[str]:
    command, environment = backfill_command("run", *args, database_url=url)
    environment |= {"MIGRATION_BATCH_SIZE": str(BATCH), "MIGRATION_LOCK_TIMEOUT": "2min"} | env
    return subprocess.Popen(
        command,
        cwd=PROJECT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_until_blocked(url: URL, runner: subprocess.Popen[str]) -> None:
    query = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE application_name = 'backfill-runner' AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + 60
    while sql(url, query)[0][0] == 0:
        assert runner.poll() is None, runner.communicate()[0]
        assert time.monotonic() < deadline, "the runner never reached the locked rows"
        time.sleep(0.05)


@contextmanager
def runner_held_at(url: URL, key: int, *args: str, **env: str) -> Iterator[subprocess.Popen[str]]:
    """`make backfill` started, its batches committed up to ``key``, and waiting on the next
    one (rows an application transaction holds) until the block ends."""
    with rows_locked_after(url, key):
        runner = start_runner(url, *args, **env)
        wait_until_blocked(url, runner)
        yield runner


@pytest.fixture
def scheduled(create_database: Callable[[], URL], tmp_path: Path) -> URL:
    url = create_database()
    chain_of(tmp_path, rows=ROWS).upgrade(url, "scratch00002")
    return url


@pytest.mark.slow
def test_two_runners_at_once_share_no_work(scheduled: URL) -> None:
    url = scheduled
    with runner_held_at(url, 2000) as first:
        second = run_backfills("run", database_url=url)
        status = run_backfills("status", database_url=url)

        assert first.poll() is None
    output = first.communicate(timeout=120)[0]

    assert second.returncode == 0, second.stdout + second.stderr
    assert f"{JOB}: another runner is on it: skipped" in second.stdout
    assert "rows filled" not in second.stdout
    assert status.stdout.startswith(f"{JOB}: running, 2000/{ROWS} rows (66.7%), ")
    assert "ETA" in status.stdout
    assert first.returncode == 0, output
    assert f"{JOB}: finished, {ROWS} rows filled" in output
    assert every_row_filled_once(url)


@pytest.mark.slow
def test_a_killed_runner_resumes_from_its_stored_key(scheduled: URL) -> None:
    url = scheduled
    with runner_held_at(url, 1500) as killed:
        os.kill(killed.pid, signal.SIGKILL)
        killed.communicate()
        # Its session dies too (a crashed host, a deploy that killed the pod): the batch it was
        # waiting on is rolled back, and the job's lock released.
        sql(
            url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'backfill-runner'",
        )
        gone = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'backfill-runner'"
        deadline = time.monotonic() + 30
        while sql(url, gone)[0][0]:
            assert time.monotonic() < deadline
            time.sleep(0.05)

    assert job(url) == ("running", "1500", 1500)
    status = run_backfills("status", database_url=url)
    assert status.stdout == (
        f"{JOB}: interrupted after 1500/{ROWS} rows (50.0%) (its runner is gone);"
        " 'alembic-pgsafe backfill run' resumes it after key 1500\n"
    )

    resumed = start_runner(url)
    output = resumed.communicate(timeout=120)[0]

    assert resumed.returncode == 0, output
    assert f"{JOB}: resuming after key 1500 (1500 rows filled before)" in output
    assert f"{JOB}: {ROWS - 1500} rows to fill, batches of {BATCH}" in output
    assert f"{JOB}: finished, {ROWS} rows filled" in output
    assert every_row_filled_once(url)
    assert job(url) == ("finished", str(ROWS), ROWS)


def scrape(port: int) -> dict[tuple[str, str], float]:
    """The runner's metrics: (name, its backfill or state label) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, sample.labels.get("backfill_budget_state") or sample.labels["backfill"]): (
            sample.value
        )
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "backfill" in sample.labels
    }


@pytest.mark.slow
def test_a_running_backfill_serves_its_metrics_and_logs_json_events(scheduled: URL) -> None:
    url, port = scheduled, free_port()
    progress = {"LOG_FORMAT": "json", "MIGRATION_PROGRESS_SECONDS": "0"}
    with runner_held_at(url, 2000, "--metrics-port", str(port), **progress) as runner:
        metrics = scrape(port)
    output = runner.communicate(timeout=120)[0]

    assert metrics[("backfill_rows_done", JOB)] == 2000
    assert metrics[("backfill_rows_planned", JOB)] == ROWS
    assert metrics[("backfill_batches", JOB)] == 2000 / BATCH
    assert metrics[("backfill_batch_size_rows", JOB)] == BATCH
    assert metrics[("backfill_rows_per_second", JOB)] > 0
    assert metrics[("backfill_pause_seconds", JOB)] == 0
    assert metrics[("backfill_budget_state", "off")] == 1
    assert metrics[("backfill_budget_state", "pacing")] == 0
    assert runner.returncode == 0, output
    lines = [json.loads(line) for line in output.splitlines()]
    done = [line["rows_done"] for line in lines if line.get("event") == "backfill.progress"]
    assert done == list(range(BATCH, ROWS + 1, BATCH))
    finished = [line for line in lines if line.get("event") == "backfill.finished"]
    assert [(line["backfill"], line["rows_done"]) for line in finished] == [(JOB, ROWS)]
    with pytest.raises(OSError, match="Connection refused"):  # served only while it runs
        scrape(port)


def test_a_metrics_port_in_use_is_one_line(migrated_database: URL) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))  # noqa: S104 (where the runner would listen)
        taken.listen()
        port = taken.getsockname()[1]
        result = run_backfills("run", "--metrics-port", str(port), database_url=migrated_database)

    assert result.returncode == 2
    assert (
        result.stderr == f"backfill: cannot serve metrics on port {port}: Address already in use\n"
    )
