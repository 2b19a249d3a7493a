"""Backfill users.slug in batches.

Lesson: a data migration on a live table. One UPDATE of every row would lock them all and keep
one long transaction open (bloat, replication lag) until it ends. backfill_in_batches walks the
rows in keyset batches on the primary key, each batch its own short transaction, touching only
rows whose slug IS NULL; a slug depends on its row alone, so an interrupted run resumes where
it stopped and ends with the same data. ``alembic -x batch_size=N upgrade ...`` fixes the
batch size; by default it adapts to keep each batch near 50 ms.

Revision ID: c0ffee000003
Revises: c0ffee000002
Create Date: 2026-01-01 00:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context

from {{ cookiecutter.project_slug }}.db.backfill import backfill_in_batches

revision: str = "c0ffee000003"
down_revision: str | None = "c0ffee000002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

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


def batch_size() -> int | None:
    given = context.get_x_argument(as_dictionary=True).get("batch_size")
    if given is None:
        return None
    if not given.isdigit() or int(given) < 1:
        msg = f"-x batch_size must be a positive integer, got {given!r}"
        raise ValueError(msg)
    return int(given)


def upgrade() -> None:
    backfill_in_batches(
        users,
        key=users.c.id,
        values={"slug": SLUG},
        pending=users.c.slug.is_(None),
        label="users.slug",
        batch_size=batch_size(),
    )


def downgrade() -> None:
    """Nothing to undo: filled slugs are valid at the previous revision too."""
