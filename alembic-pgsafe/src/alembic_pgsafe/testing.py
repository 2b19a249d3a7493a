"""The release still serving, for a project's own tests: a writer that knows only the old schema.

A deploy migrates while the previous release keeps serving, and that release goes on until the
new one replaces it. Its writes must not fail: before, during or after the migration. What it
writes is derived from the schema it knew, read from the database (no list of tables and
columns to keep up to date): into every table, a row with each column a row must have (NOT NULL,
no default, not generated), foreign keys pointing at a row seeded first. A revision that breaks
such a writer breaks the release still serving::

    from alembic_pgsafe.testing import deploy_each_revision

    steps = await deploy_each_revision(url, revisions, upgrade_to)
    assert [step for step in steps if step.report.failures] == []

``deploy_each_revision`` walks the history one deploy at a time: at each revision, the release
that knew that schema writes while the next revision is applied (``upgrade_to(revision)``, run
in a thread), and once more after it.

Inserts go through asyncpg's prepared statements, as an application's do: a migration that
changes a table under a cached plan shows too.
"""

import asyncio
import datetime
import decimal
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import URL, Connection, Executable
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from alembic_pgsafe.backfill_jobs import JOBS_TABLE

__all__ = [
    "SCRATCH_HEADER",
    "CannotDeriveError",
    "OldRelease",
    "ScratchChain",
    "Step",
    "WriterReport",
    "deploy_each_revision",
    "old_release_writer",
    "scratch_chain",
    "value_for",
]

IGNORED_TABLES = frozenset({"alembic_version", JOBS_TABLE})
"""Tables no release of the application writes: Alembic's and the toolkit's own."""


class CannotDeriveError(ValueError):
    """A column whose values the writer cannot make up: the message names it."""


def value_for(column: sa.Column[Any], number: int) -> Any:
    """A value of ``column``'s type, different for each ``number`` (unique constraints hold)."""
    kind = column.type
    if isinstance(kind, sa.Enum) and kind.enums:
        return kind.enums[number % len(kind.enums)]
    if isinstance(kind, sa.Boolean):
        return number % 2 == 0
    if isinstance(kind, sa.SmallInteger):
        return number % 32_000
    if isinstance(kind, sa.Integer):
        return number
    if isinstance(kind, sa.Numeric | sa.Float):  # within numeric(3, 0) too
        return decimal.Decimal(number % 1000) if kind.asdecimal else float(number % 1000)
    if isinstance(kind, sa.DateTime):
        return datetime.datetime.now(datetime.UTC) + datetime.timedelta(microseconds=number)
    if isinstance(kind, sa.Date):
        return datetime.date(2000, 1, 1) + datetime.timedelta(days=number % 36500)
    if isinstance(kind, sa.Time):
        return datetime.time(number % 24, number % 60)
    if isinstance(kind, sa.Interval):
        return datetime.timedelta(seconds=number)
    if isinstance(kind, sa.Uuid):
        return uuid.uuid4() if kind.as_uuid else str(uuid.uuid4())
    if isinstance(kind, postgresql.ARRAY | sa.ARRAY):
        return []
    if isinstance(kind, sa.JSON | postgresql.JSONB):
        return {"old_release": number}
    if isinstance(kind, sa.LargeBinary):
        return str(number).encode()
    if isinstance(kind, sa.String):  # Text, VARCHAR(n), CHAR(n): unique, within the length
        text = f"{number}-{uuid.uuid4().hex}"
        return text[: kind.length] if kind.length else f"old release {text}"
    msg = (
        f"the old release's writer cannot make up a value of {kind} for {column.table.name}."
        f"{column.name}: give it one (OldRelease.of_database(connection, values=...))"
    )
    raise CannotDeriveError(msg)


def _required(column: sa.Column[Any]) -> bool:
    """Whether every insert must name the column: NOT NULL, no default, not generated."""
    generated = column.identity is not None or column.computed is not None
    return not (column.nullable or generated or column.server_default is not None)


