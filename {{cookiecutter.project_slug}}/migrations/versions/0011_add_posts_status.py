"""Add posts.status: NOT NULL at once, with a constant default, and a CHECK on its values.

Lesson: a NOT NULL column whose value is a constant needs no backfill. On PostgreSQL 11+,
ADD COLUMN ... NOT NULL DEFAULT 'draft' changes the catalog only: no rewrite, no scan, a lock
held for milliseconds. Existing rows read 'draft', and so does every post inserted by the
release still serving, which knows nothing of the column. A volatile default (now(),
random(), gen_random_uuid()) would rewrite the whole table under ACCESS EXCLUSIVE.
add_check_constraint then limits the values: NOT VALID (instant), then validated without
blocking traffic; a row that breaks it makes it fail cleanly, leaving no constraint behind.

Revision ID: c0ffee000011
Revises: c0ffee000010
Create Date: 2026-01-01 00:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from alembic_pgsafe import add_check_constraint, with_lock_retry

revision: str = "c0ffee000011"
down_revision: str | None = "c0ffee000010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECK = "ck_posts_status_known"


def upgrade() -> None:
    status = sa.Column("status", sa.String(20), nullable=False, server_default="draft")
    with_lock_retry(lambda: op.add_column("posts", status, if_not_exists=True), table="posts")
    add_check_constraint(CHECK, "posts", "status IN ('draft', 'published')")


def downgrade() -> None:
    # op.f: the name as written; the naming convention would prefix "ck_posts_" again.
    check = op.f(CHECK)
    with_lock_retry(
        lambda: op.drop_constraint(check, "posts", type_="check", if_exists=True), table="posts"
    )
    with_lock_retry(lambda: op.drop_column("posts", "status", if_exists=True), table="posts")
