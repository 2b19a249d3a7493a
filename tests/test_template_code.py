"""The template's own Python (hooks, tests) is held to the same linters as what it renders."""

import shutil
import subprocess

import pytest

from tests.conftest import TEMPLATE


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=" ".join)
def test_template_code_passes_ruff(command: list[str]) -> None:
    ruff = shutil.which("ruff")
    assert ruff is not None, "requirements-dev.txt installs ruff"

    result = subprocess.run(
        [ruff, *command, "hooks", "tests"], cwd=TEMPLATE, capture_output=True, text=True
    )

    assert result.returncode == 0, result.stdout + result.stderr
