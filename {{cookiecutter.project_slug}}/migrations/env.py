"""Alembic environment: the migration toolkit's, on ``Base.metadata``.

``run_migrations`` (``alembic_pgsafe.environment``) runs offline SQL without a database, takes a
connection or engine handed in through ``config.attributes["connection"]`` (tests, tools), and
otherwise connects to MIGRATIONS_DATABASE_URL, else DATABASE_URL. Online, every run holds the
deploy lock (one deploy migrates at a time), sets lock_timeout and statement_timeout
(``MIGRATION_*``, ``-x name=value``, or ``[tool.alembic-pgsafe]`` in pyproject.toml) and commits
each revision on its own; autogenerate writes the toolkit's safe operations. Failures are one
line (``SHOW_TRACEBACK=1`` for the traceback).
"""

from alembic_pgsafe.environment import run_migrations

from {{ cookiecutter.project_slug }}.models import Base

run_migrations(Base.metadata)
