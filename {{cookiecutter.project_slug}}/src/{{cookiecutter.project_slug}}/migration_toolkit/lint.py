"""Lint the SQL of every migration: squawk's rules, plus the one it lacks, each with our fix.

    python -m {{ cookiecutter.project_slug }}.migration_toolkit lint [path/to/alembic.ini]

Each revision is rendered offline, as ``alembic upgrade <previous>:<revision> --sql`` does (no
database needed). squawk checks that SQL with .squawk.toml; this script adds a rule squawk
does not have, ``whole-table-dml``: an UPDATE or DELETE whose WHERE does not bound the table's
primary key (``id > 100 AND id <= 200``, ``id = 42``, ``id IN (1, 2)``) touches every matching
row in one transaction. Every finding names the revision's Python file, the statement, and the
toolkit's fix: the helper to call and the MIGRATIONS.md section that shows it.

A rule can be waived for one statement, with the reason in the revision, by calling
``acknowledge_lint(rule, because=...)`` before it: it writes
``-- squawk-ignore <rule>`` (``-- lint-ignore whole-table-dml`` for ours) into the SQL.
"""

import io
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from pglast import ast, parse_sql
from pglast.enums import A_Expr_Kind, BoolExprType, ConstrType

from {{ cookiecutter.project_slug }}.migration_toolkit.helpers import WHOLE_TABLE_DML, lint_waiver
from {{ cookiecutter.project_slug }}.settings import PROJECT_ROOT


@dataclass(frozen=True)
class Fix:
    helper: str
    section: str

    def __str__(self) -> str:
        return f"{self.helper}; MIGRATIONS.md, section '{self.section}'"


INDEX = Fix("create_index_concurrently(name, table, columns)", "Indexes")
NOT_NULL = Fix(
    "a constant server_default, or fill_on_insert + backfill_in_batches + add_not_null",
    "Add a NOT NULL column",
)
# What to do about each rule, in the toolkit's terms. squawk's own advice ("use CONCURRENTLY",
# "add IF NOT EXISTS") is right about SQL, but a raw CREATE INDEX CONCURRENTLY inside a
# migration fails (it cannot run in a transaction) or leaves an INVALID index behind.
FIXES: dict[str, Fix] = {
    "require-concurrent-index-creation": INDEX,
    "ban-concurrent-index-creation-in-transaction": INDEX,
    "require-concurrent-index-deletion": Fix("drop_index_concurrently(name, table)", "Indexes"),
    "adding-required-field": NOT_NULL,
    "adding-not-nullable-field": Fix("add_not_null(table, column)", "Add a NOT NULL column"),
    "adding-field-with-default": Fix(
        "a constant server_default (catalog-only on PostgreSQL 11+); fill a computed value"
        " with backfill_in_batches",
        "Constant defaults",
    ),
    "adding-foreign-key-constraint": Fix(
        "add_foreign_key(name, source, referent, local, remote)", "Foreign keys"
    ),
    "constraint-missing-not-valid": Fix(
        "add_check_constraint / add_foreign_key (NOT VALID, then VALIDATE)", "CHECK constraints"
    ),
    "disallowed-unique-constraint": Fix(
        "add_unique_constraint(name, table, columns)", "UNIQUE constraints"
    ),
    "renaming-column": Fix(
        "keep_columns_in_step, then stop_keeping_columns_in_step a deploy later",
        "Rename a column",
    ),
    "renaming-table": Fix("a new table kept in step, then the old one dropped", "Rename a column"),
    "ban-drop-column": Fix(
        "drop it one deploy after the release that stopped using it; acknowledge_lint(...)",
        "Remove a column",
    ),
    "ban-drop-table": Fix(
        "drop it one deploy after the release that stopped using it; acknowledge_lint(...)",
        "Remove a column",
    ),
    "changing-column-type": Fix(
        "a new column, backfill_in_batches, then switch reads (expand and contract)",
        "Rename a column",
    ),
    "ban-drop-not-null": Fix("drop NOT NULL only once no release relies on it", "Add a column"),
    WHOLE_TABLE_DML: Fix(
        "backfill_in_batches(table, key=..., values=..., pending=...)",
        "Fill or fix data in batches",
    ),
}
DEFAULT_FIX = Fix("see the 'Don't, and why' table", "Don't, and why")


@dataclass(frozen=True)
class Finding:
    revision_file: str
    rule: str
    message: str
    statement: str

    def report(self) -> str:
        fix = FIXES.get(self.rule, DEFAULT_FIX)
        return (
            f"{self.revision_file}: {self.rule}: {self.message}\n"
            f"    statement: {self.statement}\n"
            f"    fix: {fix}"
        )


@dataclass(frozen=True)
class RenderedRevision:
    python_file: Path
    sql: str


def render_revisions(alembic_ini: Path) -> list[RenderedRevision]:
    """Each revision's offline SQL, base first."""
    script = ScriptDirectory.from_config(Config(alembic_ini))
    rendered = []
    for revision in reversed(list(script.walk_revisions())):
        if isinstance(revision.down_revision, tuple):
            print(f"skipping merge revision {revision.revision}", file=sys.stderr)
            continue
        output = io.StringIO()
        config = Config(alembic_ini, output_buffer=output)
        config.attributes["configure_logger"] = False
        span = revision.revision
        if revision.down_revision:
            span = f"{revision.down_revision}:{revision.revision}"
        command.upgrade(config, span, sql=True)
        rendered.append(RenderedRevision(Path(str(revision.path)), output.getvalue()))
    return rendered


# --- the rule squawk lacks: whole-table UPDATE / DELETE -------------------------------------


