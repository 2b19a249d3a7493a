"""The service's database layer: the declarative base (``base``) and sessions (``session``).

``migration_helpers``, ``backfill`` and ``backfill_jobs`` here only forward to the migration
toolkit (the package ``migration_toolkit`` beside this one), for the revisions written before
it moved.
"""
