"""Moved to the package ``alembic_pgsafe`` (``alembic_pgsafe.backfill_jobs``); this module stays for
the revisions written before the move, which import it: revisions are never rewritten.
"""

from alembic_pgsafe.backfill_jobs import *  # noqa: F403
from alembic_pgsafe.backfill_jobs import __all__ as __all__

if __name__ == "__main__":  # `python -m <package>.db.backfill_jobs run`, as runbooks said
    import sys

    from alembic_pgsafe.backfill_jobs import main

    sys.exit(main())
