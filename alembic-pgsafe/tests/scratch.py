"""Throwaway migration chains on scratch tables, run through the fixture project's env.py
(``alembic_pgsafe.testing.scratch_chain``), in process or as the command line."""

import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import URL

from alembic_pgsafe import testing
from tests.conftest import ALEMBIC_INI, alembic_command, run_alembic


@dataclass(frozen=True)
class ScratchChain(testing.ScratchChain):
    def command_line(self, *args: str, url: URL | None) -> tuple[list[str], dict[str, str]]:
        """``alembic -c <this chain's ini> *args`` and its environment, DATABASE_URL=url."""
        return alembic_command(*args, database_url=url, alembic_ini=self.alembic_ini)

    def run(self, *args: str, url: URL | None) -> subprocess.CompletedProcess[str]:
        return run_alembic(*args, database_url=url, alembic_ini=self.alembic_ini)


def scratch_chain(directory: Path, *bodies: str) -> ScratchChain:
    """Write ``bodies`` (each an ``upgrade()`` and ``downgrade()``) as a chain of revisions."""
    chain = testing.scratch_chain(directory, *bodies, alembic_ini=ALEMBIC_INI)
    return ScratchChain(chain.alembic_ini, chain.revisions)
