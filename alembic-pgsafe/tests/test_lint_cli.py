"""``alembic-pgsafe lint`` as a linter's command line: formats, a baseline, per-rule settings,
the rules listed and explained, and exit statuses that say what happened."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from alembic_pgsafe.helpers import TOOLKIT_RULES
from alembic_pgsafe.lint_cli import RULES, explain
from tests.conftest import PROJECT, TOOLKIT

RISKY = '''"""An index built the blocking way, and a table emptied."""

from alembic import op

revision = "risky0000001"
down_revision = "c0ffee000005"


def upgrade() -> None:
    op.create_index("ix_users_full_name", "users", ["full_name"])
    op.execute("TRUNCATE posts")


def downgrade() -> None:
    op.drop_index("ix_users_full_name", table_name="users")
'''
RISKY_FILE = "migrations/versions/risky.py"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The fixture project with one risky revision on top of its history."""
    copy = tmp_path / "project"
    shutil.copytree(PROJECT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / RISKY_FILE).write_text(RISKY, encoding="utf-8")
    ini = (copy / "alembic.ini").read_text(encoding="utf-8")
    # env.py imports tests.project.models: keep the package's root on the path.
    ini = ini.replace("%(here)s/../..", str(PROJECT.parents[1]))
    (copy / "alembic.ini").write_text(ini, encoding="utf-8")
    return copy


def lint(project: Path, *args: str, table: str = "") -> subprocess.CompletedProcess[str]:
    if table:
        pyproject = project / "pyproject.toml"
        header = "[tool.alembic-pgsafe.lint]\n"  # the fixture's table (its metadata setting)
        lines = pyproject.read_text().replace(header, f"{header}{table}\n").splitlines()
        if table.startswith("metadata ="):  # instead of the fixture's
            lines = [line for line in lines if not line.startswith('metadata = "tests.project')]
        pyproject.write_text("\n".join(lines) + "\n")
    return subprocess.run(
        [*TOOLKIT, "lint", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_text_names_each_finding_with_its_fix_and_exits_1(project: Path) -> None:
    result = lint(project)

    assert result.returncode == 1, result.stderr
    assert f"{RISKY_FILE}: require-concurrent-index-creation:" in result.stdout
    assert f"{RISKY_FILE}: truncate:" in result.stdout
    assert f"{RISKY_FILE} (downgrade): require-concurrent-index-deletion:" in result.stdout
    assert "fix: create_index_concurrently(name, table, columns)" in result.stdout
    assert "Found 3 issues in 6 files" in result.stdout


def test_json_is_one_document_with_every_field(project: Path) -> None:
    result = lint(project, "--format", "json")

    document = json.loads(result.stdout)
    assert result.returncode == 1
    assert (document["checked"], document["errors"], document["warnings"]) == (6, 3, 0)
    [index] = [f for f in document["findings"] if f["rule"] == "require-concurrent-index-creation"]
    assert index["file"] == RISKY_FILE
    assert index["direction"] == "upgrade"
    assert index["severity"] == "error"
    assert index["helper"] == "create_index_concurrently"
    assert "CREATE INDEX ix_users_full_name ON users (full_name)" in index["statement"]


def test_github_format_annotates_the_revision_file(project: Path) -> None:
    result = lint(project, "--format", "github")

    *lines, summary = result.stdout.splitlines()
    assert result.returncode == 1
    assert len(lines) == 3
    assert summary.startswith("Found 3 issues in 6 files")  # a plain log line after them
    for line in lines:
        assert line.startswith(f"::error file={RISKY_FILE},title="), line
        assert "%0A" not in line.split("::", 2)[1]  # one annotation per line, properties escaped
    assert any("Fix: create_index_concurrently" in line for line in lines)


@pytest.mark.parametrize("where", ["option", "pyproject"])
def test_since_leaves_the_existing_history_unjudged(project: Path, where: str) -> None:
    head = "risky0000001"
    if where == "option":
        result = lint(project, "--since", "c0ffee000005")
        judged_head = lint(project, "--since", head)
    else:
        result = lint(project, table='since = "c0ffee000005"')
        judged_head = lint(project, "--since", head)

    assert result.returncode == 1
    assert "Found 3 issues in 1 of 6 files" in result.stdout
    assert judged_head.returncode == 0, judged_head.stdout
    assert "Found 0 issues in 0 of 6 files" in judged_head.stdout


def test_ignore_and_severity_per_rule(project: Path) -> None:
    index_rules = '"require-concurrent-index-creation", "require-concurrent-index-deletion"'
    result = lint(project, table=f'ignore = [{index_rules}]\nseverity = {{ truncate = "warning" }}')

    assert result.returncode == 0, result.stdout
    assert "require-concurrent-index" not in result.stdout
    assert f"warning: {RISKY_FILE}: truncate:" in result.stdout
    assert "Found 0 issues in 6 files, 1 warnings" in result.stdout


@pytest.mark.parametrize(
    ("args", "table", "said"),
    [
        (("--since", "nope"), "", "lint: --since nope: No such revision or branch 'nope'"),
        (("--explain", "nope"), "", "lint: --explain nope: no such rule"),
        ((), 'severity = { truncate = "fatal" }', "lint: [tool.alembic-pgsafe.lint] in pyproject"),
        (
            (),
            'ignored = ["truncate"]',
            "lint: [tool.alembic-pgsafe.lint] in pyproject.toml: ignored",
        ),
        ((), "severity = {", "lint: pyproject.toml is not valid TOML: "),
        ((), 'metadata = "nowhere:Base"', "lint: [tool.alembic-pgsafe.lint] metadata = 'nowhere"),
        ((), 'metadata = "models:NAMING_CONVENTION"', "lint: [tool.alembic-pgsafe.lint] metadata"),
    ],
)
def test_what_keeps_lint_from_running_is_one_line_and_exit_2(
    project: Path, args: tuple[str, ...], table: str, said: str
) -> None:
    result = lint(project, *args, table=table)

    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(said), line


def test_every_rule_is_listed_and_explained(project: Path) -> None:
    listed = lint(project, "--list-rules")

    assert listed.returncode == 0
    for rule in TOOLKIT_RULES:
        assert f"  {rule}: {RULES[rule]}" in listed.stdout
        assert explain(rule).startswith(f"{rule}: {RULES[rule]}.\nFix: ")
    squawk = lint(project, "--explain", "require-concurrent-index-creation")
    assert squawk.returncode == 0
    assert "The toolkit's helper: create_index_concurrently" in squawk.stdout
