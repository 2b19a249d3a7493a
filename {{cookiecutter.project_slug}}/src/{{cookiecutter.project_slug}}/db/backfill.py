"""Moved to the package ``alembic_pgsafe`` (``alembic_pgsafe.backfill``); this module stays for
the revisions written before the move, which import it: revisions are never rewritten.
"""

from alembic_pgsafe.backfill import *  # noqa: F403
from alembic_pgsafe.backfill import __all__ as __all__
