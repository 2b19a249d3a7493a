"""The fixture project's Alembic environment: the one call alembic-pgsafe documents."""

from alembic_pgsafe.environment import run_migrations
from tests.project.models import Base

run_migrations(Base.metadata)
