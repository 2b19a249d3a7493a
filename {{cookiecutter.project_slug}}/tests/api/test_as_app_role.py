"""The service serves its API when it connects as the app role of ``make db-roles``
(``alembic-pgsafe roles``), on a database the migrator role migrated: the app role reads and
writes rows, and needs nothing more.

The roles' own proofs (privileges, SCRAM verifiers, a second run, failures, default privileges
for later tables) are alembic-pgsafe's. Roles belong to the whole server, not to a database:
this module names its roles with a prefix of its own and drops them at the end. Its setup runs
three command lines (roles, upgrade, backfills): slow, run by make test-all.
"""

import os
import subprocess
import sysconfig
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic_pgsafe.roles import Roles
from sqlalchemy import URL

from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.settings import Settings

from tests.api.conftest import serve
from tests.conftest import CreateDatabase, as_admin, connect, run_blocking
from tests.migrations.conftest import run_alembic, run_backfills

pytestmark = pytest.mark.slow

ALEMBIC_PGSAFE = Path(sysconfig.get_path("scripts")) / "alembic-pgsafe"
"""The command line the package installs in this environment, as ``make db-roles`` runs it."""


@dataclass(frozen=True)
class Setup:
    url: URL
    """The database, as the server's administrator."""
    roles: Roles
    made: subprocess.CompletedProcess[str]
    """The run of alembic-pgsafe roles."""
    upgrade: subprocess.CompletedProcess[str]
    backfills: subprocess.CompletedProcess[str]

    def as_role(self, role: str) -> URL:
        """The database as ``role``: the test server trusts it without a password."""
        return self.url.set(username=role, password=None)


def db_roles(url: URL, prefix: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``alembic-pgsafe roles --prefix PREFIX`` with ADMIN_DATABASE_URL set to ``url``."""
    variables = {
        key: value
        for key, value in os.environ.items()
        if not key.endswith("DATABASE_URL") and not key.startswith("DB_")
    }
    variables["ADMIN_DATABASE_URL"] = url.render_as_string(hide_password=False)
    return subprocess.run(
        [str(ALEMBIC_PGSAFE), "roles", "--prefix", prefix],
        cwd=cwd,  # no .env of a developer's
        env=variables,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def drop_roles(url: URL, *names: str) -> None:
    async with connect(url) as connection:
        query = sa.text("SELECT rolname FROM pg_roles WHERE rolname = ANY (:names)")
        found = list((await connection.execute(query, {"names": list(names)})).scalars())
    for name in found:  # what each owns, and every privilege granted to it, first
        await as_admin(url, "DROP OWNED BY {role}", role=name)
    for name in found:
        await as_admin(url, "DROP ROLE {role}", role=name)


@pytest.fixture(scope="module")
def setup(
    create_database: CreateDatabase, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    """The roles made by the command line, then the migrations and backfills run as the
    migrator, as a deploy with ``make db-roles`` does."""
    url = create_database()
    prefix = f"test_{uuid.uuid4().hex[:12]}"
    roles = Roles.for_prefix(prefix)
    try:
        made = db_roles(url, prefix, tmp_path_factory.mktemp("db_roles"))
        migrator = url.set(username=roles.migrator, password=None)
        upgrade = run_alembic("upgrade", "head", database_url=migrator)
        backfills = run_backfills("run", database_url=migrator)
        yield Setup(url, roles, made, upgrade, backfills)
    finally:
        run_blocking(drop_roles(url, roles.migrator, roles.app))


async def test_the_service_serves_as_the_app_role(setup: Setup) -> None:
    assert (setup.made.returncode, setup.made.stderr) == (0, ""), setup.made.stdout
    assert setup.upgrade.returncode == 0, setup.upgrade.stderr
    assert setup.backfills.returncode == 0, setup.backfills.stdout + setup.backfills.stderr
    settings = Settings(
        database_url=setup.as_role(setup.roles.app).render_as_string(hide_password=False)
    )
    app = create_app(settings)
    paths = {getattr(route, "path", None) for route in app.routes}

    async with serve(app) as client:
        health = await client.get("/health")
        if "/users" in paths:  # the example API, when the service has it
            created = await client.post(
                "/users", json={"email": "app@example.com", "full_name": "A"}
            )
            listed = await client.get("/users")
            assert created.status_code == 201, created.text
            assert listed.status_code == 200, listed.text
            assert created.json() in listed.json()

    assert health.status_code == 200, health.text
    assert health.json()["status"] == "ok"
