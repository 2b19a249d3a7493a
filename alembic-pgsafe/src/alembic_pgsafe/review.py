"""``make review``: what a branch does to the database, as markdown for its pull request.

    python -m <package>.migration_toolkit review [--base BRANCH] [--config ALEMBIC_INI]
        [--rows N] [--no-trace] [--output FILE]

For each revision the branch adds (the revision files the base branch does not have, as git
tells, oldest first), one section:

- its offline upgrade SQL, what a DBA would run (the downgrade's folded away beneath it);
- what ``make lint`` finds in it, each finding with its fix (the whole chain is linted, as the
  rules follow the schema from revision to revision, but only this branch's findings shown);
- what ``make trace`` sees it lock, for how long, and whether it rewrites a table, on a
  scratch database with rows in every table (``--rows``, trace_rows, 10,000 by default),
  dropped afterwards. Without a database, or where the trace fails, one line says why instead.

A branch that adds no revision gets one line: "No migrations in this change." The markdown
goes to standard output (anything else the run prints goes to standard error), or is appended
to ``--output`` (CI passes ``$GITHUB_STEP_SUMMARY``). The command exits 0 once the report is
written, findings or not: ``make lint`` and ``make trace`` are what fail a build. It exits 2,
with one line, when it cannot tell the branch's revisions (no git repository, an unknown base
branch) or squawk is missing.
"""

import argparse
import logging
import sys
from collections.abc import Sequence
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

from alembic.script import Script
from pydantic import ValidationError
from sqlalchemy import URL
from sqlalchemy.engine import make_url

from alembic_pgsafe.connect import (
    describe_failure,
    show_traceback,
    where,
)
from alembic_pgsafe.history import (
    BranchError,
    base_branch,
    branch_revisions,
    script_directory,
)
from alembic_pgsafe.lint import (
    Finding,
    Rendered,
    lint,
    render_revisions,
    squawk_binary,
)
from alembic_pgsafe.settings import (
    PROJECT_ROOT,
    MigrationSettings,
    SettingsError,
    get_settings,
)
from alembic_pgsafe.trace import (
    DEFAULT_ROWS,
    Trace,
    trace_revisions,
)

__all__ = ["NO_MIGRATIONS", "Reviewed", "main", "markdown", "review"]

TITLE = "## Migrations in this change"
NO_MIGRATIONS = "No migrations in this change."
STATEMENT_SHOWN = 200
"""Characters of a finding's statement shown inline; the SQL block above has all of it."""


@dataclass(frozen=True)
class Reviewed:
    """One revision of the branch, and what the toolkit says about it."""

    revision: Script
    file: str
    """Relative to alembic.ini's folder, as lint names it."""
    upgrade: Rendered | None
    downgrade: Rendered | None
    """None for a merge revision, which has no SQL of its own."""
    findings: list[Finding]
    trace: Trace | None
    not_traced: str | None
    """Why there is no trace, in one line."""


