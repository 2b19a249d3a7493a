"""``make lint`` on the migrations: every statement that can hurt a live database, and its fix.

    alembic-pgsafe lint [path/to/alembic.ini]   (the command line: lint_cli.py)

Each revision is rendered offline, its upgrade (``alembic upgrade <previous>:<revision>
--sql``) and its downgrade (``downgrade <revision>:<previous>``), no database needed. squawk
checks that SQL with ``.squawk.toml``; the toolkit's rules (:data:`TOOLKIT_RULES`) add what
squawk does not see: DML after DDL on the same table in one transaction, whole-table
UPDATE/DELETE, SQL that cannot be checked (``DO`` blocks), ``VACUUM FULL``, ``CLUSTER``,
``LOCK TABLE``, ``TRUNCATE``, ``json`` columns, exclusion constraints on existing tables,
enum value and schema renames, rewriting ``ALTER TABLE`` forms, and a revision whose value
is still to be written (``value_to_write``). A type change PostgreSQL makes without a rewrite
(``varchar(40)`` to ``varchar(80)`` or ``text``, say) is not a finding: the columns' types are
followed from revision to revision.

Every finding names the revision's file (and whether the upgrade or the downgrade), the
statement, and a fix PostgreSQL can follow: the toolkit's helper where one exists, and the
MIGRATIONS.md section that shows it. A rule is waived for one statement, with the reason in
the revision, by ``acknowledge_lint(rule, because=...)`` before it. In a downgrade, dropping
what the same revision's upgrade created (a table, a column, a NOT NULL) is its undo, not a
finding.
"""

import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from pglast import ast, parse_sql
from pglast.enums import (
    A_Expr_Kind,
    AlterTableType,
    BoolExprType,
    ConstrType,
    ObjectType,
    TransactionStmtKind,
)

from alembic_pgsafe.backfill_jobs import JOBS_TABLE
from alembic_pgsafe.environment import run_offline
from alembic_pgsafe.helpers import (
    UnwrittenValueError,
)

__all__ = [
    "FIXES",
    "Finding",
    "Fix",
    "fix_for",
    "lint",
    "rewrites_on_type_change",
    "squawk_binary",
]


@dataclass(frozen=True)
class Fix:
    advice: str
    section: str
    helper: str | None = None
    """The toolkit function the advice names, if any (checked to exist by the tests)."""

    def __str__(self) -> str:
        return f"{self.advice}; MIGRATIONS.md, section '{self.section}'"


def _fix(helper: str, advice: str, section: str) -> Fix:
    return Fix(advice, section, helper)


INDEX = _fix(
    "create_index_concurrently",
    "create_index_concurrently(name, table, columns), not a raw CREATE INDEX CONCURRENTLY",
    "Indexes",
)
NOT_NULL_COLUMN = _fix(
    "fill_on_insert",
    "a constant server_default, or fill_on_insert + backfill_in_batches + add_not_null (what"
    " make revision writes)",
    "Add a NOT NULL column",
)
REMOVE = Fix(
    "drop it one deploy after the release that stopped using it, then"
    " acknowledge_lint(rule, because=...) says so",
    "Remove a column or a table",
    "acknowledge_lint",
)
FOREIGN_KEY = _fix(
    "add_foreign_key",
    "add_foreign_key(name, source, referent, local, remote): NOT VALID, then VALIDATE in its own"
    " transaction, after create_index_concurrently on its columns",
    "Foreign keys",
)
CHECK = _fix(
    "add_check_constraint",
    "add_check_constraint(name, table, condition): NOT VALID, then VALIDATE in its own transaction",
    "CHECK constraints",
)
UNIQUE = _fix(
    "add_unique_constraint",
    "add_unique_constraint(name, table, columns): the index built concurrently, then attached",
    "UNIQUE constraints",
)
PRIMARY_KEY = _fix(
    "add_primary_key",
    "add_primary_key(name, table, columns): NOT NULL without a scan, the unique index built"
    " concurrently, then attached (ADD PRIMARY KEY USING INDEX)",
    "A primary key from a unique index",
)
EXCLUSION = Fix(
    "PostgreSQL has no NOT VALID and no USING INDEX for EXCLUDE, so on a table with rows it"
    " blocks reads and writes while it checks them all: declare it when the table is created,"
    " or build a new table with it and move (Rename a table); on a small table, measure the"
    " lock with make trace and acknowledge_lint",
    "Exclusion constraints",
    "acknowledge_lint",
)
TYPE_CHANGE = _fix(
    "keep_columns_in_step",
    "a new column of the new type kept in step (keep_columns_in_step), backfill_in_batches,"
    " reads switched, the old column dropped a deploy later",
    "Change a column's type",
)
REWRITE = Fix(
    "never in a deploy: it rewrites the table under ACCESS EXCLUSIVE; reclaim space or move"
    " a table outside the deploy with pg_repack (REPACK CONCURRENTLY on PostgreSQL 19+)",
    "Don't, and why",
)
SEQUENCE_COLUMN = _fix(
    "backfill_in_batches",
    "on a table with rows neither a serial nor an identity column (both rewrite it): create a"
    " sequence, add the column nullable with server_default nextval('<sequence>') (make"
    " revision writes it as a volatile default: the old rows filled by backfill_in_batches),"
    " then add_not_null and, for a key, add_unique_constraint",
    "Add a NOT NULL column",
)
SQUAWK_DOCS = "https://squawkhq.com/docs/"

