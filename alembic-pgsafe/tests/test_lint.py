"""alembic-pgsafe lint: one probe per rule, each with the fix it must name.

The probes are revisions of one scratch chain, each holding the statement of one rule (its
upgrade, or its downgrade), linted in one run; each probe's findings must be exactly the rules
it expects, each with its fix. The fixture project's history (safe revisions) passes. A
project's own history, and that each fix's section exists in its MIGRATIONS.md, are the
project's proofs (a render's tests/migrations/test_lint_history.py).
"""

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.operations import ops
from sqlalchemy.dialects import postgresql

import alembic_pgsafe
from alembic_pgsafe import lint
from alembic_pgsafe.autogenerate import rewrites_table
from tests.conftest import ALEMBIC_INI, PROJECT, TOOLKIT, CreateDatabase, connect, revisions
from tests.scratch import ScratchChain, scratch_chain

pytestmark = pytest.mark.slow  # squawk over every revision: pytest -m slow
LINT = [*TOOLKIT, "lint"]

BASE = """
def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("reference", sa.String(40), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("customer_id", sa.BigInteger(), nullable=True),
        sa.Column("label", sa.String(40), nullable=True),
        sa.Column("payload", sa.Text(), nullable=True),
    )
    op.create_table("customers", sa.Column("id", sa.BigInteger(), primary_key=True))
    op.create_table(
        "order_events",
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_orders_reference", "orders", ["reference"])
    op.execute("CREATE TYPE order_state AS ENUM ('new', 'paid')")
    op.create_check_constraint(
        "ck_orders_reference", "orders", "reference <> ''", postgresql_not_valid=True
    )


def downgrade() -> None:
    pass
"""
ORDERS = 'orders = sa.table("orders", sa.column("id"), sa.column("note"), sa.column("flag"))\n'


@dataclass(frozen=True)
class Probe:
    name: str
    upgrade: str
    downgrade: str = "    pass"
    expected: tuple[tuple[str, str, str, str], ...] = ()
    """(direction, rule, how the fix starts, its MIGRATIONS.md section) of each finding."""

    def body(self) -> str:
        upgrade = f"def upgrade() -> None:\n{self.upgrade}\n"
        return f"{ORDERS}\n\n{upgrade}\n\ndef downgrade() -> None:\n{self.downgrade}\n"


def up(rule: str, fix: str, section: str) -> tuple[str, str, str, str]:
    return ("upgrade", rule, fix, section)


def down(rule: str, fix: str, section: str) -> tuple[str, str, str, str]:
    return ("downgrade", rule, fix, section)


