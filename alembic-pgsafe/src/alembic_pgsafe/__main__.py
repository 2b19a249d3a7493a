"""``python -m alembic_pgsafe COMMAND``: the same as the ``alembic-pgsafe`` command."""

import sys

from alembic_pgsafe.cli import main

sys.exit(main())
