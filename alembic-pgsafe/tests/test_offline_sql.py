"""Offline SQL a DBA can run: the batched backfill, run as plain SQL, equals the online run;
a whole chain (the fixture project's, then a scheduled backfill and its requirement), run by
psql on a new database, reaches head; a scheduled backfill stops the script only where a row
needs it."""

import asyncio
import contextlib
import io
import re
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from pglast import split
from sqlalchemy import URL, text

from alembic_pgsafe.backfill_jobs import (
    JOBS_TABLE,
    PROBE_TIMEOUT,
    RUN_COMMAND,
    jobs,
)
from tests.conftest import PROJECT, connect, revisions, run_scheduled_backfills
from tests.scratch import ScratchChain, scratch_chain
from tests.servers import BIN

NAMES = ["Ada Lovelace", "!!!", "Ünïcode Ñame", "  Alan  Turing ", "O'Brien: the 2nd"]
ROWS = 1234
CHAIN = [
    """
def upgrade() -> None:
    op.create_table(
        "people",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("full_name", sa.Text, nullable=False),
        sa.Column("handle", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("people")
""",
    """
people = sa.table(
    "people",
    sa.column("id", sa.BigInteger),
    sa.column("full_name", sa.Text),
    sa.column("handle", sa.Text),
)
HANDLE = sa.func.lower(sa.func.regexp_replace(people.c.full_name, "[^a-zA-Z]+", ":", "g"))


def upgrade() -> None:
    backfill_in_batches(
        people,
        key=people.c.id,
        values={"handle": HANDLE + "-" + sa.cast(people.c.id, sa.Text)},
        pending=people.c.handle.is_(None),
        label="people.handle",
    )


def downgrade() -> None:
    pass
""",
]


async def seed(url: URL) -> None:
    async with connect(url) as connection:
        await connection.execute(
            text(
                "INSERT INTO people (full_name) SELECT (CAST(:names AS text[]))[1 + g % 5]"
                " FROM generate_series(1, :rows) AS g"
            ),
            {"names": NAMES, "rows": ROWS},
        )
        await connection.commit()


async def run_script(url: URL, script: str) -> None:
    """Each statement on its own in autocommit mode, as psql runs a file."""
    async with connect(url, isolation_level="AUTOCOMMIT") as connection:
        for statement in split(script):
            await connection.exec_driver_sql(statement)


async def table_state(url: URL) -> tuple[list[tuple[int, str]], str]:
    async with connect(url) as connection:
        rows = await connection.execute(text("SELECT id, handle FROM people ORDER BY id"))
        version = await connection.execute(text("SELECT version_num FROM alembic_version"))
        return [(row.id, row.handle) for row in rows], str(version.scalar_one())


@pytest.mark.slow  # two databases and a psql-style script: make test-all
def test_offline_backfill_is_batched_and_gives_the_online_result(
    create_database: Callable[[], URL], tmp_path: Path
) -> None:
    chain = scratch_chain(tmp_path, *CHAIN)
    first, backfill = chain.revisions
    online, offline = create_database(), create_database()
    for url in (online, offline):
        chain.upgrade(url, first)
        asyncio.run(seed(url))

    span = f"{first}:{backfill}"
    rendered = chain.run("-x", "batch_size=100", "upgrade", span, "--sql", url=None)
    assert rendered.returncode == 0, rendered.stderr
    script = rendered.stdout
    asyncio.run(run_script(offline, script))
    applied = chain.run("upgrade", backfill, url=online)
    assert applied.returncode == 0, applied.stderr

    # Batches: a DO block committing per batch, outside the migration's transaction, and no
    # whole-table UPDATE at the top level. The colons in the values are not bind parameters.
    assert "DO $backfill$" in script
    assert script.count("COMMIT;\n        RAISE NOTICE") == 2  # the first batch, then the loop
    assert "LIMIT 100" in script
    do_block = script.index("DO $backfill$")
    assert script.rindex("COMMIT;", 0, do_block) > script.rindex("BEGIN;", 0, do_block)
    top_level = [s for s in split(script) if s.lstrip().upper().startswith("UPDATE PEOPLE")]
    assert top_level == []
    online_state = asyncio.run(table_state(online))
    offline_state = asyncio.run(table_state(offline))
    assert offline_state == online_state
    assert all(handle is not None for _, handle in offline_state[0])
    assert "o:brien:the:nd-4" in {handle for _, handle in offline_state[0]}
    assert offline_state[1] == backfill


# --- psql -v ON_ERROR_STOP=1 -f, as a DBA runs the script ---------------------------------------

JOB = "drafts.title_length"
TITLES = ["Draft", "Ünïcode: a title", "O'Brien"]
SCHEDULED = [
    """
def upgrade() -> None:
    op.create_table(
        "drafts",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("title_length", sa.Integer),
    )


def downgrade() -> None:
    op.drop_table("drafts")
""",
    """
drafts = sa.table("drafts", sa.column("id"), sa.column("title"), sa.column("title_length"))


def upgrade() -> None:
    schedule_backfill(
        drafts,
        key=drafts.c.id,
        values={"title_length": sa.func.length(drafts.c.title)},
        pending=drafts.c.title_length.is_(None),
        name="drafts.title_length",
    )


def downgrade() -> None:
    unschedule_backfill("drafts.title_length")
""",
    """
def upgrade() -> None:
    require_backfill_finished("drafts.title_length")
    add_not_null("drafts", "title_length")


def downgrade() -> None:
    op.alter_column("drafts", "title_length", nullable=True)
""",
]
UNDECIDED = (
    f"looking for a row that needs it took over {PROBE_TIMEOUT}: it stays pending, for"
    f" '{RUN_COMMAND}'"
)
STOPPED = 3
"""psql's exit status when ON_ERROR_STOP ended the script."""


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
    """``alembic upgrade <span> --sql``, run in process (of the project's chain, or a scratch one's
    with ``chain.config()``)."""
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