INDEX = ("create_index_concurrently(name, table, columns)", "Indexes")
REMOVE = ("drop it one deploy after the release", "Remove a column or a table")
TYPE = ("a new column of the new type kept in step", "Change a column's type")
PRIMARY_KEY = ("add_primary_key(", "A primary key from a unique index")
REWRITE = ("never in a deploy: it rewrites the table", "Don't, and why")
SEQUENCE = ("on a table with rows neither a serial nor an identity column", "Add a NOT NULL column")
NAMING = ("the name the convention gives", "What `make lint` says")
PROBES = [
    Probe(
        "names-against-the-convention",
        '    create_index_concurrently("orders_label_idx", "orders", ["label"])\n'
        '    add_check_constraint("positive_quantity", "orders", "quantity > 0")\n'
        '    add_unique_constraint("uq_orders_payload", "orders", ["payload"])\n'
        '    add_foreign_key("orders_customer_fk", "orders", "customers", ["customer_id"], ["id"])',
        '    op.drop_constraint("orders_customer_fk", "orders")\n'
        '    op.drop_constraint("uq_orders_payload", "orders")\n'
        '    op.drop_constraint("positive_quantity", "orders")\n'
        '    drop_index_concurrently("orders_label_idx", "orders")',
        (
            up("naming-convention", *NAMING),
            up("naming-convention", *NAMING),
            up("naming-convention", *NAMING),
        ),
    ),
    Probe(
        "bigserial-column",
        '    op.execute("ALTER TABLE orders ADD COLUMN position bigserial")',
        '    op.drop_column("orders", "position")',
        (up("prefer-identity", *SEQUENCE),),
    ),
    Probe(
        "plain-index",
        '    op.create_index("ix_orders_note", "orders", ["note"])',
        '    drop_index_concurrently("ix_orders_note", "orders")',
        (up("require-concurrent-index-creation", *INDEX),),
    ),
    Probe(
        "raw-concurrent-index",
        '    op.execute("CREATE INDEX CONCURRENTLY ix_orders_payload ON orders (payload)")',
        '    drop_index_concurrently("ix_orders_payload", "orders")',
        (up("ban-concurrent-index-creation-in-transaction", *INDEX),),
    ),
    Probe(
        "plain-drop-index-in-the-downgrade",
        '    create_index_concurrently("ix_orders_customer_id", "orders", ["customer_id"])',
        '    op.drop_index("ix_orders_customer_id", table_name="orders")',
        (down("require-concurrent-index-deletion", "drop_index_concurrently(", "Indexes"),),
    ),
    Probe(
        "required-column",
        '    op.add_column("orders", sa.Column("code", sa.String(40), nullable=False))',
        '    op.drop_column("orders", "code")',
        (
            up(
                "adding-required-field",
                "a constant server_default, or fill_on_insert",
                "Add a NOT NULL column",
            ),
        ),
    ),
    Probe(
        "set-not-null",
        '    op.alter_column("orders", "note", nullable=False)',
        '    op.alter_column("orders", "note", nullable=True)',
        (up("adding-not-nullable-field", "add_not_null(table, column)", "Add a NOT NULL column"),),
    ),
    Probe(
        "volatile-default",
        '    token = sa.Column("token", sa.Uuid(), server_default=sa.text("gen_random_uuid()"))\n'
        '    op.add_column("orders", token)',
        '    op.drop_column("orders", "token")',
        (
            up(
                "adding-field-with-default",
                "a volatile default rewrites the table",
                "Constant defaults",
            ),
        ),
    ),
    Probe(
        "identity-column",
        '    op.add_column("orders", sa.Column("number", sa.BigInteger(), sa.Identity()))',
        '    op.drop_column("orders", "number")',
        (
            up(
                "adding-field-with-default",
                "a plain nullable column: a sequence",
                "Add a NOT NULL column",
            ),
        ),
    ),
    Probe(
        "generated-column",
        '    doubled = sa.Column("doubled", sa.BigInteger(), sa.Computed("quantity * 2"))\n'
        '    op.add_column("orders", doubled)',
        '    op.drop_column("orders", "doubled")',
        (
            up(
                "adding-field-with-default",
                "a plain nullable column: a sequence",
                "Add a NOT NULL column",
            ),
        ),
    ),
    Probe(
        "foreign-key",
        "    op.create_foreign_key(\n"
        '        "fk_orders_customer_id_customers",\n'
        '        "orders", "customers", ["customer_id"], ["id"],\n'
        "    )",
        '    op.drop_constraint("fk_orders_customer_id_customers", "orders", type_="foreignkey")',
        (
            up("adding-foreign-key-constraint", "add_foreign_key(", "Foreign keys"),
            up("constraint-missing-not-valid", "add_foreign_key(", "Foreign keys"),
        ),
    ),
    Probe(
        "check",
        '    op.create_check_constraint("ck_orders_quantity", "orders", "quantity > 0")',
        '    op.drop_constraint("ck_orders_quantity", "orders", type_="check")',
        (up("constraint-missing-not-valid", "add_check_constraint(", "CHECK constraints"),),
    ),
    Probe(
        "unique",
        '    op.create_unique_constraint("uq_orders_label", "orders", ["label"])',
        '    op.drop_constraint("uq_orders_label", "orders", type_="unique")',
        (
            up("disallowed-unique-constraint", "add_unique_constraint(", "UNIQUE constraints"),
            up("constraint-missing-not-valid", "add_unique_constraint(", "UNIQUE constraints"),
        ),
    ),
    Probe(
        "primary-key",
        '    op.create_primary_key("pk_order_events", "order_events", ["order_id", "seq"])',
        '    op.drop_constraint("pk_order_events", "order_events", type_="primary")',
        (
            up("adding-serial-primary-key-field", *PRIMARY_KEY),
            up("constraint-missing-not-valid", *PRIMARY_KEY),
        ),
    ),
    Probe(
        "exclusion",
        '    op.execute("ALTER TABLE orders ADD CONSTRAINT ex_label EXCLUDE (label WITH =)")',
        '    op.drop_constraint("ex_label", "orders")',
        (up("exclusion-constraint", "PostgreSQL has no NOT VALID", "Exclusion constraints"),),
    ),
    Probe(
        "catalog-only-type-changes",
        '    op.alter_column("orders", "reference", type_=sa.String(80))\n'
        '    op.alter_column("orders", "label", type_=sa.Text(), existing_type=sa.String(40))',
        '    op.alter_column("orders", "label", type_=sa.String(40), existing_type=sa.Text())',
        (down("changing-column-type", *TYPE),),  # text to varchar(40) checks every row
    ),
    Probe(
        "type-change-that-rewrites",
        '    op.alter_column("orders", "quantity", type_=sa.BigInteger())',
        '    op.alter_column("orders", "quantity", type_=sa.Integer())',
        (up("changing-column-type", *TYPE), down("changing-column-type", *TYPE)),
    ),
    Probe(
        "drop-not-null",
        '    op.alter_column("orders", "reference", nullable=True)',
        '    op.alter_column("orders", "reference", nullable=False)',
        (
            up("ban-drop-not-null", "only once no release still serving relies", "Add a column"),
            down("adding-not-nullable-field", "add_not_null(", "Add a NOT NULL column"),
        ),
    ),
    Probe(
        "reindex",
        '    op.execute("REINDEX INDEX ix_orders_reference")',
        expected=(up("require-concurrent-reindex", "reindex_concurrently(", "Rebuild an index"),),
    ),
    Probe(
        "whole-table-update",
        '    op.execute("UPDATE orders SET note = btrim(note)")',
        expected=(up("whole-table-dml", "backfill_in_batches(", "Fill or fix data in batches"),),
    ),
    Probe(
        "whole-table-delete",
        '    op.execute(sa.delete(orders).where(orders.c.note == "gone"))',
        expected=(up("whole-table-dml", "delete_in_batches(", "Fill or fix data in batches"),),
    ),
    Probe(
        "batched-updates-in-the-transaction-of-the-add-column",
        '    op.add_column("orders", sa.Column("flag", sa.Boolean(), nullable=True))\n'
        "    for start in (0, 1000):\n"
        "        batch = orders.c.id > start, orders.c.id <= start + 1000\n"
        "        op.execute(sa.update(orders).where(*batch).values(flag=sa.true()))",
        '    op.drop_column("orders", "flag")',
        (up("dml-after-ddl", "let the DDL commit first", "Fill or fix data in batches"),) * 2,
    ),
    Probe(
        "validate-in-the-transaction-of-ddl",
        '    op.add_column("orders", sa.Column("memo", sa.Text(), nullable=True))\n'
        '    op.execute("ALTER TABLE orders VALIDATE CONSTRAINT ck_orders_reference")',
        '    op.drop_column("orders", "memo")',
        (up("dml-after-ddl", "let the DDL commit first", "Fill or fix data in batches"),),
    ),
    Probe(
        "do-block",
        """    op.execute("DO $$ BEGIN EXECUTE 'UPDATE orders SET note = note'; END $$")""",
        expected=(up("dynamic-sql", "write its statements as op calls", "What `make lint` says"),),
    ),
    Probe(
        "vacuum-full",
        '    op.execute("VACUUM FULL orders")',
        expected=(up("vacuum-full", *REWRITE),),
    ),
    Probe(
        "cluster",
        '    op.execute("CLUSTER orders USING ix_orders_reference")',
        expected=(up("cluster", *REWRITE),),
    ),
    Probe(
        "set-unlogged",
        '    op.execute("ALTER TABLE order_events SET UNLOGGED")',
        '    op.execute("ALTER TABLE order_events SET LOGGED")',
        (up("table-rewrite", *REWRITE), down("table-rewrite", *REWRITE)),
    ),
    Probe(
        "lock-table",
        '    op.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")',
        expected=(up("lock-table", "no LOCK TABLE", "Don't, and why"),),
    ),
    Probe(
        "truncate",
        '    op.execute("TRUNCATE order_events")',
        expected=(up("truncate", "delete_in_batches(", "Remove a column or a table"),),
    ),
    Probe(
        "json-column",
        '    op.add_column("orders", sa.Column("extra", sa.JSON(), nullable=True))',
        '    op.drop_column("orders", "extra")',
        (up("json-column", "jsonb", "Add a column"),),
    ),
    Probe(
        "rename-enum-value",
        """    op.execute("ALTER TYPE order_state RENAME VALUE 'new' TO 'fresh'")""",
        expected=(up("rename-enum-value", "add_enum_value(", "Enum values"),),
    ),
    Probe(
        "rename-schema",
        '    op.execute("ALTER SCHEMA legacy RENAME TO archive")',
        expected=(up("rename-schema", "expand and contract", "Rename a table"),),
    ),
    Probe(
        "rename-column",
        '    op.alter_column("orders", "label", new_column_name="tag")',
        '    op.alter_column("orders", "tag", new_column_name="label")',
        (
            up("renaming-column", "expand and contract", "Rename a column"),
            down("renaming-column", "expand and contract", "Rename a column"),
        ),
    ),
    Probe(
        "rename-table",
        '    op.rename_table("customers", "clients")',
        '    op.rename_table("clients", "customers")',
        (
            up("renaming-table", "rename_table(", "Rename a table"),
            down("renaming-table", "rename_table(", "Rename a table"),
        ),
    ),
    Probe(
        "value-still-to-write",
        '    fill_on_insert(orders, "note", value_to_write("orders.note"))',
        expected=(up("value-to-write", "replace value_to_write", "Add a NOT NULL column"),),
    ),
    Probe(
        "acknowledged",
        '    acknowledge_lint("ban-drop-column", because="a probe: nobody reads it")\n'
        '    op.drop_column("orders", "customer_id")',
    ),
    Probe(
        "drop-column",
        '    op.drop_column("orders", "payload")',
        expected=(up("ban-drop-column", *REMOVE),),
    ),
    Probe(
        "drop-table",
        '    op.drop_table("order_events")',
        expected=(up("ban-drop-table", *REMOVE),),
    ),
]

