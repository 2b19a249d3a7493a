"""Moved to the package ``alembic_pgsafe`` (``alembic_pgsafe.helpers``); this module stays for
the revisions written before the move, which import it: revisions are never rewritten.
"""

from alembic_pgsafe.helpers import *  # noqa: F403
from alembic_pgsafe.helpers import __all__ as __all__
