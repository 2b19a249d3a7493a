"""The migration toolkit: what keeps this service's migrations safe on a live database.

The template owns this package (``make template-update`` brings its fixes; the service's own
code lives elsewhere): helpers a revision calls (``helpers``), batched backfills
(``backfill``) and backfills run after a deploy (``backfill_jobs``), the autogenerate rewriter
``env.py`` installs (``autogenerate``), the rules of ``make lint`` (``lint``) and the lock
trace of ``make trace`` (``trace``). A revision imports what it uses from here::

    from {{ cookiecutter.project_slug }}.migration_toolkit import create_index_concurrently
"""

from {{ cookiecutter.project_slug }}.migration_toolkit.backfill import (
    backfill_in_batches,
    delete_in_batches,
)
from {{ cookiecutter.project_slug }}.migration_toolkit.backfill_jobs import (
    require_backfill_finished,
    schedule_backfill,
    unschedule_backfill,
)
from {{ cookiecutter.project_slug }}.migration_toolkit.helpers import (
    MigrationSafetyError,
    acknowledge_lint,
    add_check_constraint,
    add_enum_value,
    add_foreign_key,
    add_not_null,
    add_primary_key,
    add_unique_constraint,
    create_index_concurrently,
    drop_index_concurrently,
    drop_old_table_name,
    fill_on_insert,
    keep_columns_in_step,
    literal_sql,
    reindex_concurrently,
    rename_table,
    stop_filling_on_insert,
    stop_keeping_columns_in_step,
    timeouts,
    value_to_write,
    with_lock_retry,
)

__all__ = [
    "MigrationSafetyError",
    "acknowledge_lint",
    "add_check_constraint",
    "add_enum_value",
    "add_foreign_key",
    "add_not_null",
    "add_primary_key",
    "add_unique_constraint",
    "backfill_in_batches",
    "create_index_concurrently",
    "delete_in_batches",
    "drop_index_concurrently",
    "drop_old_table_name",
    "fill_on_insert",
    "keep_columns_in_step",
    "literal_sql",
    "reindex_concurrently",
    "rename_table",
    "require_backfill_finished",
    "schedule_backfill",
    "stop_filling_on_insert",
    "stop_keeping_columns_in_step",
    "timeouts",
    "unschedule_backfill",
    "value_to_write",
    "with_lock_retry",
]