def _relative(path: str | Path, folder: Path) -> str:
    """``path`` as lint names a revision's file: relative to alembic.ini's folder if inside."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(folder.resolve()))
    except ValueError:
        return str(resolved)


@dataclass(frozen=True)
class TraceOptions:
    rows: int
    max_lock_ms: float


def review(
    alembic_ini: Path, base: str | None, squawk: str, tracing: TraceOptions | None
) -> list[Reviewed]:
    """The branch's revisions (those not on ``base``), oldest first, each with its offline SQL,
    its lint findings and its trace (``tracing`` None: not traced)."""
    folder = alembic_ini.parent
    revisions = branch_revisions(script_directory(alembic_ini), base, folder)
    if not revisions:
        return []
    files = [_relative(str(revision.path), folder) for revision in revisions]
    pairs = render_revisions(alembic_ini)
    rendered = {
        _relative(upgrade.python_file, folder): (upgrade, downgrade) for upgrade, downgrade in pairs
    }
    findings, _ = lint(alembic_ini, squawk, pairs)  # the same SQL, rendered once
    traces = _traces(alembic_ini, revisions, files, tracing)
    reviewed = []
    for revision, file, (trace, not_traced) in zip(revisions, files, traces, strict=True):
        upgrade, downgrade = rendered.get(file, (None, None))  # a merge revision: none
        mine = [finding for finding in findings if finding.revision_file == file]
        reviewed.append(Reviewed(revision, file, upgrade, downgrade, mine, trace, not_traced))
    return reviewed


def _traces(
    alembic_ini: Path,
    revisions: Sequence[Script],
    files: Sequence[str],
    tracing: TraceOptions | None,
) -> list[tuple[Trace | None, str | None]]:
    """Each revision's trace on a scratch database of its own (migrated to its parent), or why
    there is none. A revision after one whose trace failed is not traced: its scratch database
    would be migrated through the one that failed."""
    if tracing is None:
        return [(None, "not traced (--no-trace)")] * len(revisions)
    try:
        url = make_url(get_settings().alembic_database_url)
    except ValueError as exc:  # SettingsError: no database named, or not one to migrate with
        return [(None, f"not traced: {exc}")] * len(revisions)
    found: list[tuple[Trace | None, str | None]] = []
    failed: str | None = None
    for revision, file in zip(revisions, files, strict=True):
        if failed is not None:
            found.append((None, failed))
        elif isinstance(revision.down_revision, tuple):
            found.append((None, "not traced: a merge revision, with nothing of its own to run"))
        else:
            try:
                [trace] = trace_revisions(
                    url,
                    str(alembic_ini),
                    revision=revision.revision,
                    rows=tracing.rows,
                    max_lock_ms=tracing.max_lock_ms,
                )
            except (Exception, SystemExit) as exc:  # env.py exits with its one-line reason
                if show_traceback():
                    raise
                reason, connecting = _failure(exc, url)
                if connecting:
                    failed = f"not traced: {reason}"
                    found.append((None, failed))
                else:
                    found.append((None, f"not traced: it failed on the scratch database: {reason}"))
                    failed = f"not traced: it comes after {file}, which failed"
            else:
                found.append((trace, None))
    return found


def _failure(exc: BaseException, url: URL) -> tuple[str, bool]:
    """Why a trace failed, in one line; and whether it was connecting to the server."""
    failure = describe_failure(exc)
    if failure is not None:
        return failure.line(where(url)), True
    error = getattr(exc, "orig", None) or exc  # SQLAlchemy's wrapper repeats the SQL
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else 'no message'}", False


# --- markdown -----------------------------------------------------------------------------------


def _code(text: str) -> str:
    """``text`` as inline code on one line, shortened, whatever backticks it holds."""
    flat = " ".join(text.split())
    if len(flat) > STATEMENT_SHOWN:
        flat = flat[: STATEMENT_SHOWN - 3] + "..."
    if "`" not in flat:
        return f"`{flat}`"
    return f"`` {flat} ``"


def _fenced(text: str, language: str) -> str:
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}{language}\n{text.strip()}\n{fence}"


def _sql(rendered: Rendered | None) -> str:
    if rendered is None:
        return "A merge revision: no SQL of its own."
    if rendered.sql is None:
        error = rendered.error
        return f"Does not render offline: {type(error).__name__}: {error} (see Lint)."
    return _fenced(rendered.sql, "sql")


def _lint(findings: Sequence[Finding]) -> list[str]:
    if not findings:
        return ["**Lint:** no findings."]
    count = f"{len(findings)} finding{'s' if len(findings) > 1 else ''}"
    out = [f"**Lint:** {count}.", ""]
    for finding in sorted(findings, key=lambda finding: finding.direction != "upgrade"):
        where_ = " (downgrade)" if finding.direction == "downgrade" else ""
        out.append(f"- **{finding.rule}**{where_}: {finding.message}")
        if finding.statement:
            out.append(f"  - statement: {_code(finding.statement)}")
        out.append(f"  - fix: {finding.fix}")
    return out


def _locks(item: Reviewed, rows: int | None) -> list[str]:
    if item.trace is None:
        return [f"**Locks:** {item.not_traced}"]
    # The trace's table without its own heading: this section has one.
    table = item.trace.markdown().splitlines()
    table = [line for line in table if line and not line.startswith("#")]
    out = [f"**Locks** (traced on a scratch database, {rows} rows in each table):", "", *table]
    for problem in item.trace.failures:
        out += ["", f"**Too long:** {problem.removeprefix(item.trace.file + ': ')}"]
    return out


def markdown(base: str, reviewed: Sequence[Reviewed], rows: int | None = None) -> str:
    """The report: ``rows`` is how many rows each table had in the traces."""
    if not reviewed:
        return f"{TITLE}\n\n{NO_MIGRATIONS}\n"
    linted = sum(1 for item in reviewed if item.findings)
    traces = [item.trace for item in reviewed if item.trace is not None]
    too_long = sum(1 for trace in traces if trace.failures)
    plural = "s" if len(reviewed) > 1 else ""
    out = [
        TITLE,
        "",
        f"{len(reviewed)} revision{plural} new on this branch (base `{base}`), oldest first:"
        f" {linted} with lint findings"
        + (f", {too_long} over the trace's limits." if traces else "."),
    ]
    for item in reviewed:
        revises = item.revision.down_revision
        parents = revises if isinstance(revises, tuple) else (revises or "base",)
        doc = (item.revision.doc or "").strip().splitlines()
        out += [
            "",
            f"### {item.file}",
            "",
            *([f"{doc[0]}", ""] if doc else []),
            f"Revision `{item.revision.revision}`, revises "
            + ", ".join(f"`{parent}`" for parent in parents)
            + ".",
            "",
            _sql(item.upgrade),
            "",
        ]
        if item.downgrade is not None:
            out += [
                "<details><summary>Downgrade SQL</summary>",
                "",
                _sql(item.downgrade),
                "",
                "</details>",
                "",
            ]
        out += [*_lint(item.findings), "", *_locks(item, rows)]
    return "\n".join(out) + "\n"


# --- command line ---------------------------------------------------------------------------------


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="alembic-pgsafe review",
        description="Markdown for a pull request: each revision new on the branch, its offline"
        " SQL, its lint findings with their fixes, and what it locks.",
    )
    parser.add_argument("--base", help="the base branch (default: origin's, else main/master)")
    parser.add_argument(
        "--config",
        type=Path,
        default=PROJECT_ROOT / "alembic.ini",
        help="alembic.ini (default: the project's); git is asked in its folder",
    )
    parser.add_argument(
        "--rows",
        type=int,
        help=f"rows per table in the traces (setting trace_rows, default {DEFAULT_ROWS})",
    )
    parser.add_argument("--no-trace", action="store_true", help="no database: SQL and lint only")
    parser.add_argument(
        "--output", type=Path, help="append the markdown to this file ($GITHUB_STEP_SUMMARY)"
    )
    arguments = parser.parse_args(argv)
    alembic_ini = arguments.config.resolve()
    if not alembic_ini.is_file():
        print(
            f"review: {arguments.config} not found: name alembic.ini with --config", file=sys.stderr
        )
        return 2
    squawk = squawk_binary()
    if squawk is None:
        print("review: squawk is not installed: install alembic-pgsafe[lint]", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)-5.5s [%(name)s] %(message)s")
    tracing = None
    if not arguments.no_trace:
        try:
            limits = MigrationSettings()
        except ValidationError as exc:
            print(f"review: {SettingsError.from_validation(exc)}", file=sys.stderr)
            return 2
        rows = limits.trace_rows if arguments.rows is None else arguments.rows
        tracing = TraceOptions(rows, limits.trace_max_lock_ms)
    try:
        # Only the report on standard output: what migrations and backfills print goes aside.
        with redirect_stdout(sys.stderr):
            base = base_branch(alembic_ini.parent, arguments.base)
            reviewed = review(alembic_ini, base, squawk, tracing)
    except BranchError as exc:
        print(f"review: {exc}", file=sys.stderr)
        return 2
    report = markdown(base, reviewed, arguments.rows)
    if arguments.output is None:
        sys.stdout.write(report)
    else:
        with arguments.output.open("a", encoding="utf-8") as summary:
            summary.write(report)
    return 0
