"""Throwaway migration chains on scratch tables, run through the fixture project's env.py.

A test writes the revisions it needs into a folder of its own (one per body, chained in order,
with the imports any revision has) and runs them with the fixture project's alembic.ini pointed
at that folder, in process or as the command line.
"""

import subprocess
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import URL
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.conftest import PROJECT, alembic_command, run_alembic

HEADER = '''"""Scratch revision {number} of a test."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from alembic_pgsafe.backfill import *
from alembic_pgsafe.backfill_jobs import *
from alembic_pgsafe.helpers import *

revision = "{revision}"
down_revision = {down_revision!r}
'''


@dataclass(frozen=True)
class ScratchChain:
    alembic_ini: Path
    revisions: list[str]

    def config(self, url: URL | None = None) -> Config:
        config = Config(self.alembic_ini)
        config.attributes["configure_logger"] = False
        if url is not None:
            config.attributes["connection"] = create_async_engine(url, poolclass=NullPool)
        return config

    def upgrade(self, url: URL, target: str = "head") -> None:
        command.upgrade(self.config(url), target)

    def downgrade(self, url: URL, target: str = "base") -> None:
        command.downgrade(self.config(url), target)

    def command_line(self, *args: str, url: URL | None) -> tuple[list[str], dict[str, str]]:
        """``alembic -c <this chain's ini> *args`` and its environment, DATABASE_URL=url."""
        return alembic_command(*args, database_url=url, alembic_ini=self.alembic_ini)

    def run(self, *args: str, url: URL | None) -> subprocess.CompletedProcess[str]:
        return run_alembic(*args, database_url=url, alembic_ini=self.alembic_ini)


def scratch_chain(directory: Path, *bodies: str) -> ScratchChain:
    """Write ``bodies`` (each an ``upgrade()`` and ``downgrade()``) as a chain of revisions."""
    versions = directory / "versions"
    versions.mkdir(parents=True)
    revisions: list[str] = []
    for number, body in enumerate(bodies, 1):
        revision = f"scratch{number:05d}"
        down_revision = revisions[-1] if revisions else None
        header = HEADER.format(number=number, revision=revision, down_revision=down_revision)
        (versions / f"{number:04d}_scratch.py").write_text(f"{header}\n{body}", encoding="utf-8")
        revisions.append(revision)
    ini = (PROJECT / "alembic.ini").read_text(encoding="utf-8")
    ini = ini.replace("%(here)s/", f"{PROJECT}/").replace(
        "[alembic]", f"[alembic]\nversion_locations = {versions}", 1
    )
    (directory / "alembic.ini").write_text(ini, encoding="utf-8")
    for name in (".squawk.toml", "pyproject.toml"):
        (directory / name).write_text((PROJECT / name).read_text(encoding="utf-8"), "utf-8")
    return ScratchChain(directory / "alembic.ini", revisions)
