"""The playbook points at files, recipes and helpers that exist: a rename must update it."""

import re

from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic_pgsafe import backfill, backfill_jobs, helpers
from alembic_pgsafe.squash import squashed_files

from {{ cookiecutter.project_slug }}.settings import PROJECT_ROOT

PLAYBOOK = (PROJECT_ROOT / "MIGRATIONS.md").read_text(encoding="utf-8")
VERSIONS = PROJECT_ROOT / "migrations" / "versions"
# | pattern | [Recipe](#recipe) | (lesson files |) `helper` |
PATTERN = re.compile(
    r"^\| (?P<pattern>[^|]+?) \| \[(?P<recipe>[^]]+)\]\(#(?P<anchor>[a-z0-9-]+)\) \|"
    r"(?: (?P<lessons>[^|]*?) ?\|)? `(?P<helper>[a-z_]+)` \|$",
    re.MULTILINE,
)


def section(title: str, level: str = "##") -> str:
    """The text under the heading ``title`` up to the next heading of the same level."""
    return PLAYBOOK.split(f"\n{level} {title}\n", 1)[1].split(f"\n{level} ", 1)[0]


def github_anchor(heading: str) -> str:
    return re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")


SCRIPT = ScriptDirectory.from_config(Config(PROJECT_ROOT / "alembic.ini"))
# Files a `make squash` baseline replaced (the playbook may still name them) and the baselines.
SQUASHED = squashed_files(SCRIPT)
BASELINES = set(SQUASHED.values())


def test_revisions_named_in_the_playbook_exist() -> None:
    named = set(re.findall(r"`(\d{4}_\w+\.py)`", PLAYBOOK))

    assert {n for n in named if not (VERSIONS / n).is_file() and n not in SQUASHED} == set()


def test_every_shipped_revision_is_in_the_playbook() -> None:
    shipped = {path.name for path in VERSIONS.glob("0*.py")} - BASELINES

    assert shipped or BASELINES  # the glob finds the history, squashed or not
    assert shipped <= set(re.findall(r"`(\d{4}_\w+\.py)`", PLAYBOOK))


def test_every_pattern_links_a_recipe_that_calls_its_helper() -> None:
    table = section("Patterns, each with its recipe")
    rows = [line for line in table.splitlines() if line.startswith("| ")][2:]  # header, rule
    patterns = [match.groupdict() for match in map(PATTERN.fullmatch, rows) if match]

    assert len(patterns) == len(rows) >= 12, "a row does not read | pattern | [recipe] | `helper` |"
    for row in patterns:
        code = "\n".join(re.findall(r"```python\n(.*?)```", section(row["recipe"], "###"), re.S))
        assert row["anchor"] == github_anchor(row["recipe"]), row
        assert f"{row['helper']}(" in code, row
        modules = (helpers, backfill, backfill_jobs)
        assert any(hasattr(module, row["helper"]) for module in modules), row