FIXES: dict[str, Fix] = {
    # squawk's rules, in the toolkit's terms (its own advice is about plain SQL: a raw CREATE
    # INDEX CONCURRENTLY inside a migration fails, or leaves an INVALID index behind).
    "require-concurrent-index-creation": INDEX,
    "ban-concurrent-index-creation-in-transaction": INDEX,
    "require-concurrent-index-deletion": _fix(
        "drop_index_concurrently", "drop_index_concurrently(name, table)", "Indexes"
    ),
    "require-concurrent-reindex": _fix(
        "reindex_concurrently", "reindex_concurrently(index)", "Rebuild an index"
    ),
    "adding-required-field": NOT_NULL_COLUMN,
    "adding-not-nullable-field": _fix(
        "add_not_null",
        "add_not_null(table, column): a CHECK validated first",
        "Add a NOT NULL column",
    ),
    "adding-field-with-default": _fix(
        "backfill_in_batches",
        "a volatile default rewrites the table: add the column without it, set the default for"
        " new rows, backfill_in_batches the old ones (what make revision writes)",
        "Constant defaults",
    ),
    "adding-foreign-key-constraint": FOREIGN_KEY,
    "constraint-missing-not-valid": CHECK,
    "disallowed-unique-constraint": UNIQUE,
    "adding-serial-primary-key-field": PRIMARY_KEY,
    "renaming-column": _fix(
        "keep_columns_in_step",
        "expand and contract: a new column kept in step by keep_columns_in_step (mark it"
        " info={'renamed_from': ...} in the model, and make revision writes it), the old one"
        " dropped a deploy later",
        "Rename a column",
    ),
    "renaming-table": _fix(
        "rename_table",
        "rename_table(old, new): the old name stays as a view on the table until"
        " drop_old_table_name, a deploy later",
        "Rename a table",
    ),
    "ban-drop-column": REMOVE,
    "ban-drop-table": REMOVE,
    "ban-truncate-cascade": _fix(
        "delete_in_batches",
        "delete_in_batches(table, key=..., where=...) on each table, children first",
        "Fill or fix data in batches",
    ),
    "ban-drop-database": Fix("never from a migration", "Don't, and why"),
    "ban-drop-default": Fix(
        "only once every release still serving writes the column itself; then"
        " acknowledge_lint('ban-drop-default', because=...)",
        "Constant defaults",
        "acknowledge_lint",
    ),
    "ban-drop-constraint": Fix(
        "only once no release still serving relies on what it guarantees; then"
        " acknowledge_lint('ban-drop-constraint', because=...)",
        "Remove a column or a table",
        "acknowledge_lint",
    ),
    "changing-column-type": TYPE_CHANGE,
    "ban-drop-not-null": Fix(
        "only once no release still serving relies on the column being set; then"
        " acknowledge_lint('ban-drop-not-null', because=...)",
        "Add a column",
        "acknowledge_lint",
    ),
    "prefer-robust-stmts": Fix(
        "Alembic's transaction per revision makes a re-run safe", "What `make lint` says"
    ),
    "prefer-text-field": Fix(
        "varchar(n) is part of the API here: keep it", "What `make lint` says"
    ),
    "prefer-bigint-over-int": Fix("bigint (BigInteger)", "Create a table"),
    "prefer-bigint-over-smallint": Fix("bigint (BigInteger)", "Create a table"),
    "prefer-identity": Fix("sa.Identity() instead of a serial", "Create a table"),
    "prefer-timestamptz": Fix("DateTime(timezone=True): timestamptz", "Create a table"),
    "ban-char-field": Fix("text or varchar(n)", "Create a table"),
    "prefer-repack": REWRITE,
    "require-lock-timeout": Fix(
        "env.py sets lock_timeout: run through it", "What `env.py` does for every run"
    ),
    "require-statement-timeout": Fix(
        "env.py sets statement_timeout: run through it", "What `env.py` does for every run"
    ),
    "transaction-nesting": Fix(
        "no BEGIN/COMMIT of your own: Alembic's transaction per revision, autocommit_block()"
        " for what cannot run in one",
        "What `env.py` does for every run",
    ),
    # The toolkit's rules.
    "whole-table-dml": _fix(
        "backfill_in_batches",
        "backfill_in_batches(table, key=..., values=..., pending=...)",
        "Fill or fix data in batches",
    ),
    "dml-after-ddl": _fix(
        "backfill_in_batches",
        "let the DDL commit first: backfill_in_batches (it opens its own autocommit block), or"
        " the data change in a revision of its own",
        "Fill or fix data in batches",
    ),
    "dynamic-sql": _fix(
        "acknowledge_lint",
        "write its statements as op calls (each is then checked), or read it and"
        " acknowledge_lint('dynamic-sql', because=...)",
        "What `make lint` says",
    ),
    "vacuum-full": REWRITE,
    "cluster": REWRITE,
    "table-rewrite": REWRITE,
    "lock-table": _fix(
        "with_lock_retry",
        "no LOCK TABLE: each step takes the lock it needs, briefly, under with_lock_retry",
        "Don't, and why",
    ),
    "truncate": _fix(
        "delete_in_batches",
        "delete_in_batches(table, key=..., where=...), or drop the table a deploy after nobody"
        " uses it",
        "Remove a column or a table",
    ),
    "json-column": Fix(
        "jsonb (postgresql.JSONB): json has no equality operator, so DISTINCT, UNION and"
        " GROUP BY on it fail",
        "Add a column",
    ),
    "exclusion-constraint": EXCLUSION,
    "rename-enum-value": _fix(
        "add_enum_value",
        "add_enum_value(enum, new), move the rows in batches (backfill_in_batches), stop"
        " writing the old one; the old value stays in the type",
        "Enum values",
    ),
    "rename-schema": Fix(
        "expand and contract, as for a table: every query naming the old schema fails at once",
        "Rename a table",
    ),
    "value-to-write": _fix(
        "value_to_write",
        "replace value_to_write(...) with the value in SQL on the row's columns",
        "Add a NOT NULL column",
    ),
    "naming-convention": Fix(
        "the name the convention gives (op.f(...) in a revision; make revision writes it), or"
        " no name and let the models' convention name it",
        "What `make lint` says",
    ),
    "cannot-render": Fix(
        "the revision must render offline: run alembic upgrade <previous>:<revision> --sql to"
        " see the error",
        "Offline SQL for a DBA",
    ),
}


