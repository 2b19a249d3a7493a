"""Make users.slug unique with a concurrent index, then NOT NULL.

Lesson: building an index on a live table, then constraining a column. A plain CREATE INDEX
blocks every write for the whole build; create_index_concurrently lets writes go on, and heals
a failed earlier build. SET NOT NULL alone would scan the table under an ACCESS EXCLUSIVE lock;
add_not_null goes through a CHECK added NOT VALID, then validated, so traffic is never blocked;
it cannot break the release still serving, because the trigger of the previous revision fills
the slug of every row it inserts. Drop that trigger (stop_filling_on_insert) in a later
deploy, once no running release inserts users without a slug.

Revision ID: c0ffee000004
Revises: c0ffee000003
Create Date: 2026-01-01 00:00:00+00:00
"""

from collections.abc import Sequence

from alembic import op

from alembic_pgsafe import (
    add_not_null,
    create_index_concurrently,
    drop_index_concurrently,
    with_lock_retry,
)

revision: str = "c0ffee000004"
down_revision: str | None = "c0ffee000003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_index_concurrently("ix_users_slug", "users", ["slug"], unique=True)
    add_not_null("users", "slug")


def downgrade() -> None:
    with_lock_retry(lambda: op.alter_column("users", "slug", nullable=True), table="users")
    drop_index_concurrently("ix_users_slug", "users")
