"""Autogenerate that writes the toolkit's safe operations instead of Alembic's plain ones.

Problem: ``alembic revision --autogenerate`` writes what differs, not how to change it on a
live table: a plain ``create_index`` blocks writes for the whole build, a validating foreign
key blocks two tables, a NOT NULL column fails on a filled table, a renamed attribute becomes
``add_column`` + ``drop_column`` and the data is gone. ``env.py`` installs this module's
:func:`safe_revision_directives` (and its comparators, :data:`AUTOGENERATE_PLUGINS`), so what
``make revision`` writes on a table that already exists is the toolkit's way:

- an index: ``create_index_concurrently`` (``drop_index_concurrently`` to drop one);
- UNIQUE: ``add_unique_constraint``; a foreign key: ``add_foreign_key``, after the index on its
  columns (:func:`index_foreign_keys` gives every foreign key of the models one);
- CHECK (compared by name and by definition; Alembic alone ignores them): ``add_check_constraint``;
- ``SET NOT NULL``: ``add_not_null``; any other DDL: under ``with_lock_retry``;
- a NOT NULL column without a server default: the expand step (nullable, ``fill_on_insert``,
  ``backfill_in_batches``, ``add_not_null``) with :func:`value_to_write` where the value goes,
  which fails until the author writes it; a volatile server default: the same steps with the
  default as the value;
- a type change PostgreSQL makes without a rewrite (asked of it, on an empty copy of the
  table): written plainly; one that rewrites: refused, with the recipe;
- a column renamed in the model (``info={"renamed_from": "old"}``): the rename's expand step,
  and its contract once the mark is gone; a column that disappears while one of the same type
  appears, unmarked: refused, never an add and a drop.

Tables created in the same revision keep Alembic's plain operations: nobody uses them yet.
A refusal ends ``make revision`` with a ``FAILED:`` line, one bullet per change, and no file.
"""

import copy
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import alembic_postgresql_enum  # noqa: F401  (registers its enum comparators on import)
import sqlalchemy as sa
from alembic.autogenerate import render_op_text, renderers
from alembic.autogenerate.api import AutogenContext
from alembic.operations import Operations, ops
from alembic.runtime.migration import MigrationContext
from alembic.runtime.plugins import Plugin
from alembic.util import DispatchPriority, PriorityDispatchResult
from alembic_postgresql_enum.operations.add_enum_values import AddEnumValuesOp
from alembic_postgresql_enum.operations.sync_enum_values import SyncEnumValuesOp
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError

from alembic_pgsafe.helpers import MigrationSafetyError

__all__ = [
    "AUTOGENERATE_PLUGINS",
    "RENAMED_FROM",
    "RefusedChange",
    "ToolkitStep",
    "describe_difference",
    "describe_differences",
    "index_foreign_keys",
    "rewrites_table",
    "safe_revision_directives",
]

log = logging.getLogger("alembic.autogenerate.toolkit")

TOOLKIT = __name__.rpartition(".")[0]
PLUGIN = __name__
AUTOGENERATE_PLUGINS = ["alembic.autogenerate.*", "alembic.ext.checkconstraint_byname", PLUGIN]
"""Alembic's comparators, its CHECK-by-name one, and this module's CHECK-by-definition one."""
RENAMED_FROM = "renamed_from"
"""The key of a column's ``info`` that says it is a renamed column: ``info={"renamed_from":
"phone"}``."""
PROBE = "toolkit_probe"
"""The temporary table a question to PostgreSQL is asked on (in a savepoint, rolled back)."""


class RefusedChange(MigrationSafetyError):
    """Autogenerate found a change it will not write as it stands; the message says what to do."""


# --- what a rewritten revision holds --------------------------------------------------------


class Code(str):
    """Python source, written as it is (other values are written as their ``repr``)."""


def _long_string(value: str, width: int = 72) -> str:
    """A string literal in pieces of at most ``width`` characters (ruff leaves long literals)."""
    pieces: list[str] = []
    for word in value.split(" "):
        if pieces and len(pieces[-1]) + len(word) < width:
            pieces[-1] += f" {word}"
        else:
            pieces.append(word if not pieces else f" {word}")
    return "(" + " ".join(repr(piece) for piece in pieces) + ")"