def fix_for(rule: str, node: Any = None) -> Fix:
    """The fix for ``rule``, refined by the statement it was found on where it matters."""
    constraint = _added_constraint(node)
    if rule == "constraint-missing-not-valid" and constraint is not None:
        return {
            ConstrType.CONSTR_FOREIGN: FOREIGN_KEY,
            ConstrType.CONSTR_UNIQUE: UNIQUE,
            ConstrType.CONSTR_PRIMARY: PRIMARY_KEY,
            ConstrType.CONSTR_EXCLUSION: EXCLUSION,
        }.get(constraint.contype, CHECK)
    column = _added_column(node)
    generated = (ConstrType.CONSTR_IDENTITY, ConstrType.CONSTR_GENERATED)
    if rule == "adding-field-with-default" and column is not None:  # noqa: SIM102 (one case each)
        if any(c.contype in generated for c in column.constraints or ()):
            return _fix(
                "fill_on_insert",
                "a plain nullable column: a sequence's nextval as its default (identity) or"
                " fill_on_insert with its expression (generated), backfill_in_batches,"
                " add_not_null",
                "Add a NOT NULL column",
            )
    if rule in ("prefer-identity", "adding-field-with-default") and _is_serial(column):
        # An identity column rewrites a table with rows too (PostgreSQL 15): never the advice
        # for ADD COLUMN, only for CREATE TABLE.
        return SEQUENCE_COLUMN
    if rule == "whole-table-dml" and isinstance(node, ast.DeleteStmt):
        return _fix(
            "delete_in_batches",
            "delete_in_batches(table, key=..., where=...)",
            "Fill or fix data in batches",
        )
    if rule in FIXES:
        return FIXES[rule]
    if rule.startswith("ban-drop-"):
        return REMOVE
    advice = f"see {SQUAWK_DOCS}{rule} and acknowledge_lint if it does not apply"
    return Fix(advice, "Don't, and why")


def _added_constraint(node: Any) -> Any:
    for command_ in _alter_commands(node):
        if command_.subtype == AlterTableType.AT_AddConstraint:
            return command_.def_
    return None


SERIAL_TYPES = frozenset({"serial", "serial2", "serial4", "serial8", "smallserial", "bigserial"})


def _is_serial(column: Any) -> bool:
    """Whether an added column (a ColumnDef) is of a serial type: a sequence made for it and
    its nextval as the default, a volatile default that rewrites the table."""
    if column is None or column.typeName is None:
        return False
    return _last(column.typeName.names).lower() in SERIAL_TYPES


def _added_column(node: Any) -> Any:
    for command_ in _alter_commands(node):
        if command_.subtype == AlterTableType.AT_AddColumn:
            return command_.def_
    return None


def _alter_commands(node: Any) -> Sequence[Any]:
    return node.cmds or () if isinstance(node, ast.AlterTableStmt) else ()


# --- one revision's SQL as statements ----------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    node: Any
    text: str
    first_line: int
    last_line: int
    waivers: frozenset[str]

    def waived(self, rule: str) -> bool:
        return rule in self.waivers


def statements(sql: str) -> list[Statement]:
    found = []
    for raw in parse_sql(sql):
        start = raw.stmt_location or 0
        text = sql[start : start + raw.stmt_len] if raw.stmt_len else sql[start:]
        leading = len(text) - len(text.lstrip())
        start += leading
        text = text.strip()
        before = sql[:start].rstrip("\n").split("\n")
        waivers = set()
        for line in reversed(before):
            if not line.startswith("--"):
                break
            words = line.split()
            if len(words) == 3 and words[1] in ("squawk-ignore", "lint-ignore"):
                waivers.add(words[2])
        first = sql.count("\n", 0, start)
        found.append(Statement(raw.stmt, text, first, first + text.count("\n"), frozenset(waivers)))
    return found


def _table(node: Any) -> str:
    relation = getattr(node, "relation", None)
    return (relation.relname if relation is not None else None) or ""


# --- the schema, followed from revision to revision --------------------------------------------


ColumnType = tuple[str, tuple[int, ...], bool]
"""(type name, type modifiers, is an array)."""


def column_type(type_name: Any) -> ColumnType:
    names = [name.sval for name in type_name.names or ()]
    modifiers = tuple(
        getattr(getattr(mod, "val", None), "ival", -1) for mod in type_name.typmods or ()
    )
    return (names[-1] if names else "", modifiers, bool(type_name.arrayBounds))


ALIASES = {"character varying": "varchar", "int": "int4", "integer": "int4", "bigint": "int8"}
BOUNDED = {"varchar", "varbit", "bpchar"}
PRECISION = {"timestamp", "timestamptz", "time", "timetz", "interval"}


