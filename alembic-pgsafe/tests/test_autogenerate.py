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

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.util import CommandError
from sqlalchemy import URL, Executable, insert, text

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
    acknowledge_lint("prefer-bigint-over-int", because="quantity is the integer to widen")
    op.create_table(
        "orders",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=True),
        sa.Column("reference", sa.String(40), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("quantity", sa.Integer(), server_default="1", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
    )


def downgrade() -> None:
    op.drop_table("orders")
    op.drop_table("customers")
"""
SEED = [
    "INSERT INTO customers (name) SELECT 'customer ' || g FROM generate_series(1, 100) AS g",
    "INSERT INTO orders (customer_id, reference, note)"
    " SELECT 1 + g % 100, 'R-' || g, 'note ' || g FROM generate_series(1, 3000) AS g",
]
orders = sa.table("orders", sa.column("customer_id"), sa.column("reference"))


def the_old_release() -> Callable[[int], Executable]:
    """What the release still serving inserts: only the columns it knows (each reference new)."""
    run = uuid.uuid4().hex[:8]
    return lambda n: insert(orders).values(customer_id=1 + n % 100, reference=f"W-{run}-{n}")


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
        "column-removed",
        (
            lambda metadata: metadata.tables["orders"]._columns.remove(
                metadata.tables["orders"].c.note
            ),
        ),
        ('with_lock_retry(lambda: op.drop_column("orders", "note")', "'Remove a column'"),
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
    create_database: CreateDatabase, directory: Path
) -> tuple[URL, ScratchChain]:
    url = create_database()
    chain = scratch_chain(directory, SCHEMA)
    with chain.alembic_ini.open("a", encoding="utf-8") as ini:
        ini.write(POST_WRITE_HOOKS)
    await asyncio.to_thread(chain.upgrade, url)
    async with connect(url) as connection:
        for statement in SEED:
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
    url, chain = await scratch_schema(create_database, tmp_path)
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
    assert 'op.drop_column("orders", "note")' in revision
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
    assert 'op.drop_column("orders", "quantity")' in upgrade
    assert 'server_default="1"' in upgrade
    assert (await asyncio.to_thread(run_lint, chain.alembic_ini)).returncode == 0
    await apply_under_the_old_release(chain, url)
    assert await asyncio.to_thread(check, chain, url, contracted) == []
    assert await scalar(url, "SELECT count(*) FROM orders WHERE quantity_bigint <> 1") == 0
