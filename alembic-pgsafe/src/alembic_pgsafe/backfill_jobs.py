"""Post-deploy backfills: a migration schedules the job, ``make backfill`` runs it.

Problem: a backfill inside ``alembic upgrade head`` holds the deploy for as long as it runs
(at ~450k rows/s, over half an hour for a billion rows), and a deploy is the worst moment for
a long job. :func:`schedule_backfill` records the job in ``migration_backfill_jobs`` (a table
the toolkit owns, outside the models and autogenerate) and returns at once. After the deploy,
``alembic-pgsafe backfill run`` (``make backfill`` in a template's render) runs every
unfinished job with the same keyset batches, batch timeout and replica throttle as a backfill
in a migration, storing the last key after each batch: a killed runner's successor resumes
there. One runner per job at a time (a session advisory lock): a second one skips the job. A
later revision that relies on the data calls :func:`require_backfill_finished`.
"""

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from pydantic import ValidationError
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from alembic_pgsafe.backfill import (
    KeysetBackfill,
    Progress,
    backfill_throttle,
    latency_budget,
)
from alembic_pgsafe.connect import (
    POOLER_DETECTED,
    create_engine,
    failure_line,
    through_transaction_pooler,
    where,
)
from alembic_pgsafe.helpers import (
    MigrationSafetyError,
    acknowledge_lint,
    compiled_sql,
    deploy_lock_key,
    literal_sql,
    migration_settings,
    set_timeouts,
)
from alembic_pgsafe.logs import configure_logging
from alembic_pgsafe.settings import DatabaseSettings, MigrationSettings, command_name, get_settings

__all__ = [
    "APPLICATION_NAME",
    "JOBS_TABLE",
    "PROBE_TIMEOUT",
    "QUERY_CANCELED",
    "RUN_COMMAND",
    "STATUS_COMMAND",
    "WHEN",
    "jobs",
    "main",
    "require_backfill_finished",
    "run_job",
    "run_jobs",
    "schedule_backfill",
    "status_lines",
    "unschedule_backfill",
]

log = logging.getLogger("alembic.backfill")

JOBS_TABLE = "migration_backfill_jobs"
RUN_COMMAND = command_name("backfill")
STATUS_COMMAND = command_name("backfill-status")
APPLICATION_NAME = "backfill-runner"
"""What the runner's session shows in pg_stat_activity."""
PROBE_TIMEOUT = "1s"
"""How long schedule_backfill may look for a pending row before it just schedules the job."""
QUERY_CANCELED = "57014"