def rewrites_on_type_change(old: ColumnType, new: ColumnType) -> bool:
    """Whether ``ALTER COLUMN ... TYPE`` from ``old`` to ``new`` rewrites the table.

    The changes PostgreSQL makes in the catalog only (binary-coercible, no new length or
    precision to check), each proved on a real server by the toolkit's tests: a longer or no
    length limit on varchar and varbit; varchar to text and back without a limit; numeric with
    more precision at the same scale, or no limit; more (or no) fractional precision on the
    time types; cidr to inet. Anything else rewrites.
    """
    (old_name, old_mods, old_array), (new_name, new_mods, new_array) = old, new
    old_name, new_name = ALIASES.get(old_name, old_name), ALIASES.get(new_name, new_name)
    if old_array != new_array:
        return True
    if (old_name, old_mods) == (new_name, new_mods):
        return False
    if {old_name, new_name} <= {"varchar", "text"}:
        return (
            new_name == "varchar"
            and bool(new_mods)
            and (old_name == "text" or not old_mods or new_mods[0] < old_mods[0])
        )
    if old_name == new_name and old_name in {"varbit", *PRECISION}:
        return bool(new_mods) and (not old_mods or new_mods[0] < old_mods[0])
    if old_name == new_name == "numeric":
        if not new_mods:
            return False
        if len(old_mods) != 2 or len(new_mods) != 2:
            return True
        return new_mods[1] != old_mods[1] or new_mods[0] < old_mods[0]
    return (old_name, new_name) != ("cidr", "inet")


@dataclass
class Schema:
    """Tables, their columns' types and primary keys, as the revisions so far made them."""

    columns: dict[str, dict[str, ColumnType]] = field(default_factory=dict)
    keys: dict[str, set[str]] = field(default_factory=dict)

    def apply(self, revision_statements: Sequence[Statement]) -> None:
        for statement in revision_statements:
            node = statement.node
            if isinstance(node, ast.CreateStmt):
                self._create(node)
            elif isinstance(node, ast.AlterTableStmt):
                table = self.columns.setdefault(_table(node), {})
                for cmd in _alter_commands(node):
                    if cmd.subtype == AlterTableType.AT_AddColumn and cmd.def_.typeName:
                        table[cmd.def_.colname] = column_type(cmd.def_.typeName)
                    elif cmd.subtype == AlterTableType.AT_AlterColumnType:
                        table[cmd.name] = column_type(cmd.def_.typeName)
                    elif cmd.subtype == AlterTableType.AT_DropColumn:
                        table.pop(cmd.name, None)
            elif isinstance(node, ast.RenameStmt) and node.renameType == ObjectType.OBJECT_COLUMN:
                table = self.columns.setdefault(_table(node), {})
                if node.subname in table and node.newname:
                    table[node.newname] = table.pop(node.subname)
            elif isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_TABLE:
                for name in node.objects or ():
                    self.columns.pop(name[-1].sval, None)

    def _create(self, node: ast.CreateStmt) -> None:
        table, key = _table(node), set()
        self.columns[table] = {}
        for element in node.tableElts or ():
            if isinstance(element, ast.ColumnDef) and element.colname:
                self.columns[table][element.colname] = column_type(element.typeName)
                if any(_is_primary(c) for c in element.constraints or ()):
                    key.add(element.colname)
            elif _is_primary(element):
                key.update(k.sval for k in element.keys or ())
        self.keys[table] = key


def _is_primary(constraint: Any) -> bool:
    return (
        isinstance(constraint, ast.Constraint) and constraint.contype == ConstrType.CONSTR_PRIMARY
    )


# --- the toolkit's rules -------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    revision_file: str
    direction: str
    rule: str
    message: str
    statement: str
    fix: Fix

    def report(self) -> str:
        where = self.revision_file + (" (downgrade)" if self.direction == "downgrade" else "")
        return (
            f"{where}: {self.rule}: {self.message}\n"
            f"    statement: {self.statement}\n"
            f"    fix: {self.fix}"
        )


Rule = Callable[["Context", Statement], list[tuple[str, str]]]


@dataclass
class Context:
    """What the rules know at a statement: the schema before the revision, the tables this
    revision created, and those locked against writes in the open transaction."""

    schema: Schema
    created: set[str] = field(default_factory=set)
    locked: dict[str, str] = field(default_factory=dict)
    """table -> the DDL that locked it against writes, in the open transaction."""
    in_transaction: bool = False
    """Between BEGIN and COMMIT; outside (an autocommit block), each statement commits alone."""
    naming_convention: Mapping[str, Any] | None = None
    """The models' ``MetaData.naming_convention``, when the project names its metadata."""


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


def _data_change(node: Any) -> str | None:
    """What reads or writes every row: DML, or the scan of a VALIDATE CONSTRAINT."""
    commands = _alter_commands(node)
    if commands and all(c.subtype == AlterTableType.AT_ValidateConstraint for c in commands):
        return "VALIDATE CONSTRAINT"
    if isinstance(node, ast.UpdateStmt):
        return "UPDATE"
    if isinstance(node, ast.DeleteStmt):
        return "DELETE"
    if isinstance(node, ast.InsertStmt) and isinstance(node.selectStmt, ast.SelectStmt):
        return None if node.selectStmt.valuesLists else "INSERT ... SELECT"
    return None


def whole_table_dml(context: Context, statement: Statement) -> list[tuple[str, str]]:
    node = statement.node
    if not isinstance(node, ast.UpdateStmt | ast.DeleteStmt):
        return []
    table = _table(node)
    key = context.schema.keys.get(table) or {"id"}
    if node.whereClause is not None and _bounds_key(node.whereClause, key):
        return []
    verb = "UPDATE" if isinstance(node, ast.UpdateStmt) else "DELETE"
    return [
        (
            "whole-table-dml",
            f"{verb} of {table} without a primary key range: one transaction locks every row it"
            " touches until the end (writers wait, vacuum stalls, replicas lag, a failure loses"
            " it all)",
        )
    ]


