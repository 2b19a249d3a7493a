"""The command line: every command answers ``--help``, bad input is one line and exit 2."""

import subprocess
import sys

import pytest

from alembic_pgsafe import __version__
from alembic_pgsafe.cli import COMMANDS


def run(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "alembic_pgsafe", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_help_lists_every_command() -> None:
    result = run("--help")

    assert result.returncode == 0, result.stderr
    listed = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")]
    assert listed == list(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_has_its_own_help(command: str) -> None:
    result = run(command, "--help")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: alembic-pgsafe"), result.stdout
    assert command in result.stdout.splitlines()[0] or command in ("heads", "relink")


def test_version_is_the_installed_distribution_s() -> None:
    result = run("--version")

    assert result.stdout == f"alembic-pgsafe {__version__}\n"
    assert __version__ != "0+unknown"


@pytest.mark.parametrize(
    ("arguments", "said"),
    [((), "no command given"), (("lnit",), "unknown command 'lnit'")],
)
def test_a_missing_or_unknown_command_is_one_line_and_exit_2(
    arguments: tuple[str, ...], said: str
) -> None:
    result = run(*arguments)

    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line == f"alembic-pgsafe: {said}; one of: {', '.join(COMMANDS)} (--help says more)"
