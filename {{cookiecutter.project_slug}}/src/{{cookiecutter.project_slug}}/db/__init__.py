"""The service's database layer: the declarative base (``base``) and sessions (``session``).

``migration_helpers``, ``backfill``, ``backfill_jobs`` and ``connect`` here only forward to the
package ``alembic_pgsafe``, for the revisions (and code) written before the toolkit moved there.
"""
