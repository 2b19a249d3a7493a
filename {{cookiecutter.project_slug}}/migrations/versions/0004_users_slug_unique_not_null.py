"""Make users.slug unique with a concurrent index, then NOT NULL.

Lesson: building an index on a live table. A plain CREATE INDEX blocks every write to the
table for the whole build; CREATE INDEX CONCURRENTLY lets writes go on. It cannot run inside a
transaction, hence autocommit_block(). SET NOT NULL would scan the table under an ACCESS
EXCLUSIVE lock; a CHECK constraint added NOT VALID and then validated (which only takes a
SHARE UPDATE EXCLUSIVE lock) lets PostgreSQL skip that scan.

Revision ID: c0ffee000004
Revises: c0ffee000003
Create Date: 2026-01-01 00:00:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "c0ffee000004"
down_revision: str | None = "c0ffee000003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECK = "ck_users_slug_not_null"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            op.f("ix_users_slug"), "users", ["slug"], unique=True, postgresql_concurrently=True
        )
    op.create_check_constraint(op.f(CHECK), "users", "slug IS NOT NULL", postgresql_not_valid=True)
    op.execute(f"ALTER TABLE users VALIDATE CONSTRAINT {CHECK}")
    op.alter_column("users", "slug", nullable=False)
    op.drop_constraint(op.f(CHECK), "users", type_="check")


def downgrade() -> None:
    op.alter_column("users", "slug", nullable=True)
    with op.get_context().autocommit_block():
        op.drop_index(op.f("ix_users_slug"), table_name="users", postgresql_concurrently=True)