def py(value: Any) -> str:
    if isinstance(value, Code):
        return str(value)
    if isinstance(value, str) and len(value) > 72:
        return _long_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(py(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{py(k)}: {py(v)}" for k, v in value.items()) + "}"
    return repr(value)


def call(helper: str, *args: Any, **kwargs: Any) -> str:
    """``helper(args, key=value)``; keyword arguments that are None are left out."""
    written = [py(arg) for arg in args]
    written += [f"{key}={py(value)}" for key, value in kwargs.items() if value is not None]
    return f"{helper}({', '.join(written)})"


Lines = Callable[[AutogenContext], list[str]]


class ToolkitStep(ops.MigrateOperation):
    """Toolkit calls written in place of the Alembic operations in ``ops``.

    ``ops`` keeps those operations, so ``alembic check`` still reports the difference they
    stand for; ``helpers`` are imported from the toolkit by the revision.
    """

    def __init__(
        self, replaces: Sequence[ops.MigrateOperation], lines: Lines, helpers: Iterable[str] = ()
    ) -> None:
        self.ops = list(replaces)
        self.lines = lines
        self.helpers = tuple(helpers)


@renderers.dispatch_for(ToolkitStep)
def _render_step(autogen_context: AutogenContext, step: ToolkitStep) -> list[str]:
    for helper in step.helpers:
        autogen_context.imports.add(f"from {TOOLKIT} import {helper}")
    return step.lines(autogen_context)


def alembic_op(operation: ops.MigrateOperation) -> Callable[[AutogenContext], Code]:
    """Alembic's own rendering of ``operation`` (``op.add_column(...)``), for use in a step.

    A column is added ``if_not_exists`` and dropped ``if_exists``: a revision that failed after
    one of its helpers committed (and with it the add or the drop) runs again to the end."""
    rendered = copy.copy(operation)
    if isinstance(rendered, ops.AddColumnOp) and rendered.if_not_exists is None:
        rendered.if_not_exists = True
    elif isinstance(rendered, ops.DropColumnOp) and rendered.if_exists is None:
        rendered.if_exists = True
    return lambda context: Code(render_op_text(context, rendered))


def lock_retried(operation: ops.MigrateOperation, table: str) -> ToolkitStep:
    """``with_lock_retry(lambda: op.<operation>, table=...)``: DDL that queues for its lock."""
    return ToolkitStep(
        [operation],
        lambda context: [
            call("with_lock_retry", Code(f"lambda: {alembic_op(operation)(context)}"), table=table)
        ],
        ["with_lock_retry"],
    )


def comment(text: str) -> list[str]:
    """``text`` as comment lines of at most 96 characters."""
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + len(word) < 96:
            lines[-1] += f" {word}"
        else:
            lines.append(f"# {word}")
    return lines


def _sql(element: Any, dialect: sa.Dialect) -> str:
    if isinstance(element, str):
        return element
    if isinstance(element, sa.TextClause):
        return element.text
    return str(element.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


# --- questions to the database ----------------------------------------------------------------


def _quote(connection: Connection, name: str) -> str:
    return connection.dialect.identifier_preparer.quote(name)


def _storage(connection: Connection) -> set[tuple[str, int]]:
    """The files the probe table and its indexes live in: a rewrite gives them new ones."""
    rows = connection.execute(
        sa.text(
            "SELECT c.relname, c.relfilenode FROM pg_class AS c WHERE c.oid = to_regclass(:probe)"
            " OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = to_regclass(:probe))"
        ),
        {"probe": f"pg_temp.{PROBE}"},
    )
    return {(row[0], row[1]) for row in rows}


def _on_probe(operation: ops.MigrateOperation) -> ops.MigrateOperation:
    probe_op = copy.copy(operation)
    if isinstance(probe_op, ops.AddColumnOp):
        probe_op.column = probe_op.column._copy()
    probe_op.table_name = PROBE  # type: ignore[attr-defined]  # every table operation has it
    return probe_op


def rewrites_table(
    connection: Connection,
    table: str,
    operation: ops.MigrateOperation,
    *,
    after: ops.MigrateOperation | None = None,
) -> bool:
    """Whether ``operation`` on ``table`` (``after`` another one) rewrites it or rebuilds one of
    its indexes.

    Asked of PostgreSQL itself: the operation runs on an empty copy of the table (columns,
    defaults, constraints, indexes), and a new relfilenode is a rewrite; all of it in a
    savepoint that is rolled back. An operation PostgreSQL refuses there (a type change with no
    implicit cast needs ``USING``, which rewrites) counts as a rewrite. A downgrade's operation
    is asked ``after`` the upgrade's, on the table as the upgrade leaves it.
    """
    savepoint = connection.begin_nested()
    try:
        connection.execute(
            sa.text(f"CREATE TEMP TABLE {PROBE} (LIKE {_quote(connection, table)} INCLUDING ALL)")
        )
        operations = Operations(MigrationContext.configure(connection))
        for step in (after, operation):  # a new enum type is created by its own operation
            column = getattr(step, "column", None)
            if isinstance(column, sa.Column) and isinstance(column.type, sa.Enum):
                postgresql.ENUM(*column.type.enums, name=column.type.name).create(
                    connection, checkfirst=True
                )
        if after is not None:
            operations.invoke(_on_probe(after))
        before = _storage(connection)
        operations.invoke(_on_probe(operation))
        return not before <= _storage(connection)  # a relation got new storage
    except DBAPIError:
        return True
    finally:
        savepoint.rollback()


def _columns(connection: Connection, table: str) -> dict[str, dict[str, Any]]:
    return {column["name"]: dict(column) for column in sa.inspect(connection).get_columns(table)}


def _sync_trigger_partner(connection: Connection, table: str, old: str) -> str | None:
    """The column ``keep_columns_in_step(table, old, <it>)`` keeps ``old`` in step with, if any."""
    prefix = f"{table}_sync_{old}_"
    names = connection.execute(
        sa.text(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass(:table)"
            " AND NOT tgisinternal AND starts_with(tgname, :prefix)"
        ),
        {"table": table, "prefix": prefix},
    ).scalars()
    return next((name[len(prefix) :] for name in names), None)


# --- the models' side -------------------------------------------------------------------------


def _starts_with(columns: Sequence[str], leading: Sequence[str]) -> bool:
    return list(columns[: len(leading)]) == list(leading)


def index_foreign_keys(metadata: sa.MetaData) -> sa.MetaData:
    """Give every foreign key of ``metadata`` an index on its columns, unless one starts with them.

    PostgreSQL indexes the referenced key, not the referencing columns: without the index every
    delete (or key update) in the referenced table scans this one, under its locks. Django does
    the same for every ForeignKey. The index is named by the naming convention; autogenerate
    writes it (concurrently, on a table that exists) before the foreign key. Idempotent.
    """
    for table in metadata.tables.values():
        covered = [
            [column.name for column in index.columns] for index in table.indexes if index.columns
        ]
        covered += [
            [column.name for column in constraint.columns]
            for constraint in table.constraints
            if isinstance(constraint, sa.UniqueConstraint | sa.PrimaryKeyConstraint)
        ]
        for foreign_key in table.foreign_key_constraints:
            columns = [column.name for column in foreign_key.columns]
            if not any(_starts_with(existing, columns) for existing in covered):
                sa.Index(None, *(table.c[name] for name in columns), info={"toolkit": "fk index"})
                covered.append(columns)
    return metadata


def _read_back(connection: Connection, table: sa.Table, checks: dict[str, Any]) -> dict[str, str]:
    """CHECK constraints (name: condition) as PostgreSQL writes them back, declared on a
    temporary table with ``table``'s columns."""
    if not checks:
        return {}
    probe = sa.Table(
        PROBE,
        sa.MetaData(),
        *(sa.Column(column.name, column.type) for column in table.columns),
        *(sa.CheckConstraint(condition, name=name) for name, condition in checks.items()),
        prefixes=["TEMPORARY"],
    )
    savepoint = connection.begin_nested()
    try:
        probe.create(connection)
        return _reflected_checks(connection, f"pg_temp.{PROBE}")
    finally:
        savepoint.rollback()


def _check_definitions(connection: Connection, table: sa.Table) -> dict[str, str]:
    """The CHECK constraints of ``table`` (a model) as PostgreSQL writes them back."""
    checks = {
        str(constraint.name): constraint.sqltext
        for constraint in table.constraints
        if isinstance(constraint, sa.CheckConstraint) and constraint.name
    }
    return _read_back(connection, table, checks)


def _same_when_read_back(connection: Connection, table: sa.Table, one: str, other: str) -> bool:
    """PostgreSQL does not read back every condition it writes as the same condition: ``x IN
    ('a', 'b')`` is written ``x = ANY ((ARRAY['a', 'b'])::text[])``, which reads back as an
    array of casts. A database restored from a dump (or built by a squashed baseline) holds
    the second form: both, read back once more, are the same."""
    conditions = {"one": one, "other": other}
    try:
        again = _read_back(
            connection,
            table,
            {name: sa.text(text.removeprefix("CHECK ")) for name, text in conditions.items()},
        )
    except sa.exc.DBAPIError:  # it names a column the model no longer has: they differ
        return False
    return again["one"] == again["other"]


def _written_back_default(connection: Connection, column: sa.Column[Any]) -> str | None:
    """``column``'s server default as PostgreSQL writes it back (declared on a temporary table,
    in a savepoint rolled back); ``None`` when PostgreSQL refuses it there."""
    probe = sa.Table(
        PROBE,
        sa.MetaData(),
        sa.Column("value", column.type, server_default=column.server_default),
        prefixes=["TEMPORARY"],
    )
    savepoint = connection.begin_nested()
    try:
        probe.create(connection)
        written = connection.execute(
            sa.text(
                "SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef"
                " WHERE adrelid = to_regclass(:probe)"
            ),
            {"probe": f"pg_temp.{PROBE}"},
        ).scalar()
    except DBAPIError:
        return None
    finally:
        savepoint.rollback()
    return str(written) if written is not None else None


def _compare_default_as_written_back(
    autogen_context: AutogenContext,
    alter_column_op: ops.AlterColumnOp,
    schema: str | None,
    tname: str,
    cname: str,
    conn_col: sa.Column[Any],
    metadata_col: sa.Column[Any],
) -> PriorityDispatchResult:
    """A server default Alembic takes for changed that PostgreSQL writes back as the one the
    database has is no change: ``gen_random_uuid()::text`` is stored as
    ``(gen_random_uuid())::text``, which Alembic alone reports on every run."""
    connection = autogen_context.connection
    changed = alter_column_op.modify_server_default
    default = metadata_col.server_default
    existing = getattr(conn_col.server_default, "arg", None)
    if (
        connection is None
        or changed in (None, False)
        or not isinstance(getattr(default, "arg", None), sa.TextClause | sa.ColumnElement)
        or not isinstance(existing, sa.TextClause)
    ):
        return PriorityDispatchResult.CONTINUE
    if _written_back_default(connection, metadata_col) == existing.text:
        alter_column_op.modify_server_default = False
    return PriorityDispatchResult.CONTINUE


def _reflected_checks(connection: Connection, table: str) -> dict[str, str]:
    rows = connection.execute(
        sa.text(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = to_regclass(:table) AND contype = 'c'"
        ),
        {"table": table},
    )
    return {row[0]: row[1].removesuffix(" NOT VALID") for row in rows}


def _compare_check_definitions(
    autogen_context: AutogenContext,
    modify_table_ops: ops.ModifyTableOps,
    schema: str | None,
    table_name: str,
    conn_table: sa.Table | None,
    metadata_table: sa.Table | None,
) -> PriorityDispatchResult:
    """A CHECK whose definition changed in the model: dropped and added again (Alembic compares
    CHECK constraints by name only). PostgreSQL normalises both sides, so that ``x>0`` and
    ``(x > 0)`` are the same constraint."""
    connection = autogen_context.connection
    if conn_table is None or metadata_table is None or connection is None or schema:
        return PriorityDispatchResult.CONTINUE
    modelled = _check_definitions(connection, metadata_table)
    existing = _reflected_checks(connection, table_name)
    for name in sorted(modelled.keys() & existing.keys()):
        if modelled[name] == existing[name] or _same_when_read_back(
            connection, metadata_table, modelled[name], existing[name]
        ):
            continue
        log.info("Detected changed check constraint %r on table %r", name, table_name)
        [constraint] = [c for c in metadata_table.constraints if c.name == name]
        as_it_is = sa.CheckConstraint(sa.text(existing[name].removeprefix("CHECK ")), name=name)
        sa.Table(table_name, sa.MetaData(), as_it_is)  # what the downgrade puts back
        modify_table_ops.ops.append(ops.DropConstraintOp.from_constraint(as_it_is))
        modify_table_ops.ops.append(ops.AddConstraintOp.from_constraint(constraint))
    return PriorityDispatchResult.CONTINUE


def setup(plugin: Plugin) -> None:
    plugin.add_autogenerate_comparator(
        _compare_check_definitions, "table", "checkconstraint_definitions"
    )
    plugin.add_autogenerate_comparator(
        _compare_default_as_written_back,
        "column",
        "server_default_written_back",  # after Alembic's, which stops its own subgroup
        priority=DispatchPriority.LAST,
    )


Plugin.setup_plugin_from_module(sys.modules[__name__], PLUGIN)


# --- differences, as a person reads them -------------------------------------------------------


def _kind(constraint: Any) -> str:
    kinds = {
        sa.CheckConstraint: "CHECK",
        sa.UniqueConstraint: "UNIQUE",
        sa.ForeignKeyConstraint: "foreign key",
        sa.PrimaryKeyConstraint: "primary key",
    }
    return next(
        (name for kind, name in kinds.items() if isinstance(constraint, kind)), "constraint"
    )


def _sides(added: bool) -> str:
    return "in the models, not in the database" if added else "in the database, not in the models"


def describe_difference(diff: tuple[Any, ...]) -> str:
    """One of ``alembic check``'s differences as a line naming the table, the column and what
    differs (``posts.created_on: nullable in the database, NOT NULL in the models``)."""
    what = diff[0]
    if what in ("add_table", "remove_table"):
        return f"table {diff[1].name}: {_sides(what == 'add_table')}"
    if what in ("add_column", "remove_column"):
        return f"{diff[2]}.{diff[3].name}: {_sides(what == 'add_column')}"
    if what in ("add_index", "remove_index"):
        index = diff[1]
        return f"{index.table.name}: index {index.name} {_sides(what == 'add_index')}"
    if what in ("add_constraint", "remove_constraint", "add_fk", "remove_fk"):
        constraint = diff[1]
        added = what.startswith("add")
        return f"{constraint.table.name}: {_kind(constraint)} {constraint.name} {_sides(added)}"
    if what.startswith("modify_"):
        table, column, database, models = diff[2], diff[3], diff[5], diff[6]
        if what == "modify_nullable":
            null = {True: "nullable", False: "NOT NULL"}
            return (
                f"{table}.{column}: {null[database]} in the database, {null[models]} in the models"
            )
        attribute = what.removeprefix("modify_").replace("_", " ")
        return f"{table}.{column}: {attribute} {database} in the database, {models} in the models"
    return repr(diff)


def describe_differences(diffs: Sequence[Any]) -> list[str]:
    """:func:`describe_difference` of each (a column's several changes come as a list)."""
    lines = []
    for diff in diffs:
        lines += [describe_difference(d) for d in (diff if isinstance(diff, list) else [diff])]
    return lines


# --- the rewrite ------------------------------------------------------------------------------


@dataclass
class Revision:
    """One autogenerated revision: what it creates, and what the upgrade decided for the
    downgrade to undo (the downgrade is rewritten after the upgrade)."""

    connection: Connection
    metadata: sa.MetaData
    created_tables: set[str] = field(default_factory=set)
    filled: set[tuple[str, str]] = field(default_factory=set)
    renamed: dict[tuple[str, str], str] = field(default_factory=dict)
    contracted: dict[tuple[str, str], str] = field(default_factory=dict)
    refusals: list[str] = field(default_factory=list)

    def model_column(self, table: str, column: str) -> sa.Column[Any] | None:
        model = self.metadata.tables.get(table)
        return model.c.get(column) if model is not None else None

    def renamed_to(self, table: str, old: str) -> str | None:
        """The model column of ``table`` that says it was ``old``."""
        model = self.metadata.tables.get(table)
        if model is None:
            return None
        return next((c.name for c in model.columns if c.info.get(RENAMED_FROM) == old), None)

    def table_clause(self, table: str, *also: str) -> str:
        """``sa.table(...)`` source for ``table``, with the columns of its model (and ``also``):
        what a revision's data steps name, written out so the author can name any of them."""
        model = self.metadata.tables.get(table)
        names = [column.name for column in model.columns] if model is not None else []
        names += [name for name in also if name not in names]
        columns = ", ".join(f"sa.column({name!r})" for name in names)
        return f"{_table_var(table)} = sa.table({table!r}, {columns})"

    def renamed_from(self, table: str, column: str) -> str | None:
        """The old name the model gives ``table.column``, if it marks it renamed."""
        model_column = self.model_column(table, column)
        return model_column.info.get(RENAMED_FROM) if model_column is not None else None

    def key(self, table: str) -> str | None:
        model = self.metadata.tables.get(table)
        primary = list(model.primary_key.columns) if model is not None else []
        return primary[0].name if len(primary) == 1 else None


def _type_family(type_: sa.types.TypeEngine[Any]) -> Any:
    return type_._type_affinity


def _table_var(table: str) -> str:
    return table if table.isidentifier() else "table"


def _without(column: sa.Column[Any], **changes: Any) -> sa.Column[Any]:
    copied = column._copy()
    for name, value in changes.items():
        setattr(copied, name, value)
    return copied


def _expand_with_value(
    revision: Revision,
    operation: ops.AddColumnOp,
    value: Callable[[str], str],
    *,
    intro: list[str],
    fill: bool,
    default: Any = None,
) -> ToolkitStep:
    """Add ``operation``'s column nullable, fill it (trigger or default), backfill, NOT NULL."""
    table, column = operation.table_name, operation.column
    key = revision.key(table)
    if key is None:
        revision.refusals.append(
            f"{table}.{column.name}: a backfill needs a single-column primary key on {table};"
            " add the column nullable, fill it by hand, then add_not_null"
        )
    var = _table_var(table)
    label = f"{table}.{column.name}"
    nullable = ops.AddColumnOp(table, _without(column, nullable=True, server_default=None))
    set_default = ops.AlterColumnOp(
        table, column.name, modify_server_default=default, existing_type=column.type
    )
    helpers = ["with_lock_retry", "backfill_in_batches"]
    helpers += ["fill_on_insert"] if fill else []
    helpers += [] if column.nullable else ["add_not_null"]
    if fill:
        helpers.append("value_to_write")

    def lines(context: AutogenContext) -> list[str]:
        written = [*intro, revision.table_clause(table, str(key), column.name)]
        if fill:
            written.append(f"{column.name}_value = {value(var)}")
        retry = "lambda: {}"
        written.append(
            call("with_lock_retry", Code(retry.format(alembic_op(nullable)(context))), table=table)
        )
        if fill:
            written.append(
                call("fill_on_insert", Code(var), column.name, Code(f"{column.name}_value"))
            )
        else:
            written.append(
                call(
                    "with_lock_retry",
                    Code(retry.format(alembic_op(set_default)(context))),
                    table=table,
                )
            )
        filled_value = Code(f"{column.name}_value") if fill else Code(value(var))
        written.append(
            call(
                "backfill_in_batches",
                Code(var),
                key=Code(f"{var}.c[{key!r}]"),
                values={column.name: filled_value},
                pending=Code(f"{var}.c[{column.name!r}].is_(None)"),
                label=label,
            )
        )
        if not column.nullable:
            written.append(call("add_not_null", table, column.name))
        return written

    return ToolkitStep([operation], lines, helpers)


def _add_column(
    revision: Revision, operation: ops.AddColumnOp, *, upgrading: bool
) -> list[ops.MigrateOperation]:
    table, column = operation.table_name, operation.column
    label = f"{table}.{column.name}"
    if not upgrading:
        return [_restore_dropped(revision, operation)]
    generated = column.identity is not None or column.computed is not None
    if column.server_default is None and not column.nullable and not generated:
        intro = comment(
            f"{label} is NOT NULL without a server default, on a table that exists: the release"
            " still serving inserts rows without it. The expand step below adds it nullable,"
            " fills it on insert and in batches, then makes it NOT NULL. Write its value in SQL"
            " on the row instead of value_to_write (e.g."
            f" sa.func.lower({_table_var(table)}.c[...])): a constant belongs in the model's"
            " server_default; a value only the application knows keeps the column nullable for"
            " a release (MIGRATIONS.md, 'Add a NOT NULL column')."
        )
        revision.filled.add((table, column.name))
        return [
            _expand_with_value(
                revision,
                operation,
                lambda var: call("value_to_write", label),
                intro=intro,
                fill=True,
            )
        ]
    if not rewrites_table(revision.connection, table, operation):
        return [lock_retried(operation, table)]
    if column.identity is not None:
        revision.refusals.append(
            f"{label}: adding an identity column rewrites {table} under ACCESS EXCLUSIVE. Add a"
            " sequence (op.execute(sa.schema.CreateSequence(...))) and the column with"
            " server_default=sa.text(\"nextval('<sequence>')\"): make revision then writes it"
            " as a volatile default, filled in batches (MIGRATIONS.md, 'Add a NOT NULL column')"
        )
        return [operation]
    if generated:
        revision.refusals.append(
            f"{label}: adding a stored generated column rewrites {table} under ACCESS EXCLUSIVE."
            " Add a plain column and keep it filled by a trigger: fill_on_insert with its"
            " expression, backfill_in_batches, add_not_null (MIGRATIONS.md, 'Add a NOT NULL"
            " column')"
        )
        return [operation]
    default = column.server_default
    expression = _sql(getattr(default, "arg", default), revision.connection.dialect)
    intro = comment(
        f"{label}: its server default ({expression}) is volatile, so adding the column with it"
        " would rewrite the table under ACCESS EXCLUSIVE. Instead: added without it, the default"
        " set for new rows (catalog-only), the old rows filled in batches with the same"
        f" expression{'' if column.nullable else ', then NOT NULL'}."
    )
    return [
        _expand_with_value(
            revision,
            operation,
            lambda var: call("sa.literal_column", expression),
            intro=intro,
            fill=False,
            default=default,
        )
    ]


def _restore_dropped(revision: Revision, operation: ops.AddColumnOp) -> ToolkitStep:
    """The downgrade of a column's removal: back nullable and empty (its values are gone), with
    its server default where adding that does not rewrite the table."""
    table, column = operation.table_name, operation.column
    restored = ops.AddColumnOp(table, _without(column, nullable=True))
    if column.server_default is not None and rewrites_table(
        revision.connection, table, restored, after=operation.reverse()
    ):
        restored = ops.AddColumnOp(table, _without(column, nullable=True, server_default=None))
    step = lock_retried(restored, table)
    intro = comment(f"{table}.{column.name} comes back nullable and empty: its values are gone.")
    return ToolkitStep([operation], lambda context: [*intro, *step.lines(context)], step.helpers)


def _kept_in_step(revision: Revision, added: ops.AddColumnOp, old: str, new: str) -> Lines:
    """Add ``added``'s column, keep ``old`` and ``new`` in step (a trigger), and fill the added
    one from the other in batches: a rename's expand, or its contract's undo."""
    table, target = added.table_name, added.column.name
    source = old if target == new else new
    var, key, c = _table_var(table), revision.key(table), f"{_table_var(table)}.c"

    def lines(context: AutogenContext) -> list[str]:
        return [
            f"{var} = sa.table({table!r}, sa.column({key!r}), sa.column({old!r}),"
            f" sa.column({new!r}))",
            call("with_lock_retry", Code(f"lambda: {alembic_op(added)(context)}"), table=table),
            call("keep_columns_in_step", table, old, new),
            call(
                "backfill_in_batches",
                Code(var),
                key=Code(f"{c}[{key!r}]"),
                values={target: Code(f"{c}[{source!r}]")},
                pending=Code(f"{c}[{target!r}].is_(None) & {c}[{source!r}].is_not(None)"),
                label=f"{table}.{target}",
            ),
        ]

    return lines


def _rename_expand(revision: Revision, operation: ops.AddColumnOp, old: str) -> ToolkitStep:
    table, column = operation.table_name, operation.column
    new = column.name
    # No default yet: the trigger fills the new column from the old one, and a default would
    # win over the value the release still serving writes there. It comes with the contract.
    nullable = ops.AddColumnOp(table, _without(column, nullable=True, server_default=None))
    revision.renamed[(table, new)] = old
    intro = comment(
        f"{table}.{old} renamed to {table}.{new}: the expand step. Both columns are kept in step"
        f" while the release still serving writes {old}; the contract step (drop {old}) is"
        f" written once the model no longer says renamed_from, one deploy later (MIGRATIONS.md,"
        " 'Rename a column')."
    )

    kept = _kept_in_step(revision, nullable, old, new)

    def lines(context: AutogenContext) -> list[str]:
        written = [*intro, *kept(context)]
        if not column.nullable:
            written.append(call("add_not_null", table, new))
        return written

    helpers = ["with_lock_retry", "keep_columns_in_step", "backfill_in_batches"]
    return ToolkitStep([operation], lines, helpers + ([] if column.nullable else ["add_not_null"]))


def _contract(revision: Revision, operation: ops.DropColumnOp, new: str) -> ToolkitStep:
    table, old = operation.table_name, operation.column_name
    revision.contracted[(table, old)] = new
    because = f"the contract of the rename {table}.{old} -> {new}: no release names {old} since"

    def lines(context: AutogenContext) -> list[str]:
        return [
            *comment(
                f"{table}.{old} was renamed to {table}.{new} in an earlier deploy, whose release"
                f" no longer names {old}: the contract step."
            ),
            call("stop_keeping_columns_in_step", table, old, new),
            call("acknowledge_lint", "ban-drop-column", because=f"{because} the expand"),
            call("with_lock_retry", Code(f"lambda: {alembic_op(operation)(context)}"), table=table),
        ]

    helpers = ["stop_keeping_columns_in_step", "acknowledge_lint", "with_lock_retry"]
    return ToolkitStep([operation], lines, helpers)


def _drop_column(operation: ops.DropColumnOp, *, upgrading: bool) -> ToolkitStep:
    table, column = operation.table_name, operation.column_name
    step = lock_retried(operation, table)
    if not upgrading:  # the downgrade of an added column
        return step
    intro = comment(
        f"{table}.{column} is gone from the model. Drop it one deploy after the release that"
        " stopped reading and writing it, and say so with acknowledge_lint('ban-drop-column',"
        " because=...); until then keep it in the model (MIGRATIONS.md, 'Remove a column')."
    )
    render = step.lines
    return ToolkitStep(step.ops, lambda context: [*intro, *render(context)], step.helpers)


def _alter_column(
    revision: Revision, operation: ops.AlterColumnOp, *, upgrading: bool
) -> list[ops.MigrateOperation]:
    table, column = operation.table_name, operation.column_name
    written: list[ops.MigrateOperation] = []
    rest = copy.copy(operation)
    if operation.modify_nullable is False:
        rest.modify_nullable = None
        not_null = copy.copy(operation)
        for attribute in ("modify_type", "modify_server_default", "modify_comment"):
            setattr(not_null, attribute, False if attribute != "modify_type" else None)
        written.append(
            _not_null(revision, not_null, operation)
            if upgrading
            else ToolkitStep(
                [not_null],
                lambda context: [call("add_not_null", table, column)],
                ["add_not_null"],
            )
        )
    required = operation.modify_nullable is False or (
        operation.modify_nullable is None and operation.existing_nullable is False
    )
    if upgrading and operation.modify_server_default is None and required:
        revision.refusals.append(
            f"{table}.{column} loses its server default while NOT NULL: the release still"
            f" serving inserts {table} without {column}, and each such insert would fail. Keep"
            " the default in the model until every release serving writes the column itself;"
            " then write the removal by hand, with_lock_retry(lambda: op.alter_column("
            f"{table!r}, {column!r}, server_default=None), table={table!r}) (MIGRATIONS.md,"
            " 'Constant defaults')"
        )
        rest.modify_server_default = False
    after = None if upgrading else operation.reverse()
    if operation.modify_type is not None and rewrites_table(
        revision.connection, table, operation, after=after
    ):
        rest.modify_type = None
        old, new = operation.existing_type, operation.modify_type
        if upgrading:
            revision.refusals.append(
                f"{table}.{column}: {old} -> {new} rewrites {table} (and its indexes) under"
                " ACCESS EXCLUSIVE: no reads, no writes. Change it as a new column kept in step,"
                " backfilled, then switched to (MIGRATIONS.md, 'Change a column's type')"
            )
        else:
            text = comment(
                f"Not changed back: {table}.{column} stays {old}, because {old} -> {new} would"
                f" rewrite {table} under ACCESS EXCLUSIVE; the releases before accept it."
            )
            written.append(ToolkitStep([], lambda context: text))
    if any(
        getattr(rest, attribute) not in (None, False)
        for attribute in (
            "modify_nullable",
            "modify_type",
            "modify_server_default",
            "modify_comment",
        )
    ):
        written.insert(0, lock_retried(rest, table))
    return written


def _default_value(default: Any, dialect: sa.Dialect) -> Code | None:
    """A server default as the value a backfill writes: its SQL, as the DDL writes it (a
    constant ``server_default="x"`` is the literal ``'x'``, whose type PostgreSQL infers)."""
    if default is None or default is False:
        return None
    argument = getattr(default, "arg", default)
    if isinstance(argument, str) and isinstance(default, sa.DefaultClause):
        argument = sa.literal(argument)  # server_default="x"
    return Code(call("sa.literal_column", _sql(argument, dialect)))


def _not_null(
    revision: Revision, not_null: ops.AlterColumnOp, operation: ops.AlterColumnOp
) -> ToolkitStep:
    """An existing column made NOT NULL. With a server default (set by this revision or
    already there), the rows the old release left NULL are filled with it first, in batches:
    a bare NOT NULL fails on a table that holds NULLs however empty the test databases are.
    Without one, ``add_not_null``, which names the NULL rows if there are any."""
    table, column = operation.table_name, operation.column_name
    dialect = revision.connection.dialect
    value = _default_value(operation.modify_server_default, dialect)
    if value is None:
        value = _default_value(operation.existing_server_default, dialect)
    key = revision.key(table)
    if value is None or key is None:
        intro = comment(
            f"{table}.{column} becomes NOT NULL with no default to fill its NULLs with:"
            " add_not_null stops, naming them, if the table holds any. Fill them first"
            " (backfill_in_batches) or give the column a server_default in the model."
        )
        return ToolkitStep(
            [not_null],
            lambda context: [*intro, call("add_not_null", table, column)],
            ["add_not_null"],
        )
    var = _table_var(table)
    intro = comment(
        f"{table}.{column} becomes NOT NULL: the rows left NULL (by the release still serving"
        " too) are filled with its server default first, in batches; then NOT NULL, checked"
        " without blocking writes."
    )

    def lines(context: AutogenContext) -> list[str]:
        return [
            *intro,
            revision.table_clause(table, key, column),
            call(
                "backfill_in_batches",
                Code(var),
                key=Code(f"{var}.c[{key!r}]"),
                values={column: value},
                pending=Code(f"{var}.c[{column!r}].is_(None)"),
                label=f"{table}.{column}",
            ),
            call("add_not_null", table, column),
        ]

    return ToolkitStep([not_null], lines, ["backfill_in_batches", "add_not_null"])


def _create_index(operation: ops.CreateIndexOp, dialect: sa.Dialect) -> ToolkitStep:
    index = operation.to_index()
    columns = [
        expression.name
        if isinstance(expression, sa.Column)
        else Code(f"sa.text({_sql(expression, dialect)!r})")
        for expression in index.expressions
    ]
    options = dict(index.dialect_kwargs)
    where = options.pop("postgresql_where", None)
    arguments: dict[str, Any] = {
        "unique": True if index.unique else None,
        "where": _sql(where, dialect) if where is not None else None,
    }
    arguments.update({key: value for key, value in options.items() if value})
    name, table = str(operation.index_name), operation.table_name
    return ToolkitStep(
        [operation],
        lambda context: [call("create_index_concurrently", name, table, columns, **arguments)],
        ["create_index_concurrently"],
    )


def _drop_index(operation: ops.DropIndexOp) -> ToolkitStep:
    name, table = str(operation.index_name), str(operation.table_name)
    return ToolkitStep(
        [operation],
        lambda context: [call("drop_index_concurrently", name, table)],
        ["drop_index_concurrently"],
    )


def _add_constraint(operation: ops.AddConstraintOp, dialect: sa.Dialect) -> ops.MigrateOperation:
    if isinstance(operation, ops.CreateForeignKeyOp):
        options = {
            key: operation.kw.get(key)
            for key in ("ondelete", "onupdate", "deferrable", "initially", "match")
        }
        arguments = (
            str(operation.constraint_name),
            operation.source_table,
            operation.referent_table,
            list(operation.local_cols),
            list(operation.remote_cols),
        )
        return ToolkitStep(
            [operation],
            lambda context: [call("add_foreign_key", *arguments, **options)],
            ["add_foreign_key"],
        )
    if isinstance(operation, ops.CreateUniqueConstraintOp) and not operation.kw:
        name, table, columns = (
            str(operation.constraint_name),
            operation.table_name,
            list(operation.columns),
        )
        return ToolkitStep(
            [operation],
            lambda context: [call("add_unique_constraint", name, table, columns)],
            ["add_unique_constraint"],
        )
    if isinstance(operation, ops.CreateCheckConstraintOp):
        name, table = str(operation.constraint_name), operation.table_name
        condition = _sql(operation.condition, dialect)
        return ToolkitStep(
            [operation],
            lambda context: [call("add_check_constraint", name, table, condition)],
            ["add_check_constraint"],
        )
    return lock_retried(operation, str(getattr(operation, "table_name", "")))


def _rewrite_table(
    revision: Revision, table_ops: ops.ModifyTableOps, *, upgrading: bool
) -> ops.ModifyTableOps:
    table = table_ops.table_name
    dialect = revision.connection.dialect
    adds = {op.column.name: op for op in table_ops.ops if isinstance(op, ops.AddColumnOp)}
    drops = {op.column_name: op for op in table_ops.ops if isinstance(op, ops.DropColumnOp)}
    in_database = _columns(revision.connection, table)
    written: list[ops.MigrateOperation] = []
    foreign_keys: list[ops.MigrateOperation] = []
    for operation in table_ops.ops:
        if isinstance(operation, ops.AddColumnOp):
            name = operation.column.name
            old = operation.column.info.get(RENAMED_FROM)
            if upgrading and old:
                if old not in drops:
                    revision.refusals.append(
                        f"{table}.{name} says renamed_from={old!r}, but {table} has no column"
                        f" {old}: correct or remove the mark"
                    )
                    continue
                written.append(_rename_expand(revision, operation, old))
            elif not upgrading and (table, name) in revision.contracted:
                written.append(
                    _restore_after_contract(revision, operation, revision.contracted[(table, name)])
                )
            elif not upgrading and (
                (table, name) in {(t, o) for (t, _), o in revision.renamed.items()}
                or (revision.renamed_to(table, name) is not None and name in in_database)
            ):
                continue  # the old column of a rename (in progress) stays: nothing to put back
            elif upgrading and name in in_database:
                continue  # pragma: no cover (autogenerate adds only missing columns)
            else:
                written.extend(_add_column(revision, operation, upgrading=upgrading))
        elif isinstance(operation, ops.DropColumnOp):
            name = operation.column_name
            new = revision.renamed_to(table, name)
            if upgrading and new is not None and new in adds:
                continue  # the expand step of this rename is written with the add
            if new is not None:
                continue  # renamed earlier, contract still to come: not a difference
            if not upgrading and (table, name) in revision.renamed:
                old = revision.renamed[(table, name)]
                written.append(_undo_expand(operation, old))
                continue
            if not upgrading and (table, name) in revision.filled:
                written.append(_undo_fill(operation))
                continue
            partner = _sync_trigger_partner(revision.connection, table, name) if upgrading else None
            if partner is not None and partner in in_database:
                written.append(_contract(revision, operation, partner))
                continue
            if upgrading:
                twins = [
                    add
                    for add in adds.values()
                    if not add.column.info.get(RENAMED_FROM)
                    and _type_family(add.column.type) == _type_family(operation.to_column().type)
                ]
                if twins:
                    names = ", ".join(add.column.name for add in twins)
                    revision.refusals.append(
                        f"{table}.{name} disappears and {table}.{names} of the same type appears:"
                        " written as they are, the data in"
                        f" {name} would be lost. A rename? Mark it in the model,"
                        f" mapped_column(..., info={dict(renamed_from=name)!r}), and run make"
                        " revision again: it writes the rename's expand step (MIGRATIONS.md,"
                        f" 'Rename a column'). Two separate changes? Remove {name} and add"
                        f" {names} in two revisions."
                    )
                    continue
            written.append(_drop_column(operation, upgrading=upgrading))
        elif isinstance(operation, ops.AlterColumnOp):
            old = revision.renamed_from(table, operation.column_name)
            if old is not None and old in in_database and operation.modify_server_default:
                # Renamed, contract to come: its default waits for the contract (see above).
                operation = copy.copy(operation)
                operation.modify_server_default = False
                if not any(
                    getattr(operation, a) not in (None, False)
                    for a in ("modify_nullable", "modify_type", "modify_comment")
                ):
                    continue
            written.extend(_alter_column(revision, operation, upgrading=upgrading))
        elif isinstance(operation, ops.CreateIndexOp):
            written.append(_create_index(operation, dialect))
        elif isinstance(operation, ops.DropIndexOp):
            written.append(_drop_index(operation))
        elif isinstance(operation, ops.CreateForeignKeyOp):
            foreign_keys.append(_add_constraint(operation, dialect))
        elif isinstance(operation, ops.AddConstraintOp):
            written.append(_add_constraint(operation, dialect))
        else:
            written.append(lock_retried(operation, table))
    # A foreign key after the index on its columns, which every delete in the referent needs.
    return ops.ModifyTableOps(table, [*written, *foreign_keys], schema=table_ops.schema)


def _undo_fill(operation: ops.DropColumnOp) -> ToolkitStep:
    table, column = operation.table_name, operation.column_name
    drop = lock_retried(operation, table)
    return ToolkitStep(
        [operation],
        lambda context: [call("stop_filling_on_insert", table, column), *drop.lines(context)],
        ["stop_filling_on_insert", "with_lock_retry"],
    )


def _undo_expand(operation: ops.DropColumnOp, old: str) -> ToolkitStep:
    table, new = operation.table_name, operation.column_name
    drop = lock_retried(operation, table)
    return ToolkitStep(
        [operation],
        lambda context: [
            call("stop_keeping_columns_in_step", table, old, new),
            *drop.lines(context),
        ],
        ["stop_keeping_columns_in_step", "with_lock_retry"],
    )


def _restore_after_contract(
    revision: Revision, operation: ops.AddColumnOp, new: str
) -> ToolkitStep:
    """Back to the expanded state: the old column again (nullable), kept in step, filled."""
    table, old = operation.table_name, operation.column.name
    restored = ops.AddColumnOp(
        table, _without(operation.column, nullable=True, server_default=None)
    )
    lines = _kept_in_step(revision, restored, old, new)
    return ToolkitStep(
        [operation], lines, ["with_lock_retry", "keep_columns_in_step", "backfill_in_batches"]
    )


def _drop_table(operation: ops.DropTableOp, *, upgrading: bool) -> ToolkitStep:
    table = operation.table_name
    step = lock_retried(operation, table)
    if not upgrading:  # the downgrade of a created table
        return step
    intro = comment(
        f"Table {table} is gone from the models. Drop it one deploy after the release that"
        " stopped using it, and say so with acknowledge_lint('ban-drop-table', because=...)"
        " (MIGRATIONS.md, 'Remove a column')."
    )
    render = step.lines
    return ToolkitStep(step.ops, lambda context: [*intro, *render(context)], step.helpers)


def _referents(operation: ops.CreateTableOp, created: set[str]) -> list[str]:
    return sorted(
        {
            constraint.referred_table.name
            for constraint in operation.to_table().foreign_key_constraints
            if constraint.referred_table.name not in created
        }
    )


def _rewrite(
    revision: Revision, operations: list[ops.MigrateOperation], *, upgrading: bool
) -> list[ops.MigrateOperation]:
    # Tables this revision creates (or its downgrade creates again) are new: plain operations.
    created = revision.created_tables | {
        op.table_name for op in operations if isinstance(op, ops.CreateTableOp)
    }
    written: list[ops.MigrateOperation] = []
    for operation in operations:
        if isinstance(operation, ops.CreateTableOp):
            if referents := _referents(operation, created):
                # Its foreign keys lock the tables they reference until the revision commits.
                written.append(lock_retried(operation, referents[0]))
            else:
                written.append(operation)
        elif isinstance(operation, ops.ModifyTableOps) and operation.table_name not in created:
            written.append(_rewrite_table(revision, operation, upgrading=upgrading))
        elif isinstance(operation, ops.DropTableOp) and operation.table_name not in created:
            written.append(_drop_table(operation, upgrading=upgrading))
        elif isinstance(operation, AddEnumValuesOp):
            written.append(_add_enum_values(operation))
        elif isinstance(operation, SyncEnumValuesOp):
            written.append(_sync_enum_values(revision, operation, upgrading=upgrading))
        else:
            written.append(operation)
    return written


def _add_enum_values(operation: AddEnumValuesOp) -> ToolkitStep:
    """Values added to an enum type: ``add_enum_value`` each, in the model's order."""
    old, new = list(operation.old_values), list(operation.new_values)
    steps: list[tuple[str, dict[str, str]]] = []
    for position, value in enumerate(new):
        if value in old:
            continue
        if position > 0:
            steps.append((value, {"after": new[position - 1]}))
        else:
            steps.append((value, {"before": new[1]} if len(new) > 1 else {}))
    name = str(operation.name)
    return ToolkitStep(
        [operation],
        lambda context: [call("add_enum_value", name, value, **where) for value, where in steps],
        ["add_enum_value"],
    )


def _sync_enum_values(
    revision: Revision, operation: SyncEnumValuesOp, *, upgrading: bool
) -> ToolkitStep:
    """Values removed, renamed or reordered: refused (PostgreSQL cannot drop an enum value; the
    library's rebuild of the type rewrites every table using it). The downgrade of added
    values leaves them: the releases before never write them."""
    name, old, new = str(operation.name), list(operation.old_values), list(operation.new_values)
    if upgrading:
        gone = [value for value in old if value not in new]
        revision.refusals.append(
            f"enum {name}: {', '.join(gone) or 'its order'} changed in the model, which"
            " PostgreSQL cannot do in place (the type would be rebuilt and every table using it"
            " rewritten). Keep the old values in the model; move the rows to a new value with"
            " backfill_in_batches and stop writing the old one (MIGRATIONS.md, 'Change an enum')"
        )
        return ToolkitStep([operation], lambda context: [])
    extra = [value for value in old if value not in new]
    text = comment(
        f"Not removed: enum {name} keeps {', '.join(extra)}. PostgreSQL cannot drop an enum"
        " value, and the releases before never write it."
    )
    return ToolkitStep([operation], lambda context: text)


def _lines(*lines: str) -> Lines:
    """Lines written as they are."""
    return lambda context: list(lines)


def _table_renames(
    revision: Revision, operations: list[ops.MigrateOperation], *, upgrading: bool
) -> list[ops.MigrateOperation]:
    """A table the models mark ``info={"renamed_from": "old"}`` while ``old`` disappears: the
    rename's expand step, ``rename_table`` (the old name stays a view on it for the release
    still serving); its downgrade renames it back. Written instead of a create and a drop."""
    created = {op.table_name: op for op in operations if isinstance(op, ops.CreateTableOp)}
    dropped = {op.table_name: op for op in operations if isinstance(op, ops.DropTableOp)}
    renames: dict[str, str] = {}  # new name: old name
    for name, model in revision.metadata.tables.items():
        old = model.info.get(RENAMED_FROM)
        if not old:
            continue
        # The downgrade drops the new name and creates the old one again.
        new_side, old_side = (created, dropped) if upgrading else (dropped, created)
        if name in new_side and old in old_side:
            renames[name] = old
        elif upgrading and name in created:
            revision.refusals.append(
                f"table {name} says renamed_from={old!r}, but there is no table {old}: correct"
                " or remove the mark"
            )
    if not renames:
        return operations
    written: list[ops.MigrateOperation] = []
    for operation in operations:
        table = getattr(operation, "table_name", None)
        if upgrading and isinstance(operation, ops.CreateTableOp) and table in renames:
            old, new = renames[table], table
            replaced = [operation, dropped[old]]
            intro = comment(
                f"Table {old} renamed to {new}: the expand step. {old} stays as a view on"
                f" {new} for the release still serving (its reads and writes go on); drop it"
                f" with drop_old_table_name({old!r}) in a revision of the next deploy, once no"
                " release names it (MIGRATIONS.md, 'Rename a table')."
            )
            written.append(
                ToolkitStep(
                    replaced, _lines(*intro, call("rename_table", old, new)), ["rename_table"]
                )
            )
        elif not upgrading and isinstance(operation, ops.DropTableOp) and table in renames:
            old, new = renames[table], table
            back = _lines(
                call("drop_old_table_name", old),
                call("rename_table", new, old, keep_old_name=False),
            )
            written.append(
                ToolkitStep(
                    [operation, created[old]], back, ["drop_old_table_name", "rename_table"]
                )
            )
        elif isinstance(operation, ops.CreateTableOp | ops.DropTableOp) and (
            table in renames or table in renames.values()
        ):
            continue  # written above, with the other half of the rename
        else:
            written.append(operation)
    return written


def _refuse_table_renames(revision: Revision, operations: list[ops.MigrateOperation]) -> None:
    created = {op.table_name: op for op in operations if isinstance(op, ops.CreateTableOp)}
    for dropped in (op for op in operations if isinstance(op, ops.DropTableOp)):
        old_columns = set(_columns(revision.connection, dropped.table_name))
        for name, new in created.items():
            if {
                column.name for column in new.columns if isinstance(column, sa.Column)
            } == old_columns:
                revision.refusals.append(
                    f"table {dropped.table_name} disappears and {name}, with the same columns,"
                    f" appears: written as they are, the rows of {dropped.table_name} would be"
                    " lost. Rename a table by expand and contract (MIGRATIONS.md, 'Rename a table')"
                )


def safe_revision_directives(
    context: MigrationContext, revision: Any, directives: list[ops.MigrationScript]
) -> None:
    """``process_revision_directives`` for env.py: the rewrite described in this module's
    docstring, upgrade first, then the downgrade that undoes it."""
    connection = context.connection
    metadata = context.opts.get("target_metadata")
    if not directives or connection is None or not isinstance(metadata, sa.MetaData):
        return
    script = directives[0]
    state = Revision(connection, metadata)
    for upgrade_ops in script.upgrade_ops_list:
        upgrade_ops.ops = _table_renames(state, upgrade_ops.ops, upgrading=True)
        state.created_tables |= {
            op.table_name for op in upgrade_ops.ops if isinstance(op, ops.CreateTableOp)
        }
        _refuse_table_renames(state, upgrade_ops.ops)
        upgrade_ops.ops = _rewrite(state, upgrade_ops.ops, upgrading=True)
    for downgrade_ops in script.downgrade_ops_list:
        downgrade_ops.ops = _table_renames(state, downgrade_ops.ops, upgrading=False)
        downgrade_ops.ops = _rewrite(state, downgrade_ops.ops, upgrading=False)
    if state.refusals:
        lines = "\n".join(f"  - {refusal.rstrip('.')}." for refusal in state.refusals)
        msg = f"no revision written: changes autogenerate will not write as they are:\n{lines}"
        raise RefusedChange(msg)
