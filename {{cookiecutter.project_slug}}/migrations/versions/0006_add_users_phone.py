"""Add users.phone, a nullable column, without queueing traffic behind the lock.

Lesson: even an instant ALTER TABLE needs an ACCESS EXCLUSIVE lock for a moment. Queued behind
a long transaction it blocks every query that arrives after it: one slow report freezes the
table. with_lock_retry runs the step with lock_timeout (5 s by default) and retries it with
backoff, then fails naming the session in the way. A nullable column with no default rewrites
nothing; never add a column with a volatile default (``clock_timestamp()``, ``random()``,
``gen_random_uuid()``) to a big table: it rewrites every row.

Revision ID: c0ffee000006
Revises: c0ffee000005
Create Date: 2026-01-01 00:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from alembic_pgsafe import with_lock_retry

revision: str = "c0ffee000006"
down_revision: str | None = "c0ffee000005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with_lock_retry(
        lambda: op.add_column("users", sa.Column("phone", sa.String(length=32), nullable=True)),
        table="users",
    )


def downgrade() -> None:
    with_lock_retry(lambda: op.drop_column("users", "phone"), table="users")
