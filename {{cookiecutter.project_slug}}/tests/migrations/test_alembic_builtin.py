"""pytest-alembic's built-in checks, each on an empty database of its own:
one head, upgrade from base to head, every downgrade reverses its upgrade, models match head."""

from pytest_alembic.tests import (
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)

__all__ = [
    "test_model_definitions_match_ddl",
    "test_single_head_revision",
    "test_up_down_consistency",
    "test_upgrade",
]
