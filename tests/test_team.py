"""Two engineers, one revision each from `make revision`, merged: what every make target says,
`make relink` on the branch that merged last, and `alembic merge heads` as the alternative,
in a rendered service that is a real git repository.
"""

import re
import shutil
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import Project, bake

IDENTITY = ("-c", "user.name=Test", "-c", "user.email=test@example.com")
HEADS_LINE = re.compile(r"^.*2 heads in the migration history: .*make relink.*$", re.MULTILINE)


def model(name: str, table: str) -> str:
    return textwrap.dedent(f"""\
        from sqlalchemy import BigInteger, Identity, String
        from sqlalchemy.orm import Mapped, mapped_column

        from {{package}}.db.base import Base


        class {name}(Base):
            __tablename__ = "{table}"

            id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
            reference: Mapped[str] = mapped_column(String(40))
        """)


def git(project: Project, *args: str) -> str:
    result = project.run("git", *IDENTITY, *args)
    assert result.returncode == 0, f"git {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout


def register(project: Project, name: str, table: str) -> None:
    """The model imported by models/__init__.py, where env.py finds the metadata."""
    package = project.path.name
    init_file = project.path / "src" / package / "models" / "__init__.py"
    init = init_file.read_text(encoding="utf-8")
    base = f"from {package}.db.base import Base\n"
    init = init.replace(base, f"{base}from {package}.models.{table} import {name}\n")
    init = init.replace('__all__ = ["Base"', f'__all__ = ["Base", "{name}"')
    init_file.write_text(init, encoding="utf-8")


def add_model(project: Project, name: str, table: str, database: str) -> None:
    """What an engineer does: a model, `make revision`, a commit."""
    package = project.path.name
    models = project.path / "src" / package / "models"
    source = model(name, table).replace("{package}", package)
    (models / f"{table}.py").write_text(source, encoding="utf-8")
    register(project, name, table)
    project.make("revision", f"m=create {table}", DATABASE_URL=database)
    project.make("migrate", DATABASE_URL=database)
    project.run("uv", "run", "ruff", "check", "--fix", "--quiet", "src")
    project.run("uv", "run", "ruff", "format", "--quiet", "src")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", f"Create {table}")


