"""Safe PostgreSQL migrations for Alembic: what keeps a service's migrations safe on a live
database while the release still serving keeps writing.

A revision imports what it uses from here::

    from alembic_pgsafe import create_index_concurrently

The modules: operations a revision calls (``helpers``), batched backfills (``backfill``) and
backfills run after a deploy (``backfill_jobs``, with the latency budget in ``budget``), the
autogenerate rewriter ``env.py`` installs (``autogenerate``), the command line's ``lint``,
``trace``, ``review``, ``history`` (heads, relink), ``squash`` and ``roles``, how it connects
(``connect``) and its settings (``settings``).
"""

from importlib.metadata import PackageNotFoundError, version

from alembic_pgsafe.backfill import (
    backfill_in_batches,
    delete_in_batches,
)
from alembic_pgsafe.backfill_jobs import (
    require_backfill_finished,
    schedule_backfill,
    unschedule_backfill,
)
from alembic_pgsafe.helpers import (
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
    "__version__",
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

try:
    __version__ = version("alembic-pgsafe")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
