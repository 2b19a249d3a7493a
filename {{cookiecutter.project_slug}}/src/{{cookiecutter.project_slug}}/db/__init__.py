"""The service's database layer: the declarative base (``base``) and sessions (``session``).

``migration_helpers``, ``backfill`` and ``backfill_jobs`` here only forward to the package
``alembic_pgsafe``, for the revisions written before the toolkit moved there.
"""