def project_then_scheduled(directory: Path) -> ScratchChain:
    """The fixture project's history (a batched backfill, fill_on_insert, a concurrent unique
    index, NOT NULL, a foreign key), then the scheduled backfill and its requirement: a whole
    chain as a project has one, with a backfill scheduled for after the deploy."""
    chain = scratch_chain(directory, *SCHEDULED)
    versions = directory / "versions"
    first = versions / "0001_scratch.py"
    first.write_text(
        first.read_text(encoding="utf-8").replace(
            "down_revision = None", f"down_revision = {revisions()[-1]!r}", 1
        ),
        encoding="utf-8",
    )
    for revision in sorted((PROJECT / "migrations" / "versions").glob("*.py")):
        (versions / f"project_{revision.name}").write_text(
            revision.read_text(encoding="utf-8"), encoding="utf-8"
        )
    return chain


def test_the_whole_chain_offline_reaches_head_on_a_new_database_in_one_run(
    create_database: Callable[[], URL], tmp_path: Path
) -> None:
    url = create_database()
    chain = project_then_scheduled(tmp_path)
    assert revisions(chain.alembic_ini) == revisions() + chain.revisions
    script = offline_sql("head", chain.config())
    scheduled = re.findall(r"^-- Backfill '(.+)' is scheduled, not run", script, re.MULTILINE)
    assert scheduled == [JOB]  # the proof below is about a scheduled backfill

    applied = psql(url, script, tmp_path)

    assert applied.returncode == 0, applied.stderr
    assert version(url) == revisions(chain.alembic_ini)[-1]
    states = job_states(url)  # on a new database, no row needs the job: recorded finished
    assert set(scheduled) <= set(states)
    assert set(states.values()) <= {"finished"}  # nothing left to fill


def drafts_chain(url: URL, directory: Path, rows: int) -> ScratchChain:
    """The scratch chain, its table applied by psql and holding ``rows`` titles."""
    chain = scratch_chain(directory, *SCHEDULED)
    table = chain.revisions[0]
    assert psql(url, offline_sql(f"base:{table}", chain.config()), directory).returncode == 0
    asyncio.run(insert_drafts(url, TITLES[:rows]))
    return chain


async def insert_drafts(url: URL, titles: list[str]) -> None:
    async with connect(url) as connection:
        for title in titles:
            insert = text("INSERT INTO drafts (title) VALUES (:title)")
            await connection.execute(insert, {"title": title})
        await connection.commit()


def title_lengths(url: URL) -> list[object]:
    return [
        row[0] for row in asyncio.run(fetch(url, "SELECT title_length FROM drafts ORDER BY id"))
    ]


def test_an_empty_table_records_the_job_finished_and_the_script_reaches_head(
    create_database: Callable[[], URL], tmp_path: Path
) -> None:
    url = create_database()
    chain = drafts_chain(url, tmp_path, rows=0)
    table, _, require = chain.revisions

    applied = psql(url, offline_sql(f"{table}:{require}", chain.config()), tmp_path)

    assert applied.returncode == 0, applied.stderr
    assert f"NOTICE:  backfill '{JOB}': no row needs it: recorded as finished" in applied.stderr
    assert (version(url), job_states(url)) == (require, {JOB: "finished"})


@contextmanager
def drafts_locked(url: URL) -> Iterator[None]:
    """Another session holding drafts in ACCESS EXCLUSIVE mode: even a reader waits."""
    loop = asyncio.new_event_loop()
    holder = connect(url)
    try:
        connection = loop.run_until_complete(holder.__aenter__())
        lock = text("LOCK TABLE drafts IN ACCESS EXCLUSIVE MODE")
        loop.run_until_complete(connection.execute(lock))
        yield
    finally:
        loop.run_until_complete(holder.__aexit__(None, None, None))
        loop.close()


@pytest.mark.parametrize(
    ("rows", "lock_drafts", "notices"),
    [
        (len(TITLES), False, []),
        (0, True, [f"backfill '{JOB}': {UNDECIDED}"]),
    ],
    ids=["rows to fill", "no answer in time"],
)
def test_the_script_stops_at_the_requirement_until_make_backfill_ran(
    create_database: Callable[[], URL],
    tmp_path: Path,
    rows: int,
    lock_drafts: bool,
    notices: list[str],
) -> None:
    url = create_database()
    chain = drafts_chain(url, tmp_path, rows)
    table, schedule, require = chain.revisions

    with drafts_locked(url) if lock_drafts else contextlib.nullcontext():
        applied = psql(url, offline_sql(f"{table}:{require}", chain.config()), tmp_path)

    assert applied.returncode == STOPPED, applied.stderr
    assert re.findall(r"NOTICE:  (backfill .*)", applied.stderr) == notices
    assert f"ERROR:  backfill '{JOB}' is not finished. " in applied.stderr
    assert (version(url), job_states(url)) == (schedule, {JOB: "pending"})
    assert run_scheduled_backfills(url) == 1
    rest = psql(url, offline_sql(f"{schedule}:{require}", chain.config()), tmp_path)
    assert rest.returncode == 0, rest.stderr
    assert version(url) == require
    assert title_lengths(url) == [len(title) for title in TITLES[:rows]]
