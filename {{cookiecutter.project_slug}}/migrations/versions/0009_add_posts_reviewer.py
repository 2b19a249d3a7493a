"""Add posts.reviewer_id, a foreign key to users added NOT VALID, then validated.

Lesson: a foreign key on an existing, busy table. ADD FOREIGN KEY checks every row while
holding locks that block writes to both tables. add_foreign_key adds it NOT VALID (instant,
enforced for new rows at once), then VALIDATE checks the old rows under a SHARE UPDATE
EXCLUSIVE lock that lets traffic through. The column is indexed (concurrently) first: PostgreSQL
does not index the referencing side, and ON DELETE SET NULL would scan posts for every user
deleted. The index build commits the new column before it starts: if a later step fails,
run the migration again (the column is added IF NOT EXISTS, the helpers skip what is done).

Revision ID: c0ffee000009
Revises: c0ffee000008
Create Date: 2026-01-01 00:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from alembic_pgsafe import (
    add_foreign_key,
    create_index_concurrently,
    drop_index_concurrently,
    with_lock_retry,
)

revision: str = "c0ffee000009"
down_revision: str | None = "c0ffee000008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FOREIGN_KEY = "fk_posts_reviewer_id_users"


def upgrade() -> None:
    with_lock_retry(
        lambda: op.add_column(
            "posts", sa.Column("reviewer_id", sa.BigInteger(), nullable=True), if_not_exists=True
        ),
        table="posts",
    )
    create_index_concurrently("ix_posts_reviewer_id", "posts", ["reviewer_id"])
    add_foreign_key(FOREIGN_KEY, "posts", "users", ["reviewer_id"], ["id"], ondelete="SET NULL")


def downgrade() -> None:
    with_lock_retry(
        lambda: op.drop_constraint(FOREIGN_KEY, "posts", type_="foreignkey", if_exists=True),
        table="posts",
    )
    drop_index_concurrently("ix_posts_reviewer_id", "posts")
    with_lock_retry(lambda: op.drop_column("posts", "reviewer_id", if_exists=True), table="posts")
