"""Moved to the package ``alembic_pgsafe`` (``alembic_pgsafe.connect``); this module stays for
code written before the move (``db.connect.create_engine(url)``, as the CHANGELOG advised).
"""

from alembic_pgsafe.connect import *  # noqa: F403
from alembic_pgsafe.connect import __all__ as __all__
