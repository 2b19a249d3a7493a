"""Moved to the migration toolkit
(``{{ cookiecutter.project_slug }}.migration_toolkit.backfill_jobs``); this module stays for
the revisions written before the move, which import it: revisions are never rewritten.
"""

from {{ cookiecutter.project_slug }}.migration_toolkit.backfill_jobs import *  # noqa: F403
from {{ cookiecutter.project_slug }}.migration_toolkit.backfill_jobs import __all__ as __all__

if __name__ == "__main__":  # `python -m <package>.db.backfill_jobs run`, as runbooks said
    import sys

    from {{ cookiecutter.project_slug }}.migration_toolkit.backfill_jobs import main

    sys.exit(main())