def dml_after_ddl(context: Context, statement: Statement) -> list[tuple[str, str]]:
    verb = _data_change(statement.node)
    table = _table(statement.node)
    if verb is None or table not in context.locked:
        return []
    return [
        (
            "dml-after-ddl",
            f"{verb} on {table} in the transaction of {context.locked[table]!r}: that DDL's lock"
            " is held until commit, so reads and writes of the table wait through all of it",
        )
    ]


def _writes_blocked_by(node: Any) -> str | None:
    """The table whose writes ``node`` blocks until commit (DDL on it), if any."""
    if isinstance(node, ast.AlterTableStmt):
        harmless = {AlterTableType.AT_ValidateConstraint}
        if any(cmd.subtype not in harmless for cmd in _alter_commands(node)):
            return _table(node)
    if isinstance(node, ast.IndexStmt) and not node.concurrent:
        return _table(node)
    if isinstance(node, ast.CreateTrigStmt | ast.RenameStmt | ast.LockStmt):
        return _table(node)
    return None


def one_statement_rules(context: Context, statement: Statement) -> list[tuple[str, str]]:
    node, found = statement.node, []
    if isinstance(node, ast.DoStmt):
        found.append(
            (
                "dynamic-sql",
                "a DO block: what it runs cannot be checked here (it may take any lock, rewrite"
                " any table)",
            )
        )
    elif isinstance(node, ast.VacuumStmt) and any(
        option.defname == "full" for option in node.options or ()
    ):
        found.append(("vacuum-full", "VACUUM FULL rewrites the table under ACCESS EXCLUSIVE"))
    elif isinstance(node, ast.ClusterStmt):
        found.append(("cluster", "CLUSTER rewrites the table under ACCESS EXCLUSIVE"))
    elif isinstance(node, ast.LockStmt):
        found.append(
            (
                "lock-table",
                "LOCK TABLE holds its lock until the revision commits: every query on the"
                " table queues behind it",
            )
        )
    elif isinstance(node, ast.TruncateStmt):
        found.append(
            (
                "truncate",
                "TRUNCATE takes ACCESS EXCLUSIVE and empties the table under the release still"
                " serving",
            )
        )
    elif isinstance(node, ast.AlterEnumStmt) and node.oldVal:
        found.append(
            (
                "rename-enum-value",
                f"renaming {node.oldVal!r}: the release still serving writes and compares the old"
                " value, which is gone at once",
            )
        )
    elif isinstance(node, ast.RenameStmt) and node.renameType == ObjectType.OBJECT_SCHEMA:
        found.append(("rename-schema", "every query naming the old schema fails at once"))
    found += _column_types(context, statement)
    found += _alter_table_rules(context, statement)
    return found


def _column_types(context: Context, statement: Statement) -> list[tuple[str, str]]:
    node = statement.node
    definitions = []
    if isinstance(node, ast.CreateStmt):
        definitions = [e for e in node.tableElts or () if isinstance(e, ast.ColumnDef)]
    for cmd in _alter_commands(node):
        if cmd.subtype in (AlterTableType.AT_AddColumn, AlterTableType.AT_AlterColumnType):
            definitions.append(cmd.def_)
    return [
        ("json-column", f"column {definition.colname or ''} is json".replace("  ", " "))
        for definition in definitions
        if definition.typeName is not None and column_type(definition.typeName)[0] == "json"
    ]


def _alter_table_rules(context: Context, statement: Statement) -> list[tuple[str, str]]:
    node, table, found = statement.node, _table(statement.node), []
    if table in context.created:
        return []
    for cmd in _alter_commands(node):
        if cmd.subtype == AlterTableType.AT_AddConstraint and (
            cmd.def_.contype == ConstrType.CONSTR_EXCLUSION
        ):
            found.append(
                (
                    "exclusion-constraint",
                    f"EXCLUDE on {table}, which has rows: its index is built and every row"
                    " checked under ACCESS EXCLUSIVE",
                )
            )
        elif cmd.subtype in (
            AlterTableType.AT_SetTableSpace,
            AlterTableType.AT_SetLogged,
            AlterTableType.AT_SetUnLogged,
        ):
            found.append(("table-rewrite", f"this form of ALTER TABLE rewrites {table}"))
    return found


NAMED = "\x00"
"""Stands for the name an author gives a CHECK where the convention says %(constraint_name)s."""


def conventional_names(
    convention: Mapping[str, Any],
    kind: str,
    table: str,
    columns: Sequence[str],
    referred: str | None = None,
) -> list[re.Pattern[str]]:
    """The names the naming convention gives a ``kind`` (``ix``, ``uq``, ``ck``, ``fk``, ``pk``)
    on ``table``'s ``columns``, as SQLAlchemy computes them: a pattern, since a CHECK's own
    part is the author's. Empty where the convention says nothing or needs what is unknown."""
    if kind not in convention:
        return []
    metadata = sa.MetaData(naming_convention=dict(convention))
    model = sa.Table(table, metadata, *(sa.Column(name, sa.Integer) for name in columns))
    constraint: Any
    if kind == "ix":
        constraint = sa.Index(None, *(model.c[name] for name in columns))
    elif kind == "fk" and referred is not None:
        sa.Table(referred, metadata, sa.Column("id", sa.Integer))
        constraint = sa.ForeignKeyConstraint(list(columns), [f"{referred}.id"] * len(columns))
        model.append_constraint(constraint)
    elif kind == "ck":
        constraint = sa.CheckConstraint(sa.true(), name=NAMED)
        model.append_constraint(constraint)
    elif kind == "uq":
        constraint = sa.UniqueConstraint(*columns)
        model.append_constraint(constraint)
    elif kind == "pk":
        constraint = sa.PrimaryKeyConstraint(*columns)
        model.append_constraint(constraint)
    else:
        return []
    try:
        name = sa.sql.naming._constraint_name_for_table(  # type: ignore[no-untyped-call]
            constraint, model
        )
    except (KeyError, IndexError, sa.exc.InvalidRequestError):
        return []
    if not isinstance(name, str):
        return []
    return [re.compile(re.escape(str(name)).replace(re.escape(NAMED), ".+"))]


