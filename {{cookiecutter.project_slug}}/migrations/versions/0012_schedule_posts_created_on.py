"""Add posts.created_on, filled on insert, and schedule its backfill for after the deploy.

Lesson: a backfill too big for a deploy. In 0003 the backfill runs inside the migration, which
is right while a table is small; on a table of hundreds of millions of rows it would hold the
deploy for an hour. schedule_backfill records the job (the same table, key, values and
pending rows as backfill_in_batches) and returns at once; `make backfill` runs it after the
deploy, throttled and resumable, and `make backfill-status` shows its progress. As in 0003,
fill_on_insert first: rows inserted from now on, by either release, get their day at once,
so the job only has the rows that exist today. The next revision relies on the data and
checks first that the job finished.

Revision ID: c0ffee000012
Revises: c0ffee000011
Create Date: 2026-01-01 00:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from alembic_pgsafe import (
    fill_on_insert,
    schedule_backfill,
    stop_filling_on_insert,
    unschedule_backfill,
    with_lock_retry,
)

revision: str = "c0ffee000012"
down_revision: str | None = "c0ffee000011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BACKFILL = "posts.created_on"
# The table as this revision sees it.
posts = sa.table(
    "posts",
    sa.column("id", sa.BigInteger),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("created_on", sa.Date),
)
# The day a post was created, in UTC: computed from the row alone, as the trigger does.
CREATED_ON = sa.cast(sa.func.timezone("UTC", posts.c.created_at), sa.Date)


def upgrade() -> None:
    created_on = sa.Column("created_on", sa.Date, nullable=True)
    with_lock_retry(lambda: op.add_column("posts", created_on, if_not_exists=True), table="posts")
    fill_on_insert(posts, "created_on", CREATED_ON)
    schedule_backfill(
        posts,
        key=posts.c.id,
        values={"created_on": CREATED_ON},
        pending=posts.c.created_on.is_(None),
        name=BACKFILL,
    )


def downgrade() -> None:
    unschedule_backfill(BACKFILL)
    stop_filling_on_insert("posts", "created_on")
    with_lock_retry(lambda: op.drop_column("posts", "created_on", if_exists=True), table="posts")