BATCHES_AFTER_DDL = "batched-updates-in-the-transaction-of-the-add-column"
# strong_migrations' checks for PostgreSQL (lib/strong_migrations/checks.rb), each with the
# probe that shows alembic-pgsafe lint catches it; None where it is not a migration statement.
STRONG_MIGRATIONS = {
    "remove_column": "drop-column",
    "change_column": "type-change-that-rewrites",
    "change_column_with_not_null": "set-not-null",
    "rename_column": "rename-column",
    "rename_table": "rename-table",
    "rename_schema": "rename-schema",
    "rename_enum_value": "rename-enum-value",
    "create_table force": "drop-table",
    "add_column_auto_incrementing": "identity-column",
    "add_column_generated_stored": "generated-column",
    "add_column_default (volatile)": "volatile-default",
    "add_column_default_callable": "volatile-default",
    "add_column_json": "json-column",
    "add_foreign_key": "foreign-key",
    "add_check_constraint": "check",
    "add_exclusion_constraint": "exclusion",
    "add_unique_constraint": "unique",
    "add_index": "plain-index",
    "add_reference": "foreign-key",
    "change_column_null_postgresql": "set-not-null",
    "change_column_null (with a default: one UPDATE)": "whole-table-update",
    "execute (SQL that cannot be checked)": "do-block",
    "backfilling data in the DDL's transaction": BATCHES_AFTER_DDL,
    "remove_index (opt-in)": "plain-drop-index-in-the-downgrade",
    "validate_*_constraint while writes are blocked": "validate-in-the-transaction-of-ddl",
}