def _named_objects(node: Any) -> Iterator[tuple[str, str, list[str], str | None]]:
    """(name, kinds it may be, columns, referred table) of each index or constraint a statement
    names: CREATE INDEX, ALTER TABLE ... ADD CONSTRAINT, a CREATE TABLE's named constraints."""
    kinds = {
        ConstrType.CONSTR_FOREIGN: "fk",
        ConstrType.CONSTR_CHECK: "ck",
        ConstrType.CONSTR_UNIQUE: "uq",
        ConstrType.CONSTR_PRIMARY: "pk",
    }
    if isinstance(node, ast.IndexStmt) and node.idxname:
        columns = [param.name for param in node.indexParams or ()]
        if all(columns):  # an expression index: the convention's column tokens say nothing
            # A unique index may be the one a UNIQUE or PRIMARY KEY constraint is built on.
            yield node.idxname, "ix uq pk" if node.unique else "ix", columns, None
        return
    constraints = [
        e for e in getattr(node, "tableElts", None) or () if isinstance(e, ast.Constraint)
    ]
    constraints += [
        cmd.def_ for cmd in _alter_commands(node) if cmd.subtype == AlterTableType.AT_AddConstraint
    ]
    for constraint in constraints:
        kind = kinds.get(constraint.contype) if constraint.contype is not None else None
        if not constraint.conname or kind is None or constraint.indexname:
            continue  # unnamed (PostgreSQL names it), or USING INDEX (the index was checked)
        keys = constraint.fk_attrs if kind == "fk" else constraint.keys
        columns = [key.sval for key in keys or ()]
        referred = constraint.pktable.relname if constraint.pktable is not None else None
        yield constraint.conname, kind, columns, referred


def naming_convention(context: Context, statement: Statement) -> list[tuple[str, str]]:
    """Names of indexes and constraints that break the models' naming convention: autogenerate
    then sees a difference where there is none, and the next revision renames or drops it."""
    convention = context.naming_convention
    if not convention:
        return []
    table, found = _table(statement.node), []
    if table in ("alembic_version", JOBS_TABLE):  # Alembic's and the toolkit's: no model's
        return []
    for name, kinds, columns, referred in _named_objects(statement.node):
        patterns = [
            pattern
            for kind in kinds.split()
            for pattern in conventional_names(convention, kind, table, columns, referred)
        ]
        if patterns and not any(pattern.fullmatch(name) for pattern in patterns):
            expected = patterns[0].pattern.replace("\\", "").replace(".+", "<name>")
            found.append(
                (
                    "naming-convention",
                    f"{name} on {table} breaks the models' naming convention, which names it"
                    f" {expected}",
                )
            )
    return found


RULES: list[Rule] = [whole_table_dml, dml_after_ddl, one_statement_rules, naming_convention]


def _catalog_only_type_change(schema: Schema, node: Any) -> bool:
    """An ALTER COLUMN ... TYPE that PostgreSQL makes without a rewrite (see
    :func:`rewrites_on_type_change`), on a column whose type the revisions so far tell."""
    commands = [
        cmd for cmd in _alter_commands(node) if cmd.subtype == AlterTableType.AT_AlterColumnType
    ]
    known = schema.columns.get(_table(node), {})
    return bool(commands) and all(
        cmd.name in known
        and cmd.def_.raw_default is None  # USING: an expression per row
        and not rewrites_on_type_change(known[cmd.name], column_type(cmd.def_.typeName))
        for cmd in commands
    )


STYLE_RULES = frozenset(
    {
        "prefer-bigint-over-int",
        "prefer-bigint-over-smallint",
        "prefer-identity",
        "prefer-timestamptz",
        "prefer-text-field",
        "ban-char-field",
    }
)
"""Rules about how new columns should be typed: a downgrade puts back what was, as it was."""


def _last(names: Any) -> str:
    """The object's own name, from a qualified name (``("public", "orders")``)."""
    return str(names[-1].sval) if names else ""


def _dropped_names(node: Any) -> list[str]:
    """The names of the objects a DROP statement drops."""
    names = []
    for obj in node.objects or ():
        if isinstance(obj, ast.TypeName):
            names.append(_last(obj.names))
        elif isinstance(obj, ast.ObjectWithArgs):
            names.append(_last(obj.objname))
        elif isinstance(obj, tuple | list):
            names.append(_last(obj))
    return names


