"""Logs a collector can read: ``LOG_FORMAT=json`` makes a migration run one JSON object per
line, each revision started/finished/failed, each refused lock and each backfill's progress an
event with fields; a bad ``LOG_FORMAT`` is one line."""

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import URL

from alembic_pgsafe.logs import JSON_FIELDS, RevisionEvents, configure_logging
from tests.conftest import CreateDatabase, alembic_command, revisions, run_blocking
from tests.conftest import connect as connect_to
from tests.scratch import scratch_chain

TABLE = """
def upgrade() -> None:
    op.execute("CREATE TABLE logged_items (id bigint PRIMARY KEY)")


def downgrade() -> None:
    op.execute("DROP TABLE logged_items")
"""
ADD_COLUMN = """
def upgrade() -> None:
    with_lock_retry(
        lambda: op.add_column("logged_items", sa.Column("label", sa.Text)), table="logged_items"
    )


def downgrade() -> None:
    with_lock_retry(lambda: op.drop_column("logged_items", "label"), table="logged_items")
"""


def json_lines(output: str) -> list[dict[str, Any]]:
    """Every line of ``output`` as the JSON object it must be."""
    lines = [line for line in output.splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}")
    for record in records:
        assert list(record)[: len(JSON_FIELDS)] == list(JSON_FIELDS), record
    return records


def events(records: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [record for record in records if record.get("event") == name]


def alembic_json(*args: str, url: URL | None, ini: Path | None = None) -> "subprocess.Popen[str]":
    command, env = (
        alembic_command(*args, database_url=url)
        if ini is None
        else alembic_command(*args, database_url=url, alembic_ini=ini)
    )
    env |= {"LOG_FORMAT": "json", "MIGRATION_PROGRESS_SECONDS": "0"}
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_a_migration_run_is_json_lines_with_each_revision_and_backfill_as_events(
    create_database: CreateDatabase,
) -> None:
    url = create_database()
    run = alembic_json("upgrade", "head", url=url)
    _, stderr = run.communicate(timeout=300)

    assert run.returncode == 0, stderr
    records = json_lines(stderr)
    started = events(records, "migration.revision.started")
    finished = events(records, "migration.revision.finished")
    assert [event["revision"] for event in started] == revisions()
    assert [event["revision"] for event in finished] == revisions()
    assert [event["down_revision"] for event in finished] == [None, *revisions()[:-1]]
    assert {event["direction"] for event in finished} == {"upgrade"}
    assert all(event["duration_seconds"] >= 0 for event in finished)
    assert all(event["level"] == "INFO" and event["time"] for event in finished)
    # 0003 fills users.slug in batches: its progress and its end, with numbers, not prose only.
    done = events(records, "backfill.finished")
    assert len(done) == 1
    assert done[0]["rows_done"] == done[0]["rows_total"]
    assert done[0]["budget_state"] == "off"
    for progress in events(records, "backfill.progress"):
        assert {"rows_done", "rows_per_second", "eta_seconds", "batch_size"} <= set(progress)


@pytest.mark.slow
def test_a_refused_lock_and_the_revision_it_failed_are_events(
    create_database: CreateDatabase, tmp_path: Path
) -> None:
    url = create_database()
    chain = scratch_chain(tmp_path, TABLE, ADD_COLUMN)
    chain.upgrade(url, chain.revisions[0])

    async def held() -> tuple[int, str]:
        async with connect_to(url) as holder:
            await holder.exec_driver_sql("LOCK TABLE logged_items IN SHARE MODE")
            command, env = chain.command_line(
                "-x", "lock_timeout=100ms", "-x", "lock_attempts=2", "upgrade", "head", url=url
            )
            env |= {"LOG_FORMAT": "json"}
            result = subprocess.run(  # noqa: ASYNC221 (the lock is held meanwhile, on purpose)
                command, env=env, capture_output=True, text=True, timeout=300, check=False
            )
            return result.returncode, result.stderr

    code, stderr = run_blocking(held())

    assert code != 0
    records = json_lines(stderr)  # Alembic's error too (its FAILED line goes to stdout)
    assert records[-1]["level"] == "ERROR"
    assert records[-1]["message"].startswith("could not lock logged_items after 2 attempts")
    retries = events(records, "migration.lock_retry")
    assert [(event["attempt"], event["attempts"]) for event in retries] == [(1, 2), (2, 2)]
    assert retries[0]["table"] == "logged_items"
    assert retries[0]["lock_timeout"] == "100ms"
    assert "ShareLock" in retries[0]["held_by"]
    assert retries[0]["retry_in_seconds"] > 0
    assert retries[1]["retry_in_seconds"] is None
    failed = events(records, "migration.revision.failed")
    assert len(failed) == 1
    assert failed[0]["revision"] == chain.revisions[1]
    assert failed[0]["error"] == "MigrationSafetyError"
    assert failed[0]["level"] == "ERROR"


def test_a_bad_log_format_is_one_line() -> None:
    command, env = alembic_command("upgrade", "head", "--sql", database_url=None)
    env["LOG_FORMAT"] = "yaml"
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)

    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "FAILED: invalid settings: LOG_FORMAT: Input should be 'json' or 'text'"
    ], result.stderr


@pytest.fixture
def root_logging() -> Iterator[None]:
    """The root logger as it was, after the test changed it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


class RequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = "req-1"
        return True


@pytest.mark.usefixtures("root_logging")
def test_json_lines_carry_the_fields_of_every_logger_through_one_handler() -> None:
    stream = io.StringIO()
    uvicorn = logging.getLogger("uvicorn.access")
    own = logging.StreamHandler(sys.stderr)  # as uvicorn's logging config adds one
    uvicorn.addHandler(own)
    uvicorn.propagate = False
    configure_logging("json", level="INFO", filters=[RequestId()], stream=stream)

    uvicorn.info('"GET / HTTP/1.1" 200')
    logging.getLogger("alembic.backfill").info(
        "filled %d rows", 5, extra={"event": "backfill.progress", "rows_done": 5}
    )
    logging.getLogger("sqlalchemy.engine").debug("not at INFO")

    assert own not in uvicorn.handlers
    first, second = json_lines(stream.getvalue())
    assert first["logger"] == "uvicorn.access"
    assert first["message"] == '"GET / HTTP/1.1" 200'
    assert first["request_id"] == "req-1"
    assert second["message"] == "filled 5 rows"
    assert (second["event"], second["rows_done"], second["level"]) == (
        "backfill.progress",
        5,
        "INFO",
    )


@pytest.mark.usefixtures("root_logging")
def test_text_is_for_a_terminal() -> None:
    stream = io.StringIO()
    configure_logging("text", level="INFO", stream=stream)
    logging.getLogger("alembic.env").warning("careful")

    assert stream.getvalue().rstrip().endswith("WARNI [alembic.env] careful")


def test_a_revision_that_never_started_fails_no_event(caplog: pytest.LogCaptureFixture) -> None:
    RevisionEvents().failed(RuntimeError("before any revision"))

    assert not caplog.records