def run_lint(alembic_ini: Path) -> subprocess.CompletedProcess[str]:
    """``alembic-pgsafe lint alembic_ini``, run in the fixture project."""
    return subprocess.run(
        [*LINT, str(alembic_ini)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_fixture_projects_migrations_pass() -> None:
    result = run_lint(ALEMBIC_INI)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Found 0 issues in {len(revisions())} files" in result.stdout


Reported = dict[str, list[tuple[str, str, str]]]


def reported(output: str) -> Reported:
    """For each revision file: (direction, rule, fix line) of each finding."""
    pattern = (
        r"^\S*/(\d{4})_scratch\.py( \(downgrade\))?: ([a-z-]+): .*\n"
        r"    statement: .*\n    fix: (.*)$"
    )
    found: Reported = {}
    for number, downgrade, rule, fix in re.findall(pattern, output, re.MULTILINE):
        direction = "downgrade" if downgrade else "upgrade"
        found.setdefault(number, []).append((direction, rule, fix))
    return found


@pytest.fixture(scope="module")
def probes_linted(tmp_path_factory: pytest.TempPathFactory) -> tuple[ScratchChain, str]:
    chain = scratch_chain(tmp_path_factory.mktemp("probes"), BASE, *(p.body() for p in PROBES))
    result = run_lint(chain.alembic_ini)
    assert result.returncode == 1, result.stderr
    return chain, result.stdout


@pytest.mark.parametrize("probe", PROBES, ids=lambda probe: probe.name)
def test_each_probe_gets_exactly_its_findings_with_their_fixes(
    probes_linted: tuple[ScratchChain, str], probe: Probe
) -> None:
    _, output = probes_linted
    number = f"{PROBES.index(probe) + 2:04d}"  # the base revision is 0001

    found = reported(output).get(number, [])

    assert sorted((d, r) for d, r, _ in found) == sorted((d, r) for d, r, _, _ in probe.expected)
    for (direction, rule, fix), (_, _, starts, section) in zip(
        sorted(found), sorted(probe.expected), strict=True
    ):
        assert fix.startswith(starts), (direction, rule, fix)
        assert fix.endswith(f"; MIGRATIONS.md, section '{section}'"), (direction, rule, fix)


def test_strong_migrations_checks_each_have_a_probe() -> None:
    names = {probe.name for probe in PROBES}

    assert {check: name for check, name in STRONG_MIGRATIONS.items() if name not in names} == {}
    assert len(STRONG_MIGRATIONS) >= 25


def test_every_fix_names_a_helper_that_exists() -> None:
    """(That each fix's section is a heading of the playbook, MIGRATIONS.md, is proved where the
    playbook is: a render's tests/migrations/test_lint_history.py.)"""
    fixes = [*lint.FIXES.values(), *(lint.fix_for(r) for r in ("ban-drop-view", "unknown"))]
    assert any(fix.helper is not None for fix in fixes)

    for fix in fixes:
        if fix.helper is not None:
            assert fix.helper in alembic_pgsafe.__all__ or hasattr(lint, fix.helper), fix
            assert f"{fix.helper}(" in fix.advice or fix.helper in fix.advice, fix


TYPE_CHANGES: list[tuple[lint.ColumnType, lint.ColumnType, bool]] = [
    (("varchar", (40,), False), ("varchar", (80,), False), False),
    (("varchar", (40,), False), ("text", (), False), False),
    (("varchar", (40,), False), ("varchar", (), False), False),
    (("text", (), False), ("varchar", (), False), False),
    (("numeric", (10, 2), False), ("numeric", (12, 2), False), False),
    (("numeric", (10, 2), False), ("numeric", (), False), False),
    (("cidr", (), False), ("inet", (), False), False),
    (("timestamptz", (3,), False), ("timestamptz", (6,), False), False),
    (("varchar", (80,), False), ("varchar", (40,), False), True),
    (("text", (), False), ("varchar", (40,), False), True),
    (("int4", (), False), ("int8", (), False), True),
    (("numeric", (10, 2), False), ("numeric", (12, 3), False), True),
    (("varchar", (40,), False), ("varchar", (40,), True), True),
]


@pytest.mark.parametrize(("old", "new", "rewrites"), TYPE_CHANGES)
def test_which_type_changes_rewrite(
    old: lint.ColumnType, new: lint.ColumnType, rewrites: bool
) -> None:
    assert lint.rewrites_on_type_change(old, new) is rewrites


SQL_TYPES: dict[str, Callable[[tuple[int, ...]], sa.types.TypeEngine[Any]]] = {
    "varchar": lambda mods: sa.String(mods[0] if mods else None),
    "text": lambda mods: sa.Text(),
    "numeric": lambda mods: sa.Numeric(*mods) if mods else sa.Numeric(),  # type: ignore[call-overload]
    "cidr": lambda mods: postgresql.CIDR(),
    "inet": lambda mods: postgresql.INET(),
    "timestamptz": lambda mods: postgresql.TIMESTAMP(timezone=True, precision=mods[0]),
    "int4": lambda mods: sa.Integer(),
    "int8": lambda mods: sa.BigInteger(),
}


def sql_type(column_type: lint.ColumnType) -> sa.types.TypeEngine[Any]:
    name, mods, array = column_type
    made: sa.types.TypeEngine[Any] = SQL_TYPES[name](mods)
    return postgresql.ARRAY(made) if array else made


async def test_the_type_rules_agree_with_postgresql(create_database: CreateDatabase) -> None:
    """lint's list of catalog-only type changes, against PostgreSQL itself: each change made
    on a real column, and whether its table got new storage (autogenerate asks the same way)."""
    cases = TYPE_CHANGES

    def ask(connection: sa.Connection) -> list[bool]:
        answers = []
        for old, new, _ in cases:
            table = sa.Table("probe", sa.MetaData(), sa.Column("c", sql_type(old)))
            table.create(connection)
            change = ops.AlterColumnOp(
                "probe", "c", modify_type=sql_type(new), existing_type=sql_type(old)
            )
            answers.append(rewrites_table(connection, "probe", change))
            table.drop(connection)
        return answers

    async with connect(create_database()) as connection:
        answers = await connection.run_sync(ask)

    assert answers == [rewrites for _, _, rewrites in cases]
