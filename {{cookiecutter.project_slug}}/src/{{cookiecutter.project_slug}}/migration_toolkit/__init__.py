"""Moved to the package ``alembic_pgsafe`` (installed from ``pyproject.toml``'s pin); this
module stays for the revisions written before the move, which import it: revisions are never
rewritten. New revisions import from ``alembic_pgsafe`` itself.
"""

from alembic_pgsafe import *  # noqa: F403
from alembic_pgsafe import __all__ as __all__
