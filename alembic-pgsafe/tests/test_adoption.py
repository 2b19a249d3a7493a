"""An existing Alembic project adopts alembic-pgsafe as its README says, on real PostgreSQL.

The project is what ``alembic init -t async`` makes, with one model. Lint needs no change to
it; the README's few lines in env.py then give ``alembic upgrade`` the deploy lock and the
timeouts, autogenerate the safe operations, and the backfill runner its jobs.
"""

import difflib
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import URL, text

from alembic_pgsafe.helpers import deploy_lock_key
from tests.conftest import PACKAGE_ROOT, CreateDatabase, command_environment, connect

MODEL = '''\
"""The project's one model."""

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    customer: Mapped[str] = mapped_column(sa.String(200){index})
    total_cents: Mapped[int | None] = mapped_column(sa.BigInteger)
'''
PYPROJECT = '[project]\nname = "orders"\nversion = "1.0"\n'


def readme_snippet(name: str) -> str:
    """A python code block of the README's adoption section, found by its first line."""
    readme = (PACKAGE_ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [
        textwrap.dedent(code)
        for code in re.findall(r"^ *```python\n(.*?)^ *```", readme, re.DOTALL | re.MULTILINE)
    ]
    [block] = [block for block in blocks if block.startswith(f"# {name}")]
    return block


def adopt(env_py: str) -> str:
    """env.py as the README says to change it: its imports and the call that replaces the
    ``if context.is_offline_mode(): ... else: ...`` block at the end."""
    imports = readme_snippet("env.py: imports")
    call = readme_snippet("env.py: instead of the offline/online block at the end")
    env_py = env_py.replace("target_metadata = None\n", "target_metadata = Base.metadata\n")
    env_py = env_py.replace(
        "from alembic import context\n", f"from alembic import context\n{imports}"
    )
    block = "if context.is_offline_mode():\n    run_migrations_offline()\n"
    block += "else:\n    run_migrations_online()\n"
    assert block in env_py, "alembic init's env.py changed: the README must follow"
    return env_py.replace(block, call)


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root

    def run(
        self, *command: str, url: URL | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command,
            cwd=self.root,
            env=command_environment(url) | env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def alembic(self, *args: str, url: URL | None = None, **env: str) -> str:
        result = self.run(sys.executable, "-m", "alembic", *args, url=url, **env)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout + result.stderr

    def toolkit(self, *args: str, url: URL | None = None) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "alembic_pgsafe", *args, url=url)

    def write_revision(self, name: str, body: str) -> None:
        """A hand-written revision on top of the current head."""
        heads = self.alembic("heads").split()
        head = heads[0] if heads else None
        source = f'''"""{name}"""

import sqlalchemy as sa
from alembic import op

from alembic_pgsafe import schedule_backfill

revision = "{name}"
down_revision = {head!r}
'''
        source += textwrap.dedent(body)
        (self.root / "migrations" / "versions" / f"{name}.py").write_text(source, "utf-8")


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """``alembic init -t async migrations``, its one model and its pyproject.toml."""
    root = tmp_path / "orders"
    root.mkdir()
    made = subprocess.run(
        [sys.executable, "-m", "alembic", "init", "-t", "async", "migrations"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    (root / "models.py").write_text(MODEL.format(index=""), encoding="utf-8")
    (root / "pyproject.toml").write_text(PYPROJECT, encoding="utf-8")
    return Project(root)


def test_lint_needs_no_change_to_env_py(project: Project) -> None:
    project.write_revision(
        "plain_index",
        """
        def upgrade() -> None:
            op.create_index("ix_orders_customer", "orders", ["customer"])


        def downgrade() -> None:
            op.drop_index("ix_orders_customer", table_name="orders")
        """,
    )

    linted = project.toolkit("lint")

    assert linted.returncode == 1, linted.stdout + linted.stderr
    assert "CREATE INDEX ix_orders_customer ON orders (customer)" in linted.stdout
    assert "create_index_concurrently" in linted.stdout  # the fix, named
    assert re.search(r"Found [1-9]\d* issues in 1 files", linted.stdout), linted.stdout


@pytest.mark.slow
async def test_env_py_lines_give_upgrade_the_toolkit(
    project: Project, create_database: CreateDatabase
) -> None:
    env_py = project.root / "migrations" / "env.py"
    stock = env_py.read_text(encoding="utf-8")
    env_py.write_text(adopt(stock), encoding="utf-8")
    changed = [
        line
        for line in difflib.unified_diff(stock.splitlines(), env_py.read_text().splitlines(), n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert len([line for line in changed if line.startswith("+")]) <= 10, changed
    url = create_database()

    # Autogenerate on an empty database: the table, written as Alembic would.
    project.alembic("revision", "--autogenerate", "-m", "create orders", url=url)
    project.alembic("upgrade", "head", url=url)

    # The deploy lock applies: another deploy holds it, this one waits, then gives up.
    async with connect(url) as other_deploy:
        key = deploy_lock_key("orders:alembic")
        await other_deploy.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        waited = project.run(
            sys.executable, "-m", "alembic", "-x", "deploy_lock_wait=1", "upgrade", "head", url=url
        )
        await other_deploy.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    assert waited.returncode != 0
    assert "another deploy held the migration lock" in waited.stdout + waited.stderr

    # lock_timeout applies: a plain ALTER waiting behind a reader gives up instead of queueing
    # every query of the application behind it.
    project.write_revision(
        "add_note",
        """
        def upgrade() -> None:
            op.add_column("orders", sa.Column("note", sa.Text()))


        def downgrade() -> None:
            op.drop_column("orders", "note")
        """,
    )
    async with connect(url) as reader:
        await reader.execute(text("BEGIN"))
        await reader.execute(text("SELECT count(*) FROM orders"))
        blocked = project.run(
            sys.executable,
            "-m",
            "alembic",
            "upgrade",
            "head",
            url=url,
            MIGRATION_LOCK_TIMEOUT="200ms",
        )
        await reader.execute(text("ROLLBACK"))
    assert blocked.returncode != 0
    assert "lock timeout" in blocked.stdout + blocked.stderr
    project.alembic("upgrade", "head", url=url)

    # Autogenerate on a table that exists: the index is built CONCURRENTLY.
    (project.root / "models.py").write_text(MODEL.format(index=", index=True"), "utf-8")
    project.alembic("revision", "--autogenerate", "-m", "index customer", url=url)
    [written] = (project.root / "migrations" / "versions").glob("*index_customer.py")
    assert "create_index_concurrently(" in written.read_text(encoding="utf-8")
    project.alembic("upgrade", "head", url=url)

    # A backfill scheduled by a revision runs after the deploy, by the command line.
    async with connect(url) as writer:
        rows = "SELECT 'c' || n FROM generate_series(1, 2000) AS n"
        await writer.execute(text(f"INSERT INTO orders (customer) {rows}"))
        await writer.commit()
    project.write_revision(
        "fill_totals",
        """
        orders = sa.table(
            "orders", sa.column("id", sa.BigInteger), sa.column("total_cents", sa.BigInteger)
        )


        def upgrade() -> None:
            schedule_backfill(
                orders,
                key=orders.c.id,
                values={"total_cents": 0},
                pending=orders.c.total_cents.is_(None),
                name="orders.total_cents",
            )


        def downgrade() -> None:
            pass
        """,
    )
    project.alembic("upgrade", "head", url=url)
    ran = project.toolkit("backfill", "run", url=url)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    status = project.toolkit("backfill", "status", url=url)
    assert "orders.total_cents" in status.stdout
    assert "finished" in status.stdout
    async with connect(url) as reader:
        missing = await reader.scalar(text("SELECT count(*) FROM orders WHERE total_cents IS NULL"))
    assert missing == 0
