"""The shipped ``uv.lock`` fits every render: each answer that changes the dependencies.

The lock is one Jinja template merged by ``scripts/render_locks.py`` (``make lock``) from one
``uv lock`` per variant of ``LOCK_ANSWERS``. Every variant is rendered here and checked by
``uv lock --check`` with a Python of its version, as ``uv sync --locked`` in the render's
Makefile, image and CI would: a dependency edited without ``make lock`` fails here.
"""

import re
import subprocess
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter

from scripts.render_locks import (
    LOCK_ANSWERS,
    LOCK_PROJECT_NAME,
    Variant,
    answer_choices,
    find_python,
    variant_answers,
    variant_name,
    variants,
)
from tests.conftest import TEMPLATE

PYPROJECT = TEMPLATE / "{{cookiecutter.project_slug}}" / "pyproject.toml"


@pytest.fixture(scope="module")
def pythons() -> dict[str, str | None]:
    return {version: find_python(version) for version in answer_choices()["python_version"]}


def test_the_lock_variants_cover_every_answer_the_dependencies_name() -> None:
    """requires-python and the dependencies list name no answer the lock has no variant of."""
    text = PYPROJECT.read_text(encoding="utf-8")
    [requires] = re.findall(r"^requires-python = .*$", text, re.MULTILINE)
    dependencies = text.split("\ndependencies = [\n", 1)[1].split("\n]\n", 1)[0]
    named = set(re.findall(r"cookiecutter\.(\w+)", requires + dependencies))

    assert named <= set(LOCK_ANSWERS), f"add {named - set(LOCK_ANSWERS)} to LOCK_ANSWERS"


@pytest.mark.parametrize("variant", variants(), ids=variant_name)
def test_the_shipped_lock_is_current_for(
    variant: Variant, pythons: dict[str, str | None], tmp_path: Path
) -> None:
    answers = variant_answers(variant)
    python = pythons[answers["python_version"]]
    if python is None:
        pytest.skip(f"no Python {answers['python_version']} on this machine to lock for it")
    project = cookiecutter(
        str(TEMPLATE),
        no_input=True,
        extra_context={"project_name": LOCK_PROJECT_NAME, **answers},
        output_dir=str(tmp_path),
        accept_hooks=False,
    )

    checked = subprocess.run(
        ["uv", "lock", "--check", "--python", python],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    said = "; ".join(re.findall(r"^\s*(?:error|cause): (.*)$", checked.stderr, re.MULTILINE))
    stale = f"the shipped uv.lock is stale for {variant_name(variant)}: run 'make lock' ({said})"
    assert checked.returncode == 0, stale