def one_heads_line(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert len(HEADS_LINE.findall(output)) == 1, output
    assert "Traceback" not in output, output
    return output


def test_two_branches_merged_are_made_linear(
    cookies_session: Any,
    shared_env: dict[str, str],
    create_database: Callable[[], str],
    postgres_url: str,
    tmp_path: Path,
) -> None:
    answers = {"project_name": "Team Service", "starting_schema": "empty", "docker": "no"}
    project = bake(cookies_session, shared_env, answers)
    alice, bob = create_database(), create_database()  # each engineer's own database
    parent = project.run("uv", "run", "alembic", "heads").stdout.split()[0]
    git(project, "checkout", "-q", "-b", "refunds")
    add_model(project, "Refund", "refunds", bob)
    git(project, "checkout", "-q", "main")
    add_model(project, "Invoice", "invoices", alice)
    git(project, "checkout", "-q", "refunds")
    merge = project.run("git", *IDENTITY, "merge", "-q", "main", "-m", "Merge main")
    if merge.returncode != 0:  # both imported their model on the same line: keep both
        init = f"src/{project.path.name}/models/__init__.py"
        git(project, "checkout", "--theirs", init)
        register(project, "Refund", "refunds")
        project.run("uv", "run", "ruff", "check", "--fix", "--quiet", "src")
        project.run("uv", "run", "ruff", "format", "--quiet", "src")
        git(project, "add", "-A")
        git(project, "commit", "-q", "--no-edit")

    # Every command says it in one line, naming the command that fixes it.
    one_heads_line(project.run("make", "migrate", DATABASE_URL=bob))
    one_heads_line(project.run("make", "revision", "m=more", DATABASE_URL=bob))
    one_heads_line(project.run("make", "lint"))
    one_heads_line(project.run("make", "test", TEST_DATABASE_URL=postgres_url))
    one_heads_line(project.run("make", "heads", "BASE=main"))

    # Bob's database applied his revision on top of the old parent: told, nothing changed.
    refused = project.run("make", "relink", DATABASE_URL=bob)
    assert refused.returncode != 0
    assert f"'make downgrade to={parent}'" in refused.stderr, refused.stderr
    assert git(project, "status", "--porcelain") == ""

    # The alternative first, on a copy: `alembic merge heads` gives a history that passes.
    merged = Project(tmp_path / project.path.name, project.env)
    shutil.copytree(project.path, merged.path, ignore=shutil.ignore_patterns(".venv", ".localdb"))
    [refunds] = (merged.path / "migrations" / "versions").glob("*_create_refunds.py")
    carol = create_database()  # a database like Bob's: his revision applied on the old parent
    applied = merged.run(
        "uv", "run", "alembic", "upgrade", revision_id(refunds), DATABASE_URL=carol
    )
    assert applied.returncode == 0, applied.stdout + applied.stderr
    written = merged.run("uv", "run", "alembic", "merge", "heads", "-m", "merge main")
    assert written.returncode == 0, written.stdout + written.stderr
    upgraded = merged.make("migrate", "check", DATABASE_URL=carol)  # main's revision, the merge
    assert "create invoices" in upgraded
    merged.make("lint")
    tested = merged.make("test", TEST_DATABASE_URL=postgres_url)
    assert re.search(r"^=+ \d+ passed, \d+ deselected in", tested, re.MULTILINE), tested[-2000:]

    # Done as told: downgrade, relink, migrate.
    project.make("downgrade", f"to={parent}", DATABASE_URL=bob)
    relinked = project.make("relink", DATABASE_URL=bob)
    assert "one head again" in relinked
    migrated = project.make("migrate", "check", DATABASE_URL=bob)
    assert "create invoices" in migrated
    assert "create refunds" in migrated
    project.make("lint", "heads", "BASE=main")
    for step in ("downgrade to=base", "migrate"):
        project.make(*step.split(), DATABASE_URL=alice)


def revision_id(path: Path) -> str:
    found = re.search(r'^revision: str = "(\w+)"$', path.read_text(encoding="utf-8"), re.MULTILINE)
    assert found, path
    return found.group(1)


def test_squashed_lessons_pass_check_lint_and_the_suite(
    cookies_session: Any,
    shared_env: dict[str, str],
    create_database: Callable[[], str],
    postgres_url: str,
) -> None:
    answers = {"project_name": "Squashed Service", "docker": "no", "ci": "none"}
    project = bake(cookies_session, shared_env, answers)
    versions = project.path / "migrations" / "versions"
    [schedule] = versions.glob("0012_*.py")  # a middle revision: 0013 must still chain on it
    middle = revision_id(schedule)
    [early] = versions.glob("0005_*.py")
    behind, fresh = create_database(), create_database()
    upgraded = project.run(
        "uv", "run", "alembic", "upgrade", revision_id(early), DATABASE_URL=behind
    )
    assert upgraded.returncode == 0, upgraded.stderr

    squashed = project.make("squash", f"to={middle}", DATABASE_URL=fresh)

    assert "removed tests/migrations/test_lessons.py" in squashed
    git(project, "commit", "-q", "-m", f"Squash the history up to {middle}")
    [baseline] = versions.glob("*_baseline.py")
    assert revision_id(baseline) == middle
    assert len(list(versions.glob("*.py"))) == 2  # the baseline and 0013, which revises it
    migrated = project.make("migrate", "check", DATABASE_URL=fresh)
    assert "No new upgrade operations detected." in migrated
    refused = project.run("make", "migrate", DATABASE_URL=behind)
    assert refused.returncode != 0
    assert f"the baseline {middle}" in refused.stderr, refused.stderr
    project.make("lint")
    tested = project.make("test", TEST_DATABASE_URL=postgres_url)
    assert re.search(r"^=+ \d+ passed, \d+ deselected in", tested, re.MULTILINE), tested[-2000:]
