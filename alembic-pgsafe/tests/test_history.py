"""Two branches, one revision each, merged: every command says "two heads" in one line, and
``make relink`` (or ``alembic merge heads``) gives one chain that upgrades and downgrades.

Each test works in a git repository of its own holding a copy of the fixture project's
alembic.ini and migrations/ (its five revisions); the revisions are written by ``alembic
revision`` with the fixture's template.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import URL

from tests.conftest import PACKAGE_ROOT, TOOLKIT, CreateDatabase, command_environment, run_alembic
from tests.project_copy import copy_project

pytestmark = pytest.mark.slow  # git repositories, a few dozen alembic runs
IDENTITY = ("-c", "user.name=Test", "-c", "user.email=test@example.com")


class Repository:
    """A git repository with a copy of the fixture project's migrations, on branch main."""

    def __init__(self, root: Path) -> None:
        self.root = copy_project(root)
        self.git("init", "-q", "-b", "main")
        self.commit("the fixture project")

    @property
    def ini(self) -> Path:
        return self.root / "alembic.ini"

    def git(self, *args: str) -> str:
        result = subprocess.run(
            ["git", *IDENTITY, *args], cwd=self.root, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"git {' '.join(args)}: {result.stdout}{result.stderr}"
        return result.stdout

    def commit(self, message: str) -> None:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)

    def revision(self, message: str) -> str:
        """A new revision on the current head, written and committed; its id."""
        result = run_alembic("revision", "-m", message, database_url=None, alembic_ini=self.ini)
        assert result.returncode == 0, result.stdout + result.stderr
        self.commit(message)
        (head,) = self.script().get_heads()
        return head

    def script(self) -> ScriptDirectory:
        return ScriptDirectory.from_config(Config(self.ini))

    def toolkit(
        self, *args: str, database_url: URL | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*TOOLKIT, *args, "--config", str(self.ini)],
            cwd=self.root,
            env=command_environment(database_url),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def alembic(self, *args: str, database_url: URL | None) -> subprocess.CompletedProcess[str]:
        return run_alembic(*args, database_url=database_url, alembic_ini=self.ini, cwd=self.root)

    def files(self) -> list[str]:
        return sorted(path.name for path in (self.root / "migrations" / "versions").glob("*.py"))


def two_heads(root: Path) -> tuple[Repository, str, str, str]:
    """main and feature each add a revision on the same parent; feature then merges main.
    Returns the repository (on feature), the parent, main's revision and feature's."""
    repository = Repository(root)
    (parent,) = repository.script().get_heads()
    repository.git("checkout", "-q", "-b", "feature")
    ours = repository.revision("add invoices")
    repository.git("checkout", "-q", "main")
    theirs = repository.revision("add refunds")
    repository.git("checkout", "-q", "feature")
    repository.git("merge", "-q", "main", "-m", "Merge main")
    return repository, parent, theirs, ours


def assert_one_line_about_heads(output: str, *heads: str) -> None:
    lines = [line for line in output.splitlines() if "heads in the migration history" in line]
    assert len(lines) == 1, output
    assert "alembic-pgsafe relink" in lines[0], output
    for head in heads:
        assert head in lines[0], output
    assert "Traceback" not in output, output


def test_every_command_names_the_two_heads(tmp_path: Path, create_database: CreateDatabase) -> None:
    repository, _, theirs, ours = two_heads(tmp_path)

    upgrade = repository.alembic("upgrade", "head", database_url=create_database())
    offline = repository.alembic("upgrade", "head", "--sql", database_url=None)
    lint = subprocess.run(
        [*TOOLKIT, "lint", str(repository.ini)], capture_output=True, text=True, check=False
    )
    check = repository.toolkit("heads", "--base", "main")

    for result in (upgrade, offline, lint, check):
        assert result.returncode != 0, result.stdout + result.stderr
        assert_one_line_about_heads(result.stdout + result.stderr, theirs, ours)


