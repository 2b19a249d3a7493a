"""Moved to ``alembic_pgsafe.backfill_jobs``; this module stays for the revisions written before the
move, which import it: revisions are never rewritten.
"""

from alembic_pgsafe.backfill_jobs import *  # noqa: F403
from alembic_pgsafe.backfill_jobs import __all__ as __all__
