"""alembic-pgsafe review: a branch's revisions in a git repository of a test's own (a copy of
the fixture project), as the reviewer reads them (SQL, lint findings with their fixes, locks),
and the short answers."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import URL

from alembic_pgsafe.lint import fix_for
from alembic_pgsafe.review import NO_MIGRATIONS
from tests.conftest import TOOLKIT, CreateDatabase, command_environment, revisions
from tests.project_copy import copy_project

pytestmark = pytest.mark.slow  # a git repository, lint and a trace per revision
TITLE = "## Migrations in this change"
CREATE_TABLE = '''"""Create the review_items table.

Revision ID: review000001
Revises: {down_revision}
"""

import sqlalchemy as sa
from alembic import op

revision = "review000001"
down_revision = {down_revision!r}


def upgrade() -> None:
    op.create_table(
        "review_items",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("review_items")
'''
PLAIN_INDEX = '''"""Index review_items by name, the plain way: writes wait for the build.

Revision ID: review000002
Revises: review000001
"""

from alembic import op

revision = "review000002"
down_revision = "review000001"


def upgrade() -> None:
    op.create_index("ix_review_items_name", "review_items", ["name"])


def downgrade() -> None:
    op.drop_index("ix_review_items_name", table_name="review_items")
'''
SAFE_FILE = "migrations/versions/9001_create_review_items.py"
UNSAFE_FILE = "migrations/versions/9002_index_review_items.py"


def git(repository: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=repository,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def project_repository(directory: Path) -> Path:
    """A git repository holding a copy of the fixture project, committed on main."""
    copy_project(directory)
    git(directory, "init", "--quiet", "--initial-branch", "main")
    git(directory, "add", "--all")
    git(directory, "commit", "--quiet", "--message", "The project")
    return directory


def run_review(
    repository: Path, *args: str, database_url: URL | None
) -> subprocess.CompletedProcess[str]:
    env = command_environment(database_url)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    alembic_ini = str(repository / "alembic.ini")
    return subprocess.run(
        [*TOOLKIT, "review", "--config", alembic_ini, *args],
        cwd=repository,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def branch_with_two_revisions(tmp_path: Path) -> Path:
    repository = project_repository(tmp_path)
    git(repository, "switch", "--quiet", "--create", "feature")
    versions = repository / "migrations" / "versions"
    head = revisions()[-1]
    (versions / Path(SAFE_FILE).name).write_text(CREATE_TABLE.format(down_revision=head))
    (versions / Path(UNSAFE_FILE).name).write_text(PLAIN_INDEX)
    git(repository, "add", "--all")
    git(repository, "commit", "--quiet", "--message", "Two revisions")
    return repository


def sections(report: str) -> dict[str, str]:
    """Each revision's section of the report, by its heading."""
    _, *parts = report.split("\n### ")
    return {part.split("\n", 1)[0]: part for part in parts}


def test_each_new_revision_has_its_sql_findings_and_locks(
    branch_with_two_revisions: Path, create_database: CreateDatabase
) -> None:
    result = run_review(
        branch_with_two_revisions,
        "--base",
        "main",
        "--rows",
        "1000",
        database_url=create_database(),
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{TITLE}\n\n2 revisions new on this branch (base `main`)")
    found = sections(result.stdout)
    assert list(found) == [SAFE_FILE, UNSAFE_FILE]  # oldest first, nothing from main
    safe, unsafe = found[SAFE_FILE], found[UNSAFE_FILE]
    assert "Revision `review000001`, revises `" + revisions()[-1] + "`." in safe
    assert "```sql\n" in safe
    assert "CREATE TABLE review_items (" in safe
    assert "DROP TABLE review_items;" in safe  # the downgrade, folded
    assert "**Lint:** no findings." in safe
    assert "| review_items | ACCESS EXCLUSIVE |" in safe
    assert "CREATE INDEX ix_review_items_name ON review_items (name);" in unsafe
    assert "- **require-concurrent-index-creation**: " in unsafe
    assert f"  - fix: {fix_for('require-concurrent-index-creation')}\n" in unsafe
    assert "- **require-concurrent-index-deletion** (downgrade): " in unsafe
    assert "**Locks** (traced on a scratch database, 1000 rows in each table):" in unsafe
    assert "review_items | SHARE | " in unsafe
    assert "| 1000 |" in unsafe


def test_a_branch_without_revisions_gets_one_line(tmp_path: Path) -> None:
    repository = project_repository(tmp_path)
    git(repository, "switch", "--quiet", "--create", "docs")
    (repository / "NOTES.md").write_text("Nothing for the database.\n")
    git(repository, "add", "--all")
    git(repository, "commit", "--quiet", "--message", "Notes")

    result = run_review(repository, "--base", "main", database_url=None)

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{TITLE}\n\n{NO_MIGRATIONS}\n"


def test_without_a_database_the_report_says_why_there_are_no_locks(
    branch_with_two_revisions: Path,
) -> None:
    summary = branch_with_two_revisions / "summary.md"
    summary.write_text("Earlier steps.\n")

    result = run_review(
        branch_with_two_revisions, "--output", str(summary), database_url=None
    )  # no --base: main, found by itself

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    report = summary.read_text()
    assert report.startswith(f"Earlier steps.\n{TITLE}\n")  # appended, as $GITHUB_STEP_SUMMARY
    assert list(sections(report)) == [SAFE_FILE, UNSAFE_FILE]
    assert report.count("**Locks:** not traced: invalid settings: DATABASE_URL") == 2


def test_an_unknown_base_branch_is_one_line(branch_with_two_revisions: Path) -> None:
    result = run_review(branch_with_two_revisions, "--base", "no-such-branch", database_url=None)

    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("review: ")
    assert "'no-such-branch'" in line
