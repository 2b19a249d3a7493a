"""Make posts.created_on NOT NULL, once its post-deploy backfill has finished.

Lesson: a revision that relies on a scheduled backfill says so first.
require_backfill_finished fails, naming the job and `make backfill`, until the job of the
previous revision has finished; the revisions before it stay applied, so the deploy that
brings this revision can be retried as is once the backfill is done. Ship it in a later
deploy than 0012, after `make backfill` ran. On a new database there is nothing to backfill:
0012 recorded the job as finished and both revisions apply in one go.

Revision ID: c0ffee000013
Revises: c0ffee000012
Create Date: 2026-01-01 00:00:00+00:00
"""

from collections.abc import Sequence

from alembic import op
from alembic_pgsafe import (
    add_not_null,
    require_backfill_finished,
    with_lock_retry,
)

revision: str = "c0ffee000013"
down_revision: str | None = "c0ffee000012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    require_backfill_finished("posts.created_on")
    add_not_null("posts", "created_on")


def downgrade() -> None:
    with_lock_retry(lambda: op.alter_column("posts", "created_on", nullable=True), table="posts")