def _undone_by_downgrade(created: "Created", rule: str, node: Any) -> bool:
    """In a downgrade, a drop of what the same revision's upgrade created is its undo, and a
    column it puts back keeps the type it had."""
    if rule in STYLE_RULES:
        return True
    if isinstance(node, ast.DropStmt):
        names = _dropped_names(node)
        if rule == "require-concurrent-index-deletion":
            # The index of a table this downgrade drops next (the upgrade created both).
            return all(created.indexes.get(name) in created.tables for name in names)
        return rule.startswith("ban-drop-") and all(name in created.objects for name in names)
    table = _table(node)
    undone = {
        AlterTableType.AT_DropColumn: created.columns,
        AlterTableType.AT_DropNotNull: created.columns | created.not_null,
        AlterTableType.AT_ColumnDefault: created.columns | created.defaults,
    }
    commands = [
        cmd
        for cmd in _alter_commands(node)
        if cmd.subtype in undone or cmd.subtype == AlterTableType.AT_DropConstraint
    ]

    def created_here(cmd: Any) -> bool:
        if table in created.tables:
            return True
        if cmd.subtype == AlterTableType.AT_DropConstraint:
            return cmd.name in created.objects
        return (table, cmd.name) in undone[cmd.subtype]

    return rule.startswith("ban-drop-") and bool(commands) and all(map(created_here, commands))


@dataclass
class Created:
    """What a revision's upgrade created: its downgrade may drop it again."""

    objects: set[str] = field(default_factory=set)
    """Tables, views, types, functions, sequences, indexes and constraints, by name."""
    tables: set[str] = field(default_factory=set)
    columns: set[tuple[str, str]] = field(default_factory=set)
    not_null: set[tuple[str, str]] = field(default_factory=set)
    defaults: set[tuple[str, str]] = field(default_factory=set)
    indexes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def by(cls, upgrade: Sequence[Statement]) -> "Created":
        created = cls()
        for statement in upgrade:
            created._add(statement.node)
        return created

    def _add(self, node: Any) -> None:
        table = _table(node)
        if isinstance(node, ast.CreateStmt):
            self.tables.add(table)
            self.objects.add(table)
        elif isinstance(node, ast.IndexStmt) and node.idxname:
            self.indexes[node.idxname] = table
            self.objects.add(node.idxname)
        elif isinstance(node, ast.ViewStmt):
            self.objects.add(getattr(node.view, "relname", ""))
        elif isinstance(node, ast.CreateEnumStmt):
            self.objects.add(_last(node.typeName))
        elif isinstance(node, ast.CreateFunctionStmt):
            self.objects.add(_last(node.funcname))
        elif isinstance(node, ast.CreateSeqStmt):
            self.objects.add(getattr(node.sequence, "relname", ""))
        for cmd in _alter_commands(node):
            if cmd.subtype == AlterTableType.AT_AddColumn:
                self.columns.add((table, cmd.def_.colname))
            elif cmd.subtype == AlterTableType.AT_SetNotNull:
                self.not_null.add((table, cmd.name))
            elif cmd.subtype == AlterTableType.AT_ColumnDefault and cmd.def_ is not None:
                self.defaults.add((table, cmd.name))
            elif cmd.subtype == AlterTableType.AT_AddConstraint and cmd.def_.conname:
                self.objects.add(cmd.def_.conname)


# --- rendering and running ------------------------------------------------------------------------


@dataclass
class Rendered:
    python_file: Path
    direction: str
    sql: str | None
    error: Exception | None = None


def _render(alembic_ini: Path, direction: str, span: str) -> str:
    """The offline SQL of ``span`` as ``alembic upgrade|downgrade span --sql`` prints it with
    the toolkit's env.py, whatever the project's env.py is: lint needs no change to it."""
    output = io.StringIO()
    config = Config(alembic_ini, output_buffer=output)
    config.attributes["configure_logger"] = False
    script = ScriptDirectory.from_config(config)
    start, destination = span.split(":")

    def revisions(revision: Any, _: MigrationContext) -> Any:
        if direction == "upgrade":
            return script._upgrade_revs(destination, revision)
        return script._downgrade_revs(destination, revision)

    with EnvironmentContext(
        config,
        script,
        fn=revisions,
        as_sql=True,
        starting_rev=start,
        destination_rev=destination,
    ):
        run_offline()
    return output.getvalue()


def render_revisions(alembic_ini: Path) -> list[tuple[Rendered, Rendered]]:
    """Each revision's offline upgrade and downgrade SQL, base first; merge revisions (several
    parents, written by ``alembic merge``) join two chains and have no SQL of their own."""
    script = _script(alembic_ini)
    rendered = []
    for revision in reversed(list(script.walk_revisions())):
        if isinstance(revision.down_revision, tuple):
            continue
        previous = revision.down_revision or "base"
        pair = []
        for direction, span in (
            ("upgrade", f"{previous}:{revision.revision}"),
            ("downgrade", f"{revision.revision}:{previous}"),
        ):
            pair.append(_rendered(alembic_ini, revision, direction, span))
        rendered.append((pair[0], pair[1]))
    return rendered


def _rendered(alembic_ini: Path, revision: Script, direction: str, span: str) -> Rendered:
    path = Path(str(revision.path))
    try:
        return Rendered(path, direction, _render(alembic_ini, direction, span))
    except Exception as exc:  # a revision that cannot render is a finding, not a crash
        return Rendered(path, direction, None, exc)


def squawk_binary() -> str | None:
    """squawk from the environment alembic-pgsafe runs in (its ``lint`` extra), else PATH's."""
    beside = Path(sys.executable).parent / "squawk"
    return str(beside) if beside.is_file() else shutil.which("squawk")


DEFAULT_SQUAWK_CONFIG = """\
# What lint gives squawk when the project has no .squawk.toml beside alembic.ini.
# Alembic's offline SQL writes its own BEGIN/COMMIT around each migration.
assume_in_transaction = false
# Alembic records a migration only when its transaction commits: a failed one leaves nothing
# half-done to step over, so IF [NOT] EXISTS is not needed (and on an index it would hide an
# INVALID leftover, which create_index_concurrently heals instead).
excluded_rules = ["prefer-robust-stmts"]
"""


