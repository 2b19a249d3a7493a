"""``python -m <package>.migration_toolkit COMMAND``, as runbooks written before the move say:
the ``alembic-pgsafe`` command line."""

import sys

from alembic_pgsafe.cli import main

if __name__ == "__main__":
    sys.exit(main())
