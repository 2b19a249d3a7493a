"""Trim the whitespace around post titles, set-based, in batches.

Lesson: a data migration is SQL, not a loop over ORM objects. The tempting version,

    for post in session.scalars(select(Post)):
        post.title = post.title.strip()

loads every row into the migration's memory, sends one UPDATE per row (a round trip each:
hours on a big table) inside one long transaction, and uses today's models, which may no longer
match the schema at this revision. One UPDATE per batch does the same work in the database,
with a table definition local to this file and only the rows that need it.

Revision ID: c0ffee000010
Revises: c0ffee000009
Create Date: 2026-01-01 00:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic_pgsafe import backfill_in_batches

revision: str = "c0ffee000010"
down_revision: str | None = "c0ffee000009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

posts = sa.table("posts", sa.column("id", sa.BigInteger), sa.column("title", sa.String))
TRIMMED = sa.func.btrim(posts.c.title)


def upgrade() -> None:
    backfill_in_batches(
        posts,
        key=posts.c.id,
        values={"title": TRIMMED},
        pending=posts.c.title != TRIMMED,
        label="posts.title",
    )


def downgrade() -> None:
    """Nothing to undo: trimmed titles are valid at the previous revision too."""
