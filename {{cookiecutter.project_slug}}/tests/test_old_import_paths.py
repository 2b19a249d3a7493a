"""The toolkit lives in the package ``alembic_pgsafe``; the module paths revisions imported
before each move work.

Revisions are never rewritten, and a template update never touches ``migrations/versions/``:
a revision written against ``<package>.db.migration_helpers`` or ``<package>.migration_toolkit``
must import exactly what it did. The names below are the public names of those modules when
they moved, frozen here.
"""

import importlib

import pytest

PACKAGE = "{{ cookiecutter.project_slug }}"
BEFORE_THE_MOVE = {
    "db.migration_helpers": (
        "helpers",
        "LOCK_NOT_AVAILABLE CHECK_VIOLATION WRITE_LOCK_MODES MigrationSafetyError"
        " migration_settings set_timeouts timeouts is_lock_timeout describe_lock_holders"
        " with_lock_retry autocommit deploy_lock_key deploy_lock refuse_broken_concurrent_builds"
        " create_index_concurrently drop_index_concurrently WHOLE_TABLE_DML lint_waiver"
        " acknowledge_lint literal_sql compiled_sql add_check_constraint add_not_null"
        " add_foreign_key add_unique_constraint keep_columns_in_step"
        " stop_keeping_columns_in_step fill_on_insert stop_filling_on_insert",
    ),
    "db.backfill": (
        "backfill",
        "TARGET_BATCH_SECONDS GENTLE_BATCH_SIZE batch_end batch_update Progress MEGABYTE"
        " WORST_REPLICA ThrottleGaveUp ReplicasTooFarBehind Throttle ReplicaThrottle"
        " WAL_POSITION WalRateLimit WAL_REPORT_SECONDS Throttles KeysetBackfill key_slices"
        " ParallelKeysetBackfill OFFLINE_BATCH_SIZE backfill_in_batches backfill_throttle"
        " offline_backfill",
    ),
    "db.backfill_jobs": (
        "backfill_jobs",
        "JOBS_TABLE RUN_COMMAND STATUS_COMMAND APPLICATION_NAME PROBE_TIMEOUT QUERY_CANCELED"
        " jobs schedule_backfill unschedule_backfill require_backfill_finished run_job run_jobs"
        " WHEN status_lines main",
    ),
    "db.connect": (
        "connect",
        "SSLMODES Cause POOLER_DETECTED to_asyncpg_url DatabaseTarget database_target"
        " create_engine where ConnectionFailure describe_failure show_traceback failure_line"
        " through_transaction_pooler",
    ),
    "migration_toolkit": (
        "",
        "MigrationSafetyError acknowledge_lint add_check_constraint add_enum_value"
        " add_foreign_key add_not_null add_primary_key add_unique_constraint backfill_in_batches"
        " create_index_concurrently delete_in_batches drop_index_concurrently drop_old_table_name"
        " fill_on_insert keep_columns_in_step literal_sql reindex_concurrently rename_table"
        " require_backfill_finished schedule_backfill stop_filling_on_insert"
        " stop_keeping_columns_in_step timeouts unschedule_backfill value_to_write"
        " with_lock_retry",
    ),
}
# The toolkit's own modules in the service moved too, with the same names as the db.* ones.
for _old, (_module, _names) in list(BEFORE_THE_MOVE.items()):
    if _module and _module != "connect":
        BEFORE_THE_MOVE[f"migration_toolkit.{_module}"] = (_module, _names)


@pytest.mark.parametrize("old_path", sorted(BEFORE_THE_MOVE))
def test_every_name_imports_from_its_old_path_as_the_same_object(old_path: str) -> None:
    new_module, names = BEFORE_THE_MOVE[old_path]
    old = importlib.import_module(f"{PACKAGE}.{old_path}")
    new = importlib.import_module(f"alembic_pgsafe.{new_module}".rstrip("."))

    missing = [name for name in names.split() if not hasattr(old, name)]
    assert missing == [], f"{old_path} lost {missing}"
    assert [name for name in names.split() if getattr(old, name) is not getattr(new, name)] == []
