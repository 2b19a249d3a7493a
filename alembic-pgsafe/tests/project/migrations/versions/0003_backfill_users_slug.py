"""Fill users.slug for every writer, then backfill the existing rows in batches.

Lesson: a data migration on a live table, while the previous release keeps inserting users
without a slug (it predates the column). First fill_on_insert: a trigger computes the slug of
any row inserted without one, so no NULL appears from now on and the NOT NULL of the next
revision cannot break that release. Then backfill_in_batches walks the rows in keyset batches
on the primary key, each batch its own short transaction, touching only rows whose slug IS
NULL; a slug depends on its row alone, so an interrupted run resumes and ends with the same
data. ``alembic -x batch_size=N upgrade ...`` fixes the batch size for a run.

Revision ID: c0ffee000003
Revises: c0ffee000002
Create Date: 2026-01-01 00:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic_pgsafe import (
    backfill_in_batches,
    fill_on_insert,
    stop_filling_on_insert,
)

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
# slug_base() in the models, which the API uses for new users. The trigger computes the same.
_readable = sa.func.btrim(
    sa.func.regexp_replace(sa.func.lower(users.c.full_name), "[^a-z0-9]+", "-", "g"), "-"
)
SLUG = sa.func.coalesce(sa.func.nullif(_readable, ""), "user") + "-" + sa.cast(users.c.id, sa.Text)


def upgrade() -> None:
    fill_on_insert(users, "slug", SLUG)
    backfill_in_batches(
        users,
        key=users.c.id,
        values={"slug": SLUG},
        pending=users.c.slug.is_(None),
        label="users.slug",
    )


def downgrade() -> None:
    """Filled slugs are valid at the previous revision too: only the trigger goes."""
    stop_filling_on_insert("users", "slug")
