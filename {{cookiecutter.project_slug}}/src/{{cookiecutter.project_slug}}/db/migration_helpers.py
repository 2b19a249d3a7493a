"""Moved to the migration toolkit
(``{{ cookiecutter.project_slug }}.migration_toolkit.helpers``); this module stays for
the revisions written before the move, which import it: revisions are never rewritten.
"""

from {{ cookiecutter.project_slug }}.migration_toolkit.helpers import *  # noqa: F403
from {{ cookiecutter.project_slug }}.migration_toolkit.helpers import __all__ as __all__
