"""Rename users.phone to users.phone_number, step 2 of 2: contract (drop the old column).

Lesson: removing a column takes two deploys. First a release that no longer reads or writes
it (for the ORM: the attribute is gone from the model, or SQLAlchemy would still name it in
every INSERT and SELECT); then, once no running process knows the column, this migration drops
it. Dropping it in the same deploy breaks the old release still serving traffic. The drop is
instant (a catalogue change), but it needs the table lock, hence with_lock_retry.

Revision ID: c0ffee000008
Revises: c0ffee000007
Create Date: 2026-01-01 00:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from alembic_pgsafe import (
    acknowledge_lint,
    backfill_in_batches,
    keep_columns_in_step,
    stop_keeping_columns_in_step,
    with_lock_retry,
)

revision: str = "c0ffee000008"
down_revision: str | None = "c0ffee000007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

users = sa.table(
    "users", sa.column("id", sa.BigInteger), sa.column("phone"), sa.column("phone_number")
)


def upgrade() -> None:
    stop_keeping_columns_in_step("users", "phone", "phone_number")
    acknowledge_lint("ban-drop-column", because="no release reads users.phone since 0007 shipped")
    with_lock_retry(lambda: op.drop_column("users", "phone"), table="users")


def downgrade() -> None:
    """Back to the expanded state of 0007: both columns, kept in step by the trigger."""
    with_lock_retry(
        lambda: op.add_column(
            "users", sa.Column("phone", sa.String(32), nullable=True), if_not_exists=True
        ),
        table="users",
    )
    keep_columns_in_step("users", "phone", "phone_number")
    backfill_in_batches(
        users,
        key=users.c.id,
        values={"phone": users.c.phone_number},
        pending=users.c.phone.is_(None) & users.c.phone_number.is_not(None),
        label="users.phone",
    )
