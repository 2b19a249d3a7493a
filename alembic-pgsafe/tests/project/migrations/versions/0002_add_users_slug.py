"""Add users.slug as a nullable column.

Lesson: step one of adding a NOT NULL column to a live table. A nullable column without a
volatile default is a catalogue-only change: it takes its ACCESS EXCLUSIVE lock for
milliseconds and rewrites nothing. The column is filled by the next revision and constrained
by the one after; the application writes it for new rows from this release on.

Revision ID: c0ffee000002
Revises: c0ffee000001
Create Date: 2026-01-01 00:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c0ffee000002"
down_revision: str | None = "c0ffee000001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("slug", sa.String(length=240), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "slug")