jobs = sa.Table(
    JOBS_TABLE,
    sa.MetaData(),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("table_schema", sa.Text),
    sa.Column("table_name", sa.Text, nullable=False),
    sa.Column("key_column", sa.Text, nullable=False),
    # column name -> the SQL expression it is set to, as SQLAlchemy compiled it
    sa.Column("set_values", postgresql.JSONB, nullable=False),
    sa.Column("pending", sa.Text, nullable=False),
    sa.Column("batch_size", sa.BigInteger),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("last_key", sa.Text),
    sa.Column("rows_done", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_total", sa.BigInteger),
    sa.Column(
        "scheduled_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("message", sa.Text),
    sa.CheckConstraint(
        "state IN ('pending', 'running', 'stopped', 'finished')",
        name=f"ck_{JOBS_TABLE}_state",
    ),
)


def _say_offline(text: str) -> None:
    """A comment in the offline SQL, where the reader (a DBA with psql) will see it."""
    output = op.get_context().impl.output_buffer
    if output is not None:
        output.write("".join(f"-- {line}\n" for line in text.split("\n")))


# --- in migrations -----------------------------------------------------------------------------


def _has_pending(table: sa.TableClause, pending: sa.ColumnElement[bool]) -> bool:
    """Is any row pending? Asked for at most PROBE_TIMEOUT (a table whose pending rows are
    rare can take a long scan to say no): on timeout, assume yes."""
    bind = op.get_bind()
    previous = bind.execute(sa.select(sa.func.current_setting("statement_timeout"))).scalar_one()
    probe = sa.select(sa.literal(1)).select_from(table).where(pending).limit(1)
    try:
        with bind.begin_nested():
            bind.execute(sa.select(sa.func.set_config("statement_timeout", PROBE_TIMEOUT, True)))
            return bind.execute(probe).first() is not None
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != QUERY_CANCELED:
            raise
        return True
    finally:
        bind.execute(sa.select(sa.func.set_config("statement_timeout", previous, True)))


def _finish_offline_if_nothing_pending(
    table: sa.TableClause, pending: sa.ColumnElement[bool], name: str
) -> None:
    """Offline, the script decides when it runs: the job it has just recorded as pending is
    marked finished if no row is pending, so a new database reaches head in one run. As online,
    the search for a pending row has PROBE_TIMEOUT; past it the job stays pending."""
    _say_offline(
        f"Backfill {name!r} is scheduled, not run: this script does not fill a row.\n"
        f"If no row needs it, the job is recorded as finished; else (or if finding out takes"
        f" over {PROBE_TIMEOUT})\n'{RUN_COMMAND}' must run against the database before the"
        " next deploy."
    )
    finish = (
        jobs.update()
        .where(
            jobs.c.name == name,
            jobs.c.state == "pending",
            jobs.c.started_at.is_(None),  # only a job no runner has touched
            ~sa.exists().select_from(table).where(pending),
        )
        .values(state="finished", finished_at=sa.func.now())
    )
    finished = f"backfill {name!r}: no row needs it: recorded as finished"
    undecided = (
        f"backfill {name!r}: looking for a row that needs it took over {PROBE_TIMEOUT}: it"
        f" stays pending, for '{RUN_COMMAND}'"
    )
    limit = sa.text("SET statement_timeout = :value")
    op.execute(limit.bindparams(value=PROBE_TIMEOUT))
    acknowledge_lint("dynamic-sql", because=f"the toolkit finishes {name!r} if no row needs it")
    op.execute(
        literal_sql(
            "DO $schedule$\nBEGIN\n"
            f"    {compiled_sql(finish)};\n"
            "    IF FOUND THEN\n"
            f"        RAISE NOTICE USING MESSAGE = {compiled_sql(sa.literal(finished))};\n"
            "    END IF;\n"
            "EXCEPTION WHEN query_canceled THEN\n"
            f"    RAISE NOTICE USING MESSAGE = {compiled_sql(sa.literal(undecided))};\n"
            "END\n$schedule$"
        )
    )
    op.execute(limit.bindparams(value=migration_settings().statement_timeout))


def schedule_backfill(
    table: sa.TableClause,
    *,
    key: sa.ColumnClause[Any],
    values: Mapping[str, Any],
    pending: sa.ColumnElement[bool],
    name: str,
    batch_size: int | None = None,
    gentle: bool = False,
) -> None:
    """Record a backfill for ``make backfill`` to run after the deploy, and return at once.

    The arguments are those of ``backfill_in_batches`` (``backfill.py``); ``name`` is how
    :func:`require_backfill_finished` and ``make backfill-status`` know it. The expressions are
    stored as the SQL SQLAlchemy compiles them, so the job does not depend on this revision's
    code. When no row is pending (a new or empty table) the job is recorded as finished: a
    fresh database migrates to head in one go, online or with the offline SQL (which looks for
    a pending row when it runs). Scheduling a name that exists keeps the existing job.
    """
    context = op.get_context()
    set_values = {
        column: compiled_sql(value if isinstance(value, sa.ClauseElement) else sa.literal(value))
        for column, value in values.items()
    }
    op.execute(sa.schema.CreateTable(jobs, if_not_exists=True))
    nothing_pending = not context.as_sql and not _has_pending(table, pending)
    record = postgresql.insert(jobs).values(
        name=name,
        table_schema=table.schema,
        table_name=table.name,
        key_column=key.name,
        set_values=sa.cast(sa.literal(json.dumps(set_values), sa.Text), postgresql.JSONB),
        pending=compiled_sql(pending),
        batch_size=batch_size or (migration_settings().default_batch_size if gentle else None),
        state="finished" if nothing_pending else "pending",
        finished_at=sa.func.now() if nothing_pending else None,
    )
    op.execute(record.on_conflict_do_nothing(index_elements=[jobs.c.name]))
    if context.as_sql:
        _finish_offline_if_nothing_pending(table, pending, name)
    elif nothing_pending:
        log.info("%s: no row of %s is pending: recorded as finished", name, table.name)
    else:
        log.info(
            "%s: scheduled; run '%s' once this deploy is done (progress: '%s')",
            name,
            RUN_COMMAND,
            STATUS_COMMAND,
        )


def unschedule_backfill(name: str) -> None:
    """Forget job ``name`` (the downgrade of the revision that scheduled it); the jobs table
    goes with its last job. The rows it filled stay filled."""
    exists = sa.select(sa.literal(1)).select_from(jobs).exists()
    acknowledge_lint("dynamic-sql", because=f"the toolkit forgets the job {name!r}")
    op.execute(
        literal_sql(
            "DO $unschedule$\nBEGIN\n"
            f"    IF {compiled_sql(sa.func.to_regclass(JOBS_TABLE).is_not(None))} THEN\n"
            f"        {compiled_sql(jobs.delete().where(jobs.c.name == name))};\n"
            f"        IF NOT {compiled_sql(exists)} THEN\n"
            f"            {compiled_sql(sa.schema.DropTable(jobs))};\n"
            "        END IF;\n"
            "    END IF;\nEND\n$unschedule$"
        )
    )


def _not_finished(job: sa.Row[Any]) -> str:
    if job.rows_total is None:
        return f"backfill {job.name!r} is not finished ({job.state}, not started)"
    return (
        f"backfill {job.name!r} is not finished ({job.state}, {job.rows_done}/{job.rows_total}"
        " rows)"
    )


def require_backfill_finished(name: str) -> None:
    """Fail, with what to run, unless the scheduled backfill ``name`` has finished.

    Call it first in the revision that relies on the backfilled data (a NOT NULL, a unique
    index, code that reads the column). The revisions before it stay applied; once
    ``make backfill`` has finished the job, the same ``alembic upgrade head`` goes on.
    Offline, the check is emitted as SQL that raises the same error when the script runs.
    """
    what_to_do = (
        f"This revision relies on its data: run '{RUN_COMMAND}' against this database, wait for"
        f" it to finish ('{STATUS_COMMAND}'), then migrate again. The revisions before this one"
        " stay applied."
    )
    never = f"backfill {name!r} was never scheduled in this database (no such job in {JOBS_TABLE})"
    finished = sa.select(jobs.c.name).where(jobs.c.name == name, jobs.c.state == "finished")
    if op.get_context().as_sql:
        message = f"backfill {name!r} is not finished. {what_to_do}"
        _say_offline(
            f"The script stops here with an error unless backfill {name!r} has finished: then run\n"
            f"'{RUN_COMMAND}' against the database, and this script again from this revision's"
            " BEGIN."
        )
        acknowledge_lint("dynamic-sql", because=f"the toolkit checks that {name!r} finished")
        op.execute(
            literal_sql(
                "DO $require$\nBEGIN\n"
                f"    IF {compiled_sql(sa.func.to_regclass(JOBS_TABLE).is_(None))} THEN\n"
                f"        RAISE EXCEPTION USING MESSAGE = {compiled_sql(sa.literal(never))};\n"
                "    END IF;\n"
                f"    IF NOT {compiled_sql(finished.exists())} THEN\n"
                f"        RAISE EXCEPTION USING MESSAGE = {compiled_sql(sa.literal(message))};\n"
                "    END IF;\nEND\n$require$"
            )
        )
        return
    bind = op.get_bind()
    job = None
    if _jobs_table_exists(bind):
        job = bind.execute(sa.select(jobs).where(jobs.c.name == name)).first()
    if job is None:
        raise MigrationSafetyError(f"{never}: apply the revision that schedules it first.")
    if job.state != "finished":
        raise MigrationSafetyError(f"{_not_finished(job)}. {what_to_do}")
    log.info("%s: finished (%d rows): going on", name, job.rows_done)


# --- the runner --------------------------------------------------------------------------------


def _record(connection: Connection, name: str, **values: Any) -> None:
    update = jobs.update().where(jobs.c.name == name)
    connection.execute(update.values(updated_at=sa.func.now(), **values))


def _jobs_table_exists(connection: Connection) -> bool:
    return connection.execute(sa.select(sa.func.to_regclass(JOBS_TABLE))).scalar() is not None


def _lock_key(name: str) -> int:
    return deploy_lock_key(f"{JOBS_TABLE}:{name}")


def _key_type(connection: Connection, job: sa.Row[Any]) -> Any:
    columns = sa.inspect(connection).get_columns(job.table_name, schema=job.table_schema)
    return next(column["type"] for column in columns if column["name"] == job.key_column)


def _run_locked(connection: Connection, name: str, settings: MigrationSettings) -> None:
    job = connection.execute(sa.select(jobs).where(jobs.c.name == name)).one()
    if job.state == "finished":  # another runner finished it while this one was starting
        return
    key_type = _key_type(connection, job)
    table = sa.table(
        job.table_name,
        sa.column(job.key_column, key_type),
        *(sa.column(column) for column in job.set_values if column != job.key_column),
        schema=job.table_schema,
    )
    after = None
    if job.last_key is not None:
        resume_at = sa.cast(sa.literal(job.last_key, sa.Text), key_type)
        after = connection.execute(sa.select(resume_at)).scalar_one()
        log.info(
            "%s: resuming after key %s (%d rows filled before)", name, job.last_key, job.rows_done
        )
    done_before = job.rows_done
    _record(
        connection,
        name,
        state="running",
        message=None,
        started_at=sa.func.coalesce(jobs.c.started_at, sa.func.now()),
    )

    def store_progress(progress: Progress) -> None:
        _record(
            connection,
            name,
            last_key=str(progress.last_key),
            rows_done=done_before + progress.done,
            rows_total=done_before + progress.total,
        )

    size = settings.batch_size or job.batch_size
    factor = latency_budget(settings, size)  # -x backfill_budget for this run
    if size is None and factor is None:
        size = settings.default_batch_size  # as backfill_in_batches does by default
    runner = KeysetBackfill(
        connection,
        table,
        table.c[job.key_column],
        {column: sa.literal_column(sql) for column, sql in job.set_values.items()},
        sa.literal_column(job.pending, sa.Boolean),
        label=name,
        batch_size=size or 1000,
        target_seconds=None if size else settings.batch_target_seconds,
        on_batch=store_progress,
        throttle=backfill_throttle(settings),
        start_after=after,
        budget=factor,
        budget_min_rate=settings.backfill_budget_min_rate,
        progress_seconds=settings.progress_seconds,
    )
    try:
        progress = runner.run()
    except BaseException as exc:
        # Say why in the job, if the connection still works (a terminated session does not:
        # the job then reads "interrupted", which resumes the same way).
        with contextlib.suppress(DBAPIError):
            _record(connection, name, state="stopped", message=str(exc) or type(exc).__name__)
        raise
    _record(
        connection,
        name,
        state="finished",
        finished_at=sa.func.now(),
        rows_done=done_before + progress.done,
        rows_total=done_before + progress.done,
    )
    log.info("%s: finished, %d rows filled", name, done_before + progress.done)


def run_job(connection: Connection, name: str, settings: MigrationSettings) -> bool:
    """Run job ``name`` to the end on ``connection`` (autocommit); False when another runner
    holds it (this one then leaves it alone)."""
    key = _lock_key(name)
    if not connection.execute(sa.select(sa.func.pg_try_advisory_lock(key))).scalar_one():
        log.info("%s: another runner is on it: skipped", name)
        return False
    try:
        _run_locked(connection, name, settings)
    finally:
        with contextlib.suppress(DBAPIError):  # a dead session's locks are gone with it
            connection.execute(sa.select(sa.func.pg_advisory_unlock(key)))
    return True


def run_jobs(connection: Connection, settings: MigrationSettings, names: Sequence[str] = ()) -> int:
    """Run the unfinished jobs (all, or those named), oldest first; how many this runner ran."""
    set_timeouts(
        connection,
        lock_timeout=settings.lock_timeout,
        statement_timeout=settings.backfill_batch_timeout,
    )
    if not _jobs_table_exists(connection):
        log.info("no backfill was ever scheduled in this database")
        return 0
    if unknown := sorted(set(names) - set(connection.execute(sa.select(jobs.c.name)).scalars())):
        raise MigrationSafetyError(f"no backfill job named {', '.join(map(repr, unknown))}")
    query = sa.select(jobs.c.name).where(jobs.c.state != "finished")
    if names:
        query = query.where(jobs.c.name.in_(names))
    todo = list(connection.execute(query.order_by(jobs.c.scheduled_at, jobs.c.name)).scalars())
    if not todo:
        log.info("every scheduled backfill has finished")
    return sum(run_job(connection, name, settings) for name in todo)


WHEN = "%Y-%m-%d %H:%M:%S %Z"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}min" if hours else f"{minutes}min {seconds:02d}s"


def _describe(job: sa.Row[Any], runner_alive: bool, now: datetime) -> str:
    total = job.rows_total if job.rows_total is not None else "?"
    share = f" ({100 * job.rows_done / job.rows_total:.1f}%)" if job.rows_total else ""
    counted = f"{job.rows_done}/{total} rows{share}"
    if job.state == "finished":
        return f"{job.name}: finished, {job.rows_done} rows, at {job.finished_at:{WHEN}}"
    if job.state == "pending":
        return f"{job.name}: pending since {job.scheduled_at:{WHEN}}: run '{RUN_COMMAND}'"
    if job.state == "stopped":
        return f"{job.name}: stopped after {counted}: {job.message}; '{RUN_COMMAND}' resumes it"
    if not runner_alive:
        return (
            f"{job.name}: interrupted after {counted} (its runner is gone);"
            f" '{RUN_COMMAND}' resumes it after key {job.last_key}"
        )
    line = f"{job.name}: running, {counted}"
    if job.started_at is not None and job.updated_at is not None and job.rows_total:
        seconds = (job.updated_at - job.started_at).total_seconds()
        rate = job.rows_done / seconds if seconds > 0 else 0.0
        if rate > 0:
            eta = (job.rows_total - job.rows_done) / rate
            line += f", {rate:.0f} rows/s, ETA {_duration(eta)}"
        line += f", last batch {_duration((now - job.updated_at).total_seconds())} ago"
    return line


def status_lines(connection: Connection) -> list[str]:
    """One line per job, oldest first: state, rows, rate and ETA while running."""
    if not _jobs_table_exists(connection):
        return ["no backfill was ever scheduled in this database"]
    now = connection.execute(sa.select(sa.func.now())).scalar_one()
    lines = []
    for job in connection.execute(sa.select(jobs).order_by(jobs.c.scheduled_at, jobs.c.name)):
        alive = False
        if job.state == "running":
            key = _lock_key(job.name)
            free = connection.execute(sa.select(sa.func.pg_try_advisory_lock(key))).scalar_one()
            if free:
                connection.execute(sa.select(sa.func.pg_advisory_unlock(key)))
            alive = not free
        lines.append(_describe(job, alive, now))
    return lines


async def _main(
    url: str, arguments: argparse.Namespace, settings: DatabaseSettings, limits: MigrationSettings
) -> int:
    database = where(url)
    engine = create_engine(
        url,
        timeout=settings.database_connect_timeout,
        poolclass=NullPool,
        connect_args={"server_settings": {"application_name": APPLICATION_NAME}},
    )
    try:
        async with engine.connect() as connection:
            if await connection.run_sync(through_transaction_pooler):
                print(f"backfill: {POOLER_DETECTED.format(where=database)}", file=sys.stderr)
                return 1
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            try:
                if arguments.command == "status":
                    for line in await autocommit.run_sync(status_lines):
                        print(line)
                    return 0
                await autocommit.run_sync(run_jobs, limits, arguments.names)
                return 0
            finally:
                if not autocommit.closed and not autocommit.invalidated:
                    await autocommit.execute(sa.text("RESET ALL"))
    except MigrationSafetyError as exc:
        print(f"backfill: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        print(f"backfill: {failure_line(exc, database)}", file=sys.stderr)
        return 1
    finally:
        await engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="alembic-pgsafe backfill",
        description="Run or list the backfills that migrations scheduled (schedule_backfill).",
        epilog="Limits come from MIGRATION_* settings: MIGRATION_BATCH_SIZE,"
        " MIGRATION_BACKFILL_BATCH_TIMEOUT, MIGRATION_LOCK_TIMEOUT, MIGRATION_MAX_REPLICA_LAG,"
        " MIGRATION_MAX_WAL_RATE, MIGRATION_MAX_REPLICA_LAG_WAIT.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run every unfinished job (or those named) to the end")
    run.add_argument("names", nargs="*", help="only these jobs")
    run.add_argument(
        "--metrics-port",
        type=int,
        metavar="N",
        help="serve the run's metrics for Prometheus on port N while it runs"
        " (MIGRATION_METRICS_PORT)",
    )
    commands.add_parser("status", help="list the jobs: state, rows, rate, ETA")
    arguments = parser.parse_args(argv)
    try:
        configure_logging(stream=sys.stdout)
        settings = get_settings()
        url = settings.alembic_database_url
        limits = MigrationSettings()
    except (ValidationError, ValueError) as exc:
        print(f"backfill: {exc}", file=sys.stderr)
        return 2
    port = getattr(arguments, "metrics_port", None) or limits.metrics_port
    try:
        with contextlib.ExitStack() as serving:
            if arguments.command == "run" and port is not None:
                from alembic_pgsafe.metrics import BackfillMetrics

                try:
                    serving.enter_context(BackfillMetrics().served(port))
                except OSError as exc:
                    said = f"cannot serve metrics on port {port}: {exc.strerror or exc}"
                    print(f"backfill: {said}", file=sys.stderr)
                    return 2
            return asyncio.run(_main(url, arguments, settings, limits))
    except KeyboardInterrupt:
        print(f"backfill: interrupted; '{RUN_COMMAND}' resumes where it stopped", file=sys.stderr)
        return 130