def squawk_findings(squawk: str, config: Path, files: Sequence[Path]) -> list[Any]:
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


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _statement_at(found: Sequence[Statement], line: int) -> Statement | None:
    return next((s for s in found if s.first_line <= line <= s.last_line), None)


SAID_BETTER = {
    "constraint-missing-not-valid": frozenset({"exclusion-constraint"}),
    "renaming-object": frozenset({"rename-enum-value", "rename-schema"}),
}
"""squawk's rules that the toolkit's own say better for some statements (with a fix that
PostgreSQL can follow): squawk's finding is left out where one of these was found."""


def _toolkit_findings(
    context: Context,
    found: Sequence[Statement],
    where: str,
    direction: str,
    flagged: set[tuple[int, str]],
) -> Iterator[Finding]:
    for statement in found:
        node = statement.node
        if isinstance(node, ast.TransactionStmt):
            context.in_transaction = node.kind in (
                TransactionStmtKind.TRANS_STMT_BEGIN,
                TransactionStmtKind.TRANS_STMT_START,
            )
            context.locked.clear()
        for rule in RULES:
            for name, message in rule(context, statement):
                flagged.add((id(statement), name))
                if not statement.waived(name):
                    yield Finding(
                        where, direction, name, message, statement.text, fix_for(name, node)
                    )
        table = _writes_blocked_by(node)
        if isinstance(node, ast.CreateStmt):
            context.created.add(_table(node))
        elif table and context.in_transaction and table not in context.created:
            context.locked[table] = statement.text.split("\n", 1)[0][:80]


def lint(
    alembic_ini: Path,
    squawk: str,
    pairs: list[tuple[Rendered, Rendered]] | None = None,
    *,
    naming: Mapping[str, Any] | None = None,
) -> tuple[list[Finding], int]:
    """Every revision's findings, and how many revision files were checked; ``pairs`` is
    :func:`render_revisions`'s result when the caller has it already; ``naming`` the models'
    naming convention (the naming-convention rule applies only with it)."""
    revisions = render_revisions(alembic_ini) if pairs is None else pairs
    root = alembic_ini.parent
    findings: list[Finding] = []
    schema = Schema()
    flagged: set[tuple[int, str]] = set()
    with tempfile.TemporaryDirectory() as tmp:
        parsed: dict[Path, tuple[Rendered, list[Statement], Schema, Created]] = {}
        for number, (upgrade, downgrade) in enumerate(revisions):
            upgrade_statements: list[Statement] = []
            for rendered in (upgrade, downgrade):
                where = _relative(rendered.python_file, root)
                if rendered.sql is None:
                    findings.append(_render_failure(where, rendered))
                    break  # a downgrade is read against its upgrade: that must render first
                found = statements(rendered.sql)
                # A copy, of the schema as this statement finds it: the walk goes on changing it.
                upgraded = upgrade_statements if rendered.direction == "downgrade" else []
                before = _after(schema, upgraded)
                created = Created.by(upgrade_statements)
                path = Path(tmp) / f"{number:05d}_{rendered.direction}.sql"
                path.write_text(rendered.sql, encoding="utf-8")
                parsed[path] = (rendered, found, before, created)
                context = Context(before, naming_convention=naming)
                findings += _toolkit_findings(context, found, where, rendered.direction, flagged)
                if rendered.direction == "upgrade":
                    upgrade_statements = found
            schema.apply(upgrade_statements)
        config = root / ".squawk.toml"
        if not config.is_file():
            config = Path(tmp) / "squawk.toml"
            config.write_text(DEFAULT_SQUAWK_CONFIG, encoding="utf-8")
        for violation in squawk_findings(squawk, config, list(parsed)) if parsed else []:
            rendered, found, before, created = parsed[Path(violation["file"])]
            statement = _statement_at(found, violation["line"])
            node = statement.node if statement else None
            rule = violation["rule_name"]
            if statement is not None and statement.waived(rule):
                continue  # squawk reads a waiver for one line; the toolkit's, for the statement
            if rule == "changing-column-type" and _catalog_only_type_change(before, node):
                continue
            if any((id(statement), better) in flagged for better in SAID_BETTER.get(rule, ())):
                continue  # the toolkit's own rule said it, with a fix PostgreSQL can follow
            if rendered.direction == "downgrade" and _undone_by_downgrade(created, rule, node):
                continue
            message = f"{violation['message']} ({violation.get('help') or 'no hint'})"
            text = statement.text if statement else ""
            where = _relative(rendered.python_file, root)
            findings.append(
                Finding(where, rendered.direction, rule, message, text, fix_for(rule, node))
            )
    merges = sum(
        isinstance(rev.down_revision, tuple) for rev in _script(alembic_ini).walk_revisions()
    )
    return findings, len(revisions) + merges


def _script(alembic_ini: Path) -> ScriptDirectory:
    return ScriptDirectory.from_config(Config(alembic_ini))


def _after(schema: Schema, upgrade: Sequence[Statement]) -> Schema:
    after = Schema(
        {table: dict(columns) for table, columns in schema.columns.items()},
        {table: set(key) for table, key in schema.keys.items()},
    )
    after.apply(upgrade)
    return after


def _render_failure(where: str, rendered: Rendered) -> Finding:
    if isinstance(rendered.error, UnwrittenValueError):
        return Finding(
            where,
            rendered.direction,
            "value-to-write",
            str(rendered.error),
            "",
            fix_for("value-to-write"),
        )
    message = f"does not render offline: {type(rendered.error).__name__}: {rendered.error}"
    return Finding(
        where, rendered.direction, "cannot-render", message, "", fix_for("cannot-render")
    )
