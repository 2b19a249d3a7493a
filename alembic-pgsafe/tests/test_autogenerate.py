"""alembic revision --autogenerate on tables with rows: what it writes is the toolkit's safe form.

Each case edits the models of a scratch schema (customers and orders, thousands of rows), runs
autogenerate through the fixture project's env.py, and then: the written revision holds the
toolkit's calls; ``alembic-pgsafe lint`` passes it as written (or refuses it, naming what the
author must do); it applies while a writer that knows only the old schema inserts orders, none
of whose writes may fail; models and database then agree (``alembic check``); and it goes down
and up again.
"""

import asyncio
import re
import uuid
from argparse import Namespace
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.util import CommandError
from sqlalchemy import URL, Executable, insert, text

import alembic_pgsafe
from alembic_pgsafe.autogenerate import (
    RENAMED_FROM,
    describe_differences,
)
from alembic_pgsafe.testing import old_release_writer
from tests.conftest import PACKAGE_ROOT, CreateDatabase, connect
from tests.project.models import NAMING_CONVENTION
from tests.scratch import ScratchChain, scratch_chain
from tests.test_lint import run_lint

pytestmark = pytest.mark.slow  # autogenerate, lint and a live writer per case: pytest -m slow

SCHEMA = """
def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_customers"),
    )
    sa.Enum("web", "shop", name="order_channel").create(op.get_bind())
    acknowledge_lint("prefer-bigint-over-int", because="quantity is the integer to widen")
    op.create_table(
        "orders",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=True),
        sa.Column("reference", sa.String(40), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("quantity", sa.Integer(), server_default="1", nullable=False),
        sa.Column(
            "channel",
            postgresql.ENUM("web", "shop", name="order_channel", create_type=False),
            server_default="web",
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
    )
    op.create_index("ix_orders_channel", "orders", ["channel"])
    op.create_unique_constraint("uq_customers_name", "customers", ["name"])
    op.create_check_constraint(op.f("ck_orders_reference_set"), "orders", "reference <> ''")


def downgrade() -> None:
    op.drop_table("orders")
    sa.Enum(name="order_channel").drop(op.get_bind())
    op.drop_table("customers")
"""
SEED = [
    "INSERT INTO customers (name) SELECT 'customer ' || g FROM generate_series(1, 100) AS g",
    "INSERT INTO orders (customer_id, reference, note)"
    " SELECT 1 + g % 100, 'R-' || g, 'note ' || g FROM generate_series(1, 3000) AS g",
]
orders = sa.table("orders", sa.column("customer_id"), sa.column("reference"))
customers = sa.table("customers", sa.column("name"))


def the_old_release() -> Callable[[int], Executable]:
    """What the release still serving inserts, in turn into both tables: only the columns it
    knows (each reference and name new)."""
    run = uuid.uuid4().hex[:8]

    def write(n: int) -> Executable:
        if n % 2:
            return insert(customers).values(name=f"C-{run}-{n}")
        return insert(orders).values(customer_id=1 + n % 100, reference=f"W-{run}-{n}")

    return write


Edit = Callable[[sa.MetaData], None]