ValueMaker = Callable[[int], Any]


@dataclass
class OldRelease:
    """What a release that knows these tables writes: one insert per table."""

    tables: list[sa.Table]
    values: dict[str, dict[str, ValueMaker]] = field(default_factory=dict)
    """table name: column name: value for the n-th write, where the default would not do."""
    parents: dict[tuple[str, str], Any] = field(default_factory=dict)
    """(table, column): the value a foreign key there points at, known once seeded."""
    numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @classmethod
    def of_database(
        cls,
        connection: Connection,
        *,
        schema: str | None = None,
        values: dict[str, dict[str, ValueMaker]] | None = None,
    ) -> "OldRelease":
        """The release that knows the tables ``connection``'s database has now."""
        metadata = sa.MetaData()
        metadata.reflect(connection, schema=schema)
        tables = [table for table in metadata.sorted_tables if table.name not in IGNORED_TABLES]
        return cls(tables, values or {})

    def _row(self, table: sa.Table, number: int) -> dict[str, Any]:
        given = self.values.get(table.name, {})
        row: dict[str, Any] = {}
        for column in table.columns:
            if column.name in given:
                row[column.name] = given[column.name](number)
            elif column.foreign_keys:  # the seeded parent row, when there is one
                parent = next(iter(column.foreign_keys)).column
                if (parent.table.name, parent.name) in self.parents:
                    row[column.name] = self.parents[(parent.table.name, parent.name)]
                elif _required(column):
                    msg = f"{table.name}.{column.name} points at a row the writer cannot seed"
                    raise CannotDeriveError(msg)
            elif _required(column):
                row[column.name] = value_for(column, number)
        return row

    def seed(self, connection: Connection) -> None:
        """One row in every table, parents first: what foreign keys of later writes point at."""
        for table in self.tables:
            inserted = connection.execute(
                table.insert().values(self._row(table, next(self.numbers))).returning(table)
            ).one()
            for column in table.columns:
                self.parents[(table.name, column.name)] = inserted._mapping[column]

    def insert(self, number: int) -> list[sa.Insert]:
        """The ``number``-th write of the old release: a row into each of its tables."""
        offset = 1_000_000 + number * len(self.tables)
        return [
            table.insert().values(self._row(table, offset + index))
            for index, table in enumerate(self.tables)
        ]


@dataclass
class WriterReport:
    writes: int = 0
    failures: list[str] = field(default_factory=list)
    longest_write: float = 0.0

    def summary(self) -> str:
        return (
            f"{self.writes} writes, {len(self.failures)} failed, longest"
            f" {self.longest_write * 1000:.0f} ms; first failures: {self.failures[:3]}"
        )


Statements = Executable | Sequence[Executable]


@asynccontextmanager
async def old_release_writer(
    url: URL, insert: Callable[[int], Statements], *, interval: float = 0.01
) -> AsyncIterator[WriterReport]:
    """Write ``insert(n)`` (one statement or several, in one transaction) every ``interval``
    seconds until the block ends, and after it once.

    Yields once the first write went through, so that the block starts with a working writer.
    """
    engine = create_async_engine(url, pool_size=1, max_overflow=0)
    report = WriterReport()
    stop = asyncio.Event()

    async def write(number: int) -> None:
        started = time.monotonic()
        statements = insert(number)
        try:
            async with engine.begin() as connection:
                for statement in [statements] if isinstance(statements, Executable) else statements:
                    await connection.execute(statement)
            report.writes += 1
        except Exception as exc:  # every failure is what the test counts
            report.failures.append(f"{type(exc).__name__}: {exc}"[:400])
        report.longest_write = max(report.longest_write, time.monotonic() - started)

    async def keep_writing() -> None:
        number = 0
        while not stop.is_set():
            number += 1
            await write(number)
            await asyncio.sleep(interval)

    await write(0)
    task = asyncio.create_task(keep_writing())
    try:
        yield report
    finally:
        stop.set()
        await task
        await write(-1)  # after the migration: the old release must still be able to insert
        await engine.dispose()


