"""Rename users.phone to users.phone_number, step 1 of 2: expand.

Lesson: renaming a column of a live table without downtime. The one-step way,
``op.alter_column("users", "phone", new_column_name="phone_number")``, is instant, but during
the deploy the old release still runs and every query it sends naming ``phone`` fails. So:
expand (this revision): add the new column, copy the data in batches, and keep both columns in
step with a trigger while old and new releases run side by side; migrate reads (the release
that ships this reads and writes phone_number only); contract (revision 0008, in a later
deploy): drop the trigger and the old column. The batched copy commits what came before it,
so every step here is written to be run again (``if_not_exists``, idempotent helpers).

Revision ID: c0ffee000007
Revises: c0ffee000006
Create Date: 2026-01-01 00:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from alembic_pgsafe import (
    backfill_in_batches,
    keep_columns_in_step,
    stop_keeping_columns_in_step,
    with_lock_retry,
)

revision: str = "c0ffee000007"
down_revision: str | None = "c0ffee000006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

users = sa.table(
    "users", sa.column("id", sa.BigInteger), sa.column("phone"), sa.column("phone_number")
)


def upgrade() -> None:
    with_lock_retry(
        lambda: op.add_column(
            "users", sa.Column("phone_number", sa.String(32), nullable=True), if_not_exists=True
        ),
        table="users",
    )
    keep_columns_in_step("users", "phone", "phone_number")
    backfill_in_batches(
        users,
        key=users.c.id,
        values={"phone_number": users.c.phone},
        pending=users.c.phone_number.is_(None) & users.c.phone.is_not(None),
        label="users.phone_number",
    )


def downgrade() -> None:
    stop_keeping_columns_in_step("users", "phone", "phone_number")
    with_lock_retry(lambda: op.drop_column("users", "phone_number", if_exists=True), table="users")
