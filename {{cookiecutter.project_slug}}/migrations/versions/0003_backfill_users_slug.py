"""Backfill users.slug in batches.

Lesson: a data migration on a live table. One UPDATE of every row would lock them all and keep
one long transaction open (bloat, replication lag) until it ends. Here rows are walked in
keyset batches on the primary key, each batch its own transaction inside autocommit_block(),
so row locks last one batch. Only rows whose slug IS NULL are touched and a slug depends on its
row alone, so an interrupted run resumes where it stopped and ends with the same data.
Batch size: ``alembic -x batch_size=N upgrade ...`` (default 1000).

Revision ID: c0ffee000003
Revises: c0ffee000002
Create Date: 2026-01-01 00:00:00+00:00
"""

import logging
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision: str = "c0ffee000003"
down_revision: str | None = "c0ffee000002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger(f"alembic.migration.{revision}")
DEFAULT_BATCH_SIZE = 1000

# The table as this revision sees it, not as the models see it today.
users = sa.table(
    "users",
    sa.column("id", sa.BigInteger),
    sa.column("full_name", sa.String),
    sa.column("slug", sa.String),
)
# "<lower-case name, other characters as '-'>-<id>": unique because id is. The same rule as
# slug_base() in the models, which the API uses for new users.
_readable = sa.func.btrim(
    sa.func.regexp_replace(sa.func.lower(users.c.full_name), "[^a-z0-9]+", "-", "g"), "-"
)
SLUG = sa.func.coalesce(sa.func.nullif(_readable, ""), "user") + "-" + sa.cast(users.c.id, sa.Text)


def batch_size() -> int:
    size = int(context.get_x_argument(as_dictionary=True).get("batch_size", DEFAULT_BATCH_SIZE))
    if size < 1:
        msg = f"-x batch_size must be a positive integer, got {size}"
        raise ValueError(msg)
    return size


def batch_end(after: int, size: int) -> sa.Select[Any]:
    """The highest id among the next ``size`` rows after ``after`` (None when none are left)."""
    batch = sa.select(users.c.id).where(users.c.id > after).order_by(users.c.id).limit(size)
    return sa.select(sa.func.max(batch.subquery().c.id))


def upgrade() -> None:
    missing = users.c.slug.is_(None)
    if op.get_context().as_sql:
        # Offline SQL cannot loop over query results: emit the change as one statement.
        op.execute(users.update().where(missing).values(slug=SLUG))
        return
    size = batch_size()
    with op.get_context().autocommit_block():
        bind = op.get_bind()  # inside the block: the autocommit connection
        total = bind.execute(sa.select(sa.func.count()).where(missing)).scalar_one()
        log.info("users.slug: %d rows to fill, in batches of %d", total, size)
        done, after, started = 0, 0, time.monotonic()
        while (until := bind.execute(batch_end(after, size)).scalar()) is not None:
            # In autocommit mode this UPDATE is a transaction of its own.
            in_batch = users.c.id > after, users.c.id <= until, missing
            done += bind.execute(users.update().where(*in_batch).values(slug=SLUG)).rowcount
            after = until
            rate = done / max(time.monotonic() - started, 1e-6)
            log.info("users.slug: %d/%d rows, %.0f rows/s, up to id %d", done, total, rate, after)


def downgrade() -> None:
    """Nothing to undo: filled slugs are valid at the previous revision too."""