@dataclass
class Step:
    """One deploy of a walk: the revision applied, and how the release before it fared."""

    revision: str
    tables: list[str]
    report: WriterReport

    def __str__(self) -> str:
        return f"deploying {self.revision} under the release that knew {self.tables}: " + (
            self.report.summary()
        )


async def deploy_each_revision(
    url: URL, revisions: list[str], upgrade_to: Callable[[str], None]
) -> list[Step]:
    """Apply ``revisions`` one at a time to the database at ``url`` (at the revision before the
    first), each under a writer derived from the schema the previous one left."""
    engine = create_async_engine(url)
    steps = []
    try:
        for revision in revisions:
            async with engine.begin() as connection:
                release = await connection.run_sync(OldRelease.of_database)
                await connection.run_sync(release.seed)
            await engine.dispose()  # no connection of ours holds a lock the revision needs
            tables = [table.name for table in release.tables]
            async with old_release_writer(url, release.insert) as report:
                await asyncio.to_thread(upgrade_to, revision)
            steps.append(Step(revision, tables, report))
    finally:
        await engine.dispose()
    return steps


SCRATCH_HEADER = '''"""Scratch revision {number} of a test."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from alembic_pgsafe.backfill import *
from alembic_pgsafe.backfill_jobs import *
from alembic_pgsafe.helpers import *

revision = "{revision}"
down_revision = {down_revision!r}
'''
"""What every scratch revision starts with: the imports any revision has, and its place."""


@dataclass(frozen=True)
class ScratchChain:
    """Revisions a test wrote, run through a project's own env.py."""

    alembic_ini: Path
    revisions: list[str]

    def config(self, url: URL | None = None) -> Config:
        """The chain's Alembic config, with an engine on ``url`` handed to env.py."""
        config = Config(self.alembic_ini)
        config.attributes["configure_logger"] = False
        if url is not None:
            config.attributes["connection"] = create_async_engine(url, poolclass=NullPool)
        return config

    def upgrade(self, url: URL, target: str = "head") -> None:
        command.upgrade(self.config(url), target)

    def downgrade(self, url: URL, target: str = "base") -> None:
        command.downgrade(self.config(url), target)


def scratch_chain(directory: Path, *bodies: str, alembic_ini: Path) -> ScratchChain:
    """Write ``bodies`` (each an ``upgrade()`` and ``downgrade()``) as a chain of revisions
    in ``directory``, run by the project's ``alembic_ini`` (its env.py and settings: the
    ``.squawk.toml`` and ``pyproject.toml`` beside it come along) pointed at them."""
    versions = directory / "versions"
    versions.mkdir(parents=True)
    revisions: list[str] = []
    for number, body in enumerate(bodies, 1):
        revision = f"scratch{number:05d}"
        down_revision = revisions[-1] if revisions else None
        header = SCRATCH_HEADER.format(
            number=number, revision=revision, down_revision=down_revision
        )
        (versions / f"{number:04d}_scratch.py").write_text(f"{header}\n{body}", encoding="utf-8")
        revisions.append(revision)
    project = alembic_ini.resolve().parent
    ini = alembic_ini.read_text(encoding="utf-8")
    ini = ini.replace("%(here)s/", f"{project}/").replace(
        "[alembic]", f"[alembic]\nversion_locations = {versions}", 1
    )
    (directory / "alembic.ini").write_text(ini, encoding="utf-8")
    for name in (".squawk.toml", "pyproject.toml"):
        if (project / name).is_file():
            (directory / name).write_text((project / name).read_text(encoding="utf-8"), "utf-8")
    return ScratchChain(directory / "alembic.ini", revisions)