def _statements(sql: str) -> Iterator[tuple[Any, str, bool]]:
    """(node, text, waived) for each top-level statement."""
    for raw in parse_sql(sql):
        start = raw.stmt_location or 0
        text = sql[start : start + raw.stmt_len] if raw.stmt_len else sql[start:]
        before = sql[:start].rstrip().rsplit("\n", 1)[-1]
        yield raw.stmt, text.strip(), before.strip() == lint_waiver(WHOLE_TABLE_DML)


def _table(node: ast.CreateStmt | ast.UpdateStmt | ast.DeleteStmt) -> str:
    return (node.relation.relname if node.relation else None) or ""


def _is_primary(constraint: Any) -> bool:
    return (
        isinstance(constraint, ast.Constraint) and constraint.contype == ConstrType.CONSTR_PRIMARY
    )


def primary_keys(sql: str, known: dict[str, set[str]]) -> None:
    """Record the primary key columns of each table that ``sql`` creates."""
    for node, _, _ in _statements(sql):
        if not isinstance(node, ast.CreateStmt):
            continue
        key: set[str] = set()
        for element in node.tableElts or ():
            if isinstance(element, ast.ColumnDef) and element.colname:
                if any(_is_primary(c) for c in element.constraints or ()):
                    key.add(element.colname)
            elif _is_primary(element):
                key.update(k.sval for k in element.keys or ())
        known[_table(node)] = key


def _is_constant(node: Any) -> bool:
    if isinstance(node, ast.TypeCast):
        return _is_constant(node.arg)
    return isinstance(node, ast.A_Const | ast.ParamRef)


def _bounds_key(node: Any, key: set[str]) -> bool:
    """Whether ``node`` (a WHERE clause) limits the key to a range, a value or a list."""
    if isinstance(node, ast.BoolExpr) and node.boolop == BoolExprType.AND_EXPR:
        return any(_bounds_key(arg, key) for arg in node.args or ())
    if not isinstance(node, ast.A_Expr) or not isinstance(node.lexpr, ast.ColumnRef):
        return False
    column = (node.lexpr.fields or (None,))[-1]
    if not isinstance(column, ast.String) or column.sval not in key:
        return False
    if node.kind == A_Expr_Kind.AEXPR_OP:
        operator = (node.name or (ast.String(sval=""),))[-1]
        comparison = isinstance(operator, ast.String) and operator.sval in {
            "=",
            "<",
            "<=",
            ">",
            ">=",
        }
        return comparison and _is_constant(node.rexpr)
    if node.kind in {A_Expr_Kind.AEXPR_IN, A_Expr_Kind.AEXPR_BETWEEN}:
        values = node.rexpr if isinstance(node.rexpr, tuple | list) else (node.rexpr,)
        return all(_is_constant(value) for value in values)
    return False


def whole_table_dml(revision: RenderedRevision, keys: dict[str, set[str]]) -> list[Finding]:
    findings = []
    for node, text, waived in _statements(revision.sql):
        if waived or not isinstance(node, ast.UpdateStmt | ast.DeleteStmt):
            continue
        table = _table(node)
        if node.whereClause is not None and _bounds_key(node.whereClause, keys.get(table, {"id"})):
            continue
        verb = "UPDATE" if isinstance(node, ast.UpdateStmt) else "DELETE"
        message = (
            f"{verb} of {table} without a primary key range: one transaction locks every row it"
            " touches until the end (writers wait, vacuum stalls, replicas lag, a failure loses"
            " it all)"
        )
        findings.append(Finding("", WHOLE_TABLE_DML, message, text))
    return findings


# --- squawk ---------------------------------------------------------------------------------


def squawk_findings(squawk: str, config: Path, files: dict[Path, RenderedRevision]) -> list[Any]:
    result = subprocess.run(
        [squawk, "--config", str(config), "--reporter", "json", *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode not in (0, 1) or not result.stdout.strip():
        print(result.stdout, result.stderr, file=sys.stderr)
        raise SystemExit(f"squawk failed (exit {result.returncode})")
    violations: list[Any] = json.loads(result.stdout)
    return violations


def _line(sql: str, number: int) -> str:
    lines = sql.splitlines()
    return lines[number].strip() if 0 <= number < len(lines) else ""


def lint(alembic_ini: Path, squawk: str) -> tuple[list[Finding], int]:
    revisions = render_revisions(alembic_ini)
    findings: list[Finding] = []
    keys: dict[str, set[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for revision in revisions:
            path = Path(tmp) / f"{revision.python_file.stem}.sql"
            path.write_text(revision.sql, encoding="utf-8")
            files[path] = revision
        config = alembic_ini.parent / ".squawk.toml"
        for violation in squawk_findings(squawk, config, files):
            revision = files[Path(violation["file"])]
            message = f"{violation['message']} ({violation.get('help') or 'no hint'})"
            statement = _line(revision.sql, violation["line"])
            where = _relative(revision.python_file, alembic_ini.parent)
            findings.append(Finding(where, violation["rule_name"], message, statement))
    for revision in revisions:
        primary_keys(revision.sql, keys)  # first: a table created in this very revision
        where = _relative(revision.python_file, alembic_ini.parent)
        for finding in whole_table_dml(revision, keys):
            findings.append(Finding(where, finding.rule, finding.message, finding.statement))
    return findings, len(revisions)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def main(argv: Sequence[str]) -> int:
    alembic_ini = Path(argv[0]).resolve() if argv else PROJECT_ROOT / "alembic.ini"
    squawk = shutil.which("squawk")
    if squawk is None:
        print("squawk is not installed: run 'uv sync' (it is a dev dependency)", file=sys.stderr)
        return 2
    findings, checked = lint(alembic_ini, squawk)
    for finding in findings:
        print(finding.report())
    print(f"Found {len(findings)} issues in {checked} files (squawk and {WHOLE_TABLE_DML})")
    return 1 if findings else 0
