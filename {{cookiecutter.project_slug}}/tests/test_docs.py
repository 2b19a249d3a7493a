"""The playbook points at files and helpers that exist: a rename must update it."""

import re

import pytest

from {{ cookiecutter.project_slug }}.db import backfill, migration_helpers
from {{ cookiecutter.project_slug }}.settings import PROJECT_ROOT

PLAYBOOK = (PROJECT_ROOT / "MIGRATIONS.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(set(re.findall(r"`(\d{4}_\w+\.py)`", PLAYBOOK))))
def test_example_revisions_named_in_the_playbook_exist(name: str) -> None:
    assert (PROJECT_ROOT / "migrations" / "versions" / name).is_file()


@pytest.mark.parametrize(
    "helper", sorted(set(re.findall(r"\| `([a-z_]+)` \|$", PLAYBOOK, re.MULTILINE)))
)
def test_helpers_named_in_the_playbook_exist(helper: str) -> None:
    assert hasattr(migration_helpers, helper) or hasattr(backfill, helper)


def test_every_example_revision_is_in_the_playbook() -> None:
    shipped = {path.name for path in (PROJECT_ROOT / "migrations" / "versions").glob("0*.py")}

    assert shipped <= set(re.findall(r"`(\d{4}_\w+\.py)`", PLAYBOOK))