def models(*edits: Edit) -> sa.MetaData:
    """The models of the scratch schema, as SCHEMA creates them, then ``edits``."""
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    sa.Table(
        "customers",
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
    )
    sa.Table(
        "orders",
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("customer_id", sa.BigInteger, nullable=True),
        sa.Column("reference", sa.String(40), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("quantity", sa.Integer, nullable=False, server_default="1"),
        sa.Column(
            "channel",
            sa.Enum("web", "shop", name="order_channel"),
            nullable=False,
            server_default="web",
        ),
        sa.Index(None, "channel"),
    )
    metadata.tables["customers"].append_constraint(sa.UniqueConstraint("name"))
    metadata.tables["orders"].append_constraint(
        sa.CheckConstraint("reference <> ''", name="reference_set")
    )
    for edit in edits:
        edit(metadata)
    return metadata


def add(column: sa.Column[object], table: str = "orders") -> Edit:
    return lambda metadata: metadata.tables[table].append_column(column)


def replace(name: str, column: sa.Column[object]) -> Edit:
    """Replace column ``name`` of orders (``column`` may have another name: a rename)."""

    def edit(metadata: sa.MetaData) -> None:
        table = metadata.tables["orders"]
        table._columns.remove(table.c[name])  # a model edit, as in a file
        table.append_column(column, replace_existing=True)

    return edit


def constrain(constraint: sa.Constraint) -> Edit:
    return lambda metadata: metadata.tables["orders"].append_constraint(constraint)


def index(*columns: str) -> Edit:
    def edit(metadata: sa.MetaData) -> None:
        sa.Index(None, *(metadata.tables["orders"].c[name] for name in columns))

    return edit


def drop(name: str, table: str = "orders") -> Edit:
    """Remove column ``name`` from the model."""
    return lambda metadata: metadata.tables[table]._columns.remove(metadata.tables[table].c[name])


def without(kind: type[sa.Constraint], table: str = "orders") -> Edit:
    """Remove the model's constraint of ``kind`` (its only one) from ``table``."""

    def edit(metadata: sa.MetaData) -> None:
        model = metadata.tables[table]
        model.constraints -= {c for c in model.constraints if type(c) is kind}

    return edit


def without_indexes(metadata: sa.MetaData) -> None:
    metadata.tables["orders"].indexes.clear()


def index_on(
    *expressions: Callable[[sa.Table], Any],
    name: str | None = None,
    unique: bool = False,
    where: str | None = None,
) -> Edit:
    def edit(metadata: sa.MetaData) -> None:
        model = metadata.tables["orders"]
        options: dict[str, Any] = {"postgresql_where": sa.text(where)} if where else {}
        sa.Index(name, *(expression(model) for expression in expressions), unique=unique, **options)

    return edit


def table_comment(metadata: sa.MetaData) -> None:
    metadata.tables["orders"].comment = "what customers ordered"


def renamed_table(metadata: sa.MetaData) -> None:
    """customers becomes clients, marked as the old table renamed."""
    old = metadata.tables["customers"]
    metadata.remove(old)
    sa.Table(
        "clients",
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.UniqueConstraint("name", name="uq_customers_name"),
        info={RENAMED_FROM: "customers"},
    )


def removed_table(metadata: sa.MetaData) -> None:
    metadata.remove(metadata.tables["customers"])


def enum_values(*values: str) -> Edit:
    def edit(metadata: sa.MetaData) -> None:
        column = metadata.tables["orders"].c.channel
        column.type = sa.Enum(*values, name="order_channel")

    return edit


def new_table(metadata: sa.MetaData) -> None:
    sa.Table(
        "coupons",
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("code", sa.String(40), nullable=False, unique=True),
    )


def shipments(metadata: sa.MetaData) -> None:
    sa.Table(
        "shipments",
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("order_id", sa.BigInteger, sa.ForeignKey("orders.id"), nullable=False),
        sa.Column("tracking", sa.String(40), nullable=False),
    )


@dataclass(frozen=True)
class Case:
    name: str
    edits: tuple[Edit, ...]
    written: tuple[str, ...] = ()
    """What the revision must contain (in the upgrade), each as written."""
    not_written: tuple[str, ...] = ()
    lint_refuses: str | None = None
    """The rule alembic-pgsafe lint must refuse the revision with, as written."""
    author_writes: tuple[tuple[str, str], ...] = ()
    """What the author replaces in the revision before it can be applied."""
    then: str | None = None
    """SQL whose answer must be 0 once the revision is applied."""
    refused: str | None = None
    """Part of the refusal: no revision may be written."""
    given: tuple[str, ...] = ()
    """SQL run on the filled tables before the models are edited (rows the edit must meet)."""


CASES = [
    Case(
        "new-nullable-column-with-an-index",
        (add(sa.Column("coupon", sa.String(40), nullable=True, index=True)),),
        ("with_lock_retry(", 'create_index_concurrently("ix_orders_coupon", "orders", ["coupon"])'),
        ("op.create_index",),
    ),
    Case(
        "index-on-an-existing-column",
        (index("reference"),),
        ('create_index_concurrently("ix_orders_reference", "orders", ["reference"])',),
    ),
    Case(
        "foreign-key-on-an-existing-column",
        (constrain(sa.ForeignKeyConstraint(["customer_id"], ["customers.id"])),),
        (
            'create_index_concurrently("ix_orders_customer_id", "orders", ["customer_id"])',
            'add_foreign_key(\n        "fk_orders_customer_id_customers"',
        ),
        ("op.create_foreign_key",),
    ),
    Case(
        "unique-constraint",
        (constrain(sa.UniqueConstraint("reference")),),
        ('add_unique_constraint("uq_orders_reference", "orders", ["reference"])',),
    ),
    Case(
        "check-constraint",
        (constrain(sa.CheckConstraint("quantity > 0", name="quantity_positive")),),
        ('add_check_constraint("ck_orders_quantity_positive", "orders", "quantity > 0")',),
    ),
    Case(
        "varchar-widened",
        (replace("reference", sa.Column("reference", sa.String(80), nullable=False)),),
        ("type_=sa.String(length=80)", "with_lock_retry("),
    ),
    Case(
        "not-null-column-without-a-default",
        (add(sa.Column("code", sa.String(40), nullable=False)),),
        ('value_to_write("orders.code")', "fill_on_insert(", 'add_not_null("orders", "code")'),
        lint_refuses="value-to-write",
        author_writes=(('value_to_write("orders.code")', 'sa.func.upper(orders.c["reference"])'),),
        then="SELECT count(*) FROM orders WHERE code IS DISTINCT FROM upper(reference)",
    ),
    Case(
        "not-null-column-with-a-constant-default",
        (add(sa.Column("status", sa.String(20), nullable=False, server_default="new")),),
        ('server_default="new"', "with_lock_retry("),
        ("backfill_in_batches",),
    ),
    Case(
        "not-null-column-with-a-volatile-default",
        (
            add(
                sa.Column(
                    "token", sa.Uuid, nullable=False, server_default=sa.text("gen_random_uuid()")
                )
            ),
        ),
        ('sa.literal_column("gen_random_uuid()")', 'add_not_null("orders", "token")'),
        then="SELECT count(*) FROM orders WHERE token IS NULL",
    ),
    Case(
        "set-not-null-on-an-existing-column",
        (replace("customer_id", sa.Column("customer_id", sa.BigInteger, nullable=False)),),
        ('add_not_null("orders", "customer_id")',),
    ),
    Case(
        "renamed-and-marked",
        (replace("note", sa.Column("remark", sa.Text, info={RENAMED_FROM: "note"})),),
        ('keep_columns_in_step("orders", "note", "remark")', "backfill_in_batches("),
        ("op.drop_column",),
        then="SELECT count(*) FROM orders WHERE remark IS DISTINCT FROM note",
    ),
    Case(
        "renamed-unmarked",
        (replace("note", sa.Column("remark", sa.Text)),),
        refused="orders.note disappears and orders.remark of the same type appears",
    ),
    Case(
        "integer-to-bigint",
        (replace("quantity", sa.Column("quantity", sa.BigInteger, server_default="1")),),
        refused="rewrites orders (and its indexes) under ACCESS EXCLUSIVE",
    ),
    Case(
        "new-table-referencing-one-with-rows",
        (shipments,),
        (
            "with_lock_retry(\n        lambda: op.create_table(",
            'op.create_index(op.f("ix_shipments_order_id")',
        ),
        ("create_index_concurrently",),
    ),
    Case(
        "new-nullable-enum-column",
        (add(sa.Column("state", sa.Enum("open", "shipped", name="order_state"), nullable=True)),),
        (
            'sa.Enum("open", "shipped", name="order_state").create(op.get_bind())',
            "with_lock_retry(",
        ),
    ),
    Case(
        "optional-made-required-with-a-server-default",
        (replace("note", sa.Column("note", sa.Text, nullable=False, server_default="")),),
        ('add_not_null("orders", "note")', "backfill_in_batches("),
        given=("UPDATE orders SET note = NULL WHERE id % 3 = 0",),
        then="SELECT count(*) FROM orders WHERE note IS NULL",
    ),
    Case(
        "new-nullable-column",
        (add(sa.Column("coupon", sa.String(40), nullable=True)),),
        (
            "with_lock_retry(",
            'sa.Column("coupon", sa.String(length=40), nullable=True), if_not_exists=True',
        ),
    ),
    Case(
        "new-table",
        (new_table,),
        ("op.create_table(", '"coupons"'),
        ("with_lock_retry",),
    ),
    Case(
        "table-removed",
        (removed_table,),
        ('op.drop_table("customers")',),
        lint_refuses="ban-drop-table",
    ),
    Case(
        "varchar-to-text",
        (replace("reference", sa.Column("reference", sa.Text, nullable=False)),),
        ("with_lock_retry(", "type_=sa.Text()"),
    ),
    Case(
        "varchar-narrowed",
        (replace("reference", sa.Column("reference", sa.String(20), nullable=False)),),
        refused="rewrites orders (and its indexes) under ACCESS EXCLUSIVE",
    ),
    Case(
        "not-null-made-optional",
        (replace("reference", sa.Column("reference", sa.String(40), nullable=True)),),
        ("with_lock_retry(", "nullable=True"),
        lint_refuses="ban-drop-not-null",
    ),
    Case(
        "server-default-added",
        (replace("note", sa.Column("note", sa.Text, server_default="none")),),
        ('server_default="none"', "with_lock_retry("),
    ),
    Case(
        "server-default-changed",
        (
            replace(
                "quantity", sa.Column("quantity", sa.Integer, nullable=False, server_default="2")
            ),
        ),
        ('server_default="2"', "with_lock_retry("),
    ),
    Case(
        "volatile-server-default-added",
        (
            replace(
                "note",
                sa.Column("note", sa.Text, server_default=sa.text("gen_random_uuid()::text")),
            ),
        ),
        ("gen_random_uuid()", "with_lock_retry("),
    ),
    Case(
        "server-default-removed",
        (replace("quantity", sa.Column("quantity", sa.Integer, nullable=False)),),
        refused="the release still serving inserts orders without quantity",
    ),
    Case(
        "unique-index",
        (index_on(lambda t: t.c.reference, unique=True),),
        (
            "create_index_concurrently(",
            '"ix_orders_reference", "orders", ["reference"], unique=True',
        ),
    ),
    Case(
        "partial-index",
        (index_on(lambda t: t.c.note, where="note IS NOT NULL"),),
        ("create_index_concurrently(", 'where="note IS NOT NULL"'),
    ),
    Case(
        "expression-index",
        (index_on(lambda t: sa.func.lower(t.c.reference), name="ix_orders_lower_reference"),),
        (
            "create_index_concurrently(",
            '"ix_orders_lower_reference", "orders", [sa.text("lower(orders.reference)")]',
        ),
    ),
    Case(
        "multi-column-index",
        (index_on(lambda t: t.c.customer_id, lambda t: t.c.reference),),
        ("create_index_concurrently(", '["customer_id", "reference"]'),
    ),
    Case(
        "index-removed",
        (without_indexes,),
        ('drop_index_concurrently("ix_orders_channel", "orders")',),
    ),
    Case(
        "multi-column-unique-constraint",
        (constrain(sa.UniqueConstraint("customer_id", "reference")),),
        ('add_unique_constraint("uq_orders_customer_id_reference"',),
    ),
    Case(
        "unique-constraint-removed",
        (without(sa.UniqueConstraint, "customers"),),
        ('op.drop_constraint(op.f("uq_customers_name")',),
        lint_refuses="ban-drop-constraint",
    ),
    Case(
        "check-constraint-removed",
        (without(sa.CheckConstraint),),
        ('op.drop_constraint(op.f("ck_orders_reference_set")',),
        lint_refuses="ban-drop-constraint",
    ),
    Case(
        "enum-value-added",
        (enum_values("web", "shop", "phone"),),
        ('add_enum_value("order_channel", "phone", after="shop")',),
    ),
    Case(
        "enum-value-added-in-the-middle",
        (enum_values("web", "phone", "shop"),),
        ('add_enum_value("order_channel", "phone", after="web")',),
    ),
    Case(
        "enum-value-removed",
        (enum_values("web"),),
        refused="enum order_channel: shop changed in the model",
    ),
    Case(
        "column-comment",
        (replace("note", sa.Column("note", sa.Text, comment="what the customer asked")),),
        ('comment="what the customer asked"', "with_lock_retry("),
    ),
    Case(
        "table-comment",
        (table_comment,),
        ("op.create_table_comment(",),
    ),
    Case(
        "table-renamed-and-marked",
        (renamed_table,),
        ('rename_table("customers", "clients")',),
        ("op.drop_table", "op.create_table"),
        then="SELECT 1 - count(*) FROM pg_views WHERE viewname = 'customers'",
    ),
    Case(
        "table-renamed-unmarked",
        (renamed_table, lambda metadata: metadata.tables["clients"].info.clear()),
        refused="table customers disappears and clients, with the same columns",
    ),
    Case(
        "column-removed",
        (
            lambda metadata: metadata.tables["orders"]._columns.remove(
                metadata.tables["orders"].c.note
            ),
        ),
        ('op.drop_column("orders", "note", if_exists=True)', "'Remove a column'"),
        lint_refuses="ban-drop-column",
    ),
]


def autogenerate(chain: ScratchChain, url: URL, metadata: sa.MetaData, message: str) -> Path:
    """``alembic revision --autogenerate`` on ``metadata``: the file written in the chain."""
    config = chain.config(url)
    config.attributes["target_metadata"] = metadata
    config.cmd_opts = Namespace(autogenerate=True, x=[])  # what env.py reads from the CLI
    versions = chain.alembic_ini.parent / "versions"
    before = set(versions.glob("*.py"))
    command.revision(config, message=message, autogenerate=True)
    [written] = set(versions.glob("*.py")) - before
    return written


def check(chain: ScratchChain, url: URL, metadata: sa.MetaData) -> list[str]:
    """``alembic check`` on ``metadata``: each difference, as a person reads it."""
    config = chain.config(url)
    config.attributes["target_metadata"] = metadata
    try:
        command.check(config)
    except CommandError as exc:
        return describe_differences(getattr(exc, "diffs", None) or []) or [str(exc)]
    return []


async def scalar(url: URL, query: str) -> object:
    async with connect(url) as connection:
        return (await connection.execute(text(query))).scalar()


POST_WRITE_HOOKS = f"""
[post_write_hooks]
hooks = ruff_format, ruff_check
ruff_format.type = module
ruff_format.module = ruff
ruff_format.options = format REVISION_SCRIPT_FILENAME
ruff_format.cwd = {PACKAGE_ROOT}
ruff_check.type = module
ruff_check.module = ruff
ruff_check.options = check --fix REVISION_SCRIPT_FILENAME
ruff_check.cwd = {PACKAGE_ROOT}
"""
"""A rendered project's post-write hooks: the revision as its author finds it, formatted and
fixed by ruff (with the settings of the working directory, here the package's)."""


async def scratch_schema(
    create_database: CreateDatabase, directory: Path, *given: str
) -> tuple[URL, ScratchChain]:
    url = create_database()
    chain = scratch_chain(directory, SCHEMA)
    with chain.alembic_ini.open("a", encoding="utf-8") as ini:
        ini.write(POST_WRITE_HOOKS)
    await asyncio.to_thread(chain.upgrade, url)
    async with connect(url) as connection:
        for statement in (*SEED, *given):
            await connection.execute(text(statement))
        await connection.commit()
    return url, chain


async def apply_under_the_old_release(chain: ScratchChain, url: URL) -> None:
    async with old_release_writer(url, the_old_release()) as report:
        await asyncio.to_thread(chain.upgrade, url)
    assert report.failures == [], report.summary()
    assert report.writes > 1


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
async def test_make_revision_writes_the_safe_form(
    create_database: CreateDatabase, tmp_path: Path, case: Case
) -> None:
    url, chain = await scratch_schema(create_database, tmp_path, *case.given)
    edited = models(*case.edits)
    if case.refused is not None:
        with pytest.raises(CommandError, match="no revision written") as refusal:
            await asyncio.to_thread(autogenerate, chain, url, edited, case.name)
        assert case.refused in str(refusal.value)
        assert not any((tmp_path / "versions").glob("*_renamed*.py"))
        return

    written = await asyncio.to_thread(autogenerate, chain, url, edited, case.name)

    revision = written.read_text(encoding="utf-8")
    upgrade = revision.split("def downgrade", 1)[0]
    for expected in case.written:
        assert expected in upgrade, revision
    for unexpected in case.not_written:
        assert unexpected not in upgrade, revision
    linted = await asyncio.to_thread(run_lint, chain.alembic_ini)
    if case.lint_refuses is not None:
        assert linted.returncode == 1, linted.stdout
        assert re.findall(r"^\S+\.py: ([a-z-]+):", linted.stdout, re.M) == [case.lint_refuses]
        if not case.author_writes:
            return
        for placeholder, value in case.author_writes:
            revision = revision.replace(placeholder, value)
        written.write_text(revision, encoding="utf-8")
        linted = await asyncio.to_thread(run_lint, chain.alembic_ini)
    assert linted.returncode == 0, linted.stdout
    await apply_under_the_old_release(chain, url)
    if case.then is not None:
        assert await scalar(url, case.then) == 0
    assert await asyncio.to_thread(check, chain, url, edited) == []
    async with old_release_writer(url, the_old_release()) as report:
        await asyncio.to_thread(chain.downgrade, url, "-1")
        await asyncio.to_thread(chain.upgrade, url)
    assert report.failures == [], f"down and up again: {report.summary()}"


async def test_a_rename_is_contracted_once_the_mark_is_gone(
    create_database: CreateDatabase, tmp_path: Path
) -> None:
    url, chain = await scratch_schema(create_database, tmp_path)
    marked = models(replace("note", sa.Column("remark", sa.Text, info={RENAMED_FROM: "note"})))
    await asyncio.to_thread(autogenerate, chain, url, marked, "expand")
    await apply_under_the_old_release(chain, url)
    unmarked = models(replace("note", sa.Column("remark", sa.Text)))

    written = await asyncio.to_thread(autogenerate, chain, url, unmarked, "contract")

    revision = written.read_text(encoding="utf-8").split("def downgrade", 1)[0]
    assert 'stop_keeping_columns_in_step("orders", "note", "remark")' in revision
    assert 'op.drop_column("orders", "note", if_exists=True)' in revision
    assert (await asyncio.to_thread(run_lint, chain.alembic_ini)).returncode == 0
    await apply_under_the_old_release(chain, url)
    assert await scalar(url, "SELECT count(*) FROM orders WHERE remark LIKE 'note %'") == 3000
    assert await asyncio.to_thread(check, chain, url, unmarked) == []


async def test_a_check_constraint_only_in_the_models_is_a_difference_named_plainly(
    create_database: CreateDatabase, tmp_path: Path
) -> None:
    url, chain = await scratch_schema(create_database, tmp_path)
    edited = models(
        constrain(sa.CheckConstraint("quantity > 0", name="quantity_positive")),
        add(sa.Column("coupon", sa.String(40), nullable=True)),
        replace("customer_id", sa.Column("customer_id", sa.BigInteger, nullable=False)),
    )

    found = await asyncio.to_thread(check, chain, url, edited)

    assert sorted(found) == [
        "orders.coupon: in the models, not in the database",
        "orders.customer_id: nullable in the database, NOT NULL in the models",
        "orders: CHECK ck_orders_quantity_positive in the models, not in the database",
    ]


async def test_a_type_change_goes_through_a_renamed_column_and_its_default_waits_for_the_contract(
    create_database: CreateDatabase, tmp_path: Path
) -> None:
    url, chain = await scratch_schema(create_database, tmp_path)
    wider = sa.Column("quantity_bigint", sa.BigInteger, nullable=False, server_default="1")
    expanded = models(replace("quantity", wider._copy()))
    expanded.tables["orders"].c.quantity_bigint.info[RENAMED_FROM] = "quantity"

    expand = await asyncio.to_thread(autogenerate, chain, url, expanded, "expand")
    assert "server_default" not in expand.read_text(encoding="utf-8").split("def downgrade")[0]
    assert (await asyncio.to_thread(run_lint, chain.alembic_ini)).returncode == 0
    await apply_under_the_old_release(chain, url)
    assert await asyncio.to_thread(check, chain, url, expanded) == []
    contracted = models(replace("quantity", wider._copy()))
    contract = await asyncio.to_thread(autogenerate, chain, url, contracted, "contract")

    upgrade = contract.read_text(encoding="utf-8").split("def downgrade", 1)[0]
    assert 'op.drop_column("orders", "quantity", if_exists=True)' in upgrade
    assert 'server_default="1"' in upgrade
    assert (await asyncio.to_thread(run_lint, chain.alembic_ini)).returncode == 0
    await apply_under_the_old_release(chain, url)
    assert await asyncio.to_thread(check, chain, url, contracted) == []
    assert await scalar(url, "SELECT count(*) FROM orders WHERE quantity_bigint <> 1") == 0


async def test_between_a_rename_s_expand_and_contract_autogenerate_leaves_both_columns_alone(
    create_database: CreateDatabase, tmp_path: Path
) -> None:
    """The documented state between two deploys: the expand step applied, the model still
    marked. A revision written then for another edit says nothing about either column, in
    its upgrade or its downgrade, and goes down and up again."""
    url, chain = await scratch_schema(create_database, tmp_path)

    def marked() -> Edit:
        return replace("note", sa.Column("remark", sa.Text, info={RENAMED_FROM: "note"}))

    await asyncio.to_thread(autogenerate, chain, url, models(marked()), "expand")
    await apply_under_the_old_release(chain, url)
    edited = models(marked(), index("reference"))

    written = await asyncio.to_thread(autogenerate, chain, url, edited, "another edit")

    revision = written.read_text(encoding="utf-8")
    assert '"note"' not in revision, revision
    assert '"remark"' not in revision, revision
    assert (await asyncio.to_thread(run_lint, chain.alembic_ini)).returncode == 0
    await apply_under_the_old_release(chain, url)
    assert await asyncio.to_thread(check, chain, url, edited) == []
    async with old_release_writer(url, the_old_release()) as report:
        await asyncio.to_thread(chain.downgrade, url, "-1")
        await asyncio.to_thread(chain.upgrade, url)
    assert report.failures == [], f"down and up again: {report.summary()}"


MATRIX = PACKAGE_ROOT / "docs" / "edit-matrix.md"
CALLED = re.compile(r"\b((?:op\.)?[a-z_]+)\(")


def _written_calls(case: Case) -> str:
    """The toolkit's helpers and Alembic's operations a case's revision is checked to hold."""
    names = [
        name
        for text in case.written
        for name in CALLED.findall(text)
        if (name.startswith("op.") and name not in ("op.f", "op.get_bind"))
        or name in alembic_pgsafe.__all__
    ]
    return ", ".join(f"`{name}`" for name in dict.fromkeys(names)) or "Alembic's operation"


def matrix_row(case: Case) -> str:
    edit = case.name.replace("-", " ")
    if case.refused is not None:
        return f"| {edit} | refused: {case.refused} ... | | | |"
    applied = "0 failed writes" if case.lint_refuses is None or case.author_writes else ""
    if case.lint_refuses is None:
        lint = "passes"
    elif case.author_writes:
        lint = f"`{case.lint_refuses}` until the author writes the value"
    else:
        lint = f"`{case.lint_refuses}` until the author acknowledges it"
    down = "down and up: 0 failed writes" if applied else ""
    return f"| {edit} | {_written_calls(case)} | {lint} | {applied} | {down} |"


def matrix() -> str:
    """docs/edit-matrix.md: a row per case of :func:`test_make_revision_writes_the_safe_form`."""
    header = (
        "# What `alembic revision --autogenerate` writes, edit by edit\n\n"
        "Each row is a test of alembic-pgsafe's suite (`tests/test_autogenerate.py`): the models"
        " of a\nscratch schema (customers, and orders with 3,000 rows) are edited, autogenerate"
        " writes the\nrevision through the project's env.py, `alembic-pgsafe lint` judges it as"
        " written, and it is\napplied while a writer that knows only the old schema inserts"
        " rows into both tables, then\ngoes down and up again under that writer. A refused"
        " edit writes no file and says, in one\nline, what to do instead. Written by the"
        " suite: `python -m tests.test_autogenerate >\ndocs/edit-matrix.md` (a test fails"
        " when this file and the cases differ).\n\n"
        "| edit | the revision holds | lint | applied under the old release | downgrade |\n"
        "| --- | --- | --- | --- | --- |\n"
    )
    return header + "\n".join(matrix_row(case) for case in CASES) + "\n"


def test_the_edit_matrix_in_the_docs_is_the_cases() -> None:
    regenerate = "python -m tests.test_autogenerate > docs/edit-matrix.md"
    assert MATRIX.read_text(encoding="utf-8") == matrix(), f"out of date: {regenerate}"


if __name__ == "__main__":
    print(matrix(), end="")
