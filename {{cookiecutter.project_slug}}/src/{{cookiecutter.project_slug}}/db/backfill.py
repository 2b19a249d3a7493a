"""Moved to the migration toolkit
(``{{ cookiecutter.project_slug }}.migration_toolkit.backfill``); this module stays for
the revisions written before the move, which import it: revisions are never rewritten.
"""

from {{ cookiecutter.project_slug }}.migration_toolkit.backfill import *  # noqa: F403
from {{ cookiecutter.project_slug }}.migration_toolkit.backfill import __all__ as __all__
