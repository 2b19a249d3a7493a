"""Baseline: the start of this service's migration history. It creates nothing.

A fresh database upgraded to this revision holds only ``alembic_version``: ``alembic current``,
``/health`` and the tests have a head to compare with before the first model exists. Add a
model in ``src/{{ cookiecutter.project_slug }}/models/``, then ``make revision m="create
orders"`` writes the next revision on top of this one (MIGRATIONS.md, "Your first model").

Revision ID: c0ffee000000
Revises:
Create Date: 2026-01-01 00:00:00+00:00
"""

from collections.abc import Sequence

revision: str = "c0ffee000000"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing yet: the first model's revision follows this one."""


def downgrade() -> None:
    """Nothing to undo."""