def test_relink_puts_the_branch_on_top(tmp_path: Path, create_database: CreateDatabase) -> None:
    repository, parent, theirs, ours = two_heads(tmp_path)
    before = repository.files()

    relinked = repository.toolkit("relink", "--base", "main")

    assert relinked.returncode == 0, relinked.stdout + relinked.stderr
    assert f"now revises {theirs} (was {parent})" in relinked.stdout
    script = repository.script()
    assert script.get_heads() == [ours]
    assert script.get_revision(ours).down_revision == theirs
    # The branch's file now sorts after its new parent's, and only the parent lines changed.
    moved, new_parent = (Path(str(script.get_revision(rev).path)).name for rev in (ours, theirs))
    assert moved > new_parent
    assert len(repository.files()) == len(before)
    diff = repository.git("diff", "-M", "--unified=0", "HEAD")
    changed = [
        line
        for line in diff.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert sorted(changed) == sorted(
        [
            f"-Revises: {parent}",
            f"+Revises: {theirs}",
            f'-down_revision: str | Sequence[str] | None = "{parent}"',
            f'+down_revision: str | Sequence[str] | None = "{theirs}"',
        ]
    ), diff
    # The CI check: not on top before the relink (two heads), on top after it.
    assert repository.toolkit("heads", "--base", "main").returncode == 0
    # Up, down, up on a fresh database.
    url = create_database()
    for step in (("upgrade", "head"), ("downgrade", "base"), ("upgrade", "head")):
        result = repository.alembic(*step, database_url=url)
        assert result.returncode == 0, result.stdout + result.stderr


def test_a_branch_not_merged_with_main_is_not_on_top(tmp_path: Path) -> None:
    repository, _, theirs, _ = two_heads(tmp_path)
    repository.git("reset", "-q", "--hard", "HEAD~1")  # feature before it merged main

    check = repository.toolkit("heads", "--base", "main")

    assert check.returncode == 1
    assert f"not on top of main's head {theirs}" in check.stderr
    assert "alembic-pgsafe relink" in check.stderr


def test_relink_refuses_a_database_with_the_branch_applied(
    tmp_path: Path, create_database: CreateDatabase
) -> None:
    repository, parent, theirs, ours = two_heads(tmp_path)
    url = create_database()
    applied = repository.alembic("upgrade", ours, database_url=url)  # in its old place
    assert applied.returncode == 0, applied.stdout + applied.stderr
    committed = repository.git("status", "--porcelain")

    refused = repository.toolkit("relink", "--base", "main", database_url=url)

    assert refused.returncode == 1
    assert f"has applied {ours}" in refused.stderr
    assert f"'alembic downgrade {parent}'" in refused.stderr
    assert "'alembic upgrade head'" in refused.stderr
    assert repository.git("status", "--porcelain") == committed  # nothing changed
    # Done as told: downgrade, relink, migrate: both revisions applied, in the new order.
    down = repository.alembic("downgrade", parent, database_url=url)
    assert down.returncode == 0, down.stdout + down.stderr
    relinked = repository.toolkit("relink", "--base", "main", database_url=url)
    assert relinked.returncode == 0, relinked.stdout + relinked.stderr
    up = repository.alembic("upgrade", "head", database_url=url)
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"{parent} -> {theirs}" in up.stderr
    assert f"{theirs} -> {ours}" in up.stderr


def test_alembic_merge_heads_gives_a_clean_revision(
    tmp_path: Path, create_database: CreateDatabase
) -> None:
    repository, _, theirs, ours = two_heads(tmp_path)

    merged = repository.alembic("merge", "heads", "-m", "merge main", database_url=None)
    assert merged.returncode == 0, merged.stdout + merged.stderr

    (merge,) = repository.script().get_heads()
    assert set(repository.script().get_revision(merge).down_revision or ()) == {theirs, ours}
    lint = subprocess.run(
        [*TOOLKIT, "lint", str(repository.ini)], capture_output=True, text=True, check=False
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert f"Found 0 issues in {len(repository.files())} files" in lint.stdout
    mypy = [sys.executable, "-m", "mypy", "--cache-dir", os.devnull]  # the package's untouched
    typed = subprocess.run(
        [*mypy, *repository.root.glob("migrations/versions/*merge*.py")],
        cwd=PACKAGE_ROOT,  # the package's mypy settings: strict
        capture_output=True,
        text=True,
        check=False,
    )
    assert typed.returncode == 0, typed.stdout + typed.stderr
    url = create_database()
    for step in (("upgrade", "head"), ("downgrade", "base"), ("upgrade", "head")):
        result = repository.alembic(*step, database_url=url)
        assert result.returncode == 0, result.stdout + result.stderr
