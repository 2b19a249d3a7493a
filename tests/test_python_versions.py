"""Every python_version really runs: a render for each one other than the default, with metrics
and tracing on, installed from the shipped lock by that Python, linted for it (ruff's and
mypy's targets follow the answer) and its fast suite run on it.

The default version runs in tests/test_generation.py. A version this machine has no
interpreter of is skipped, named in the reason: install it (pyenv, ``uv python install``) to
run it. The renders' linters and suites run side by side (they mostly wait on mypy's cache and
on PostgreSQL), which keeps the module near a minute and a half on two cores.
"""

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from scripts.render_locks import answer_choices, find_python
from tests.conftest import Project, bake

DEFAULT, *OTHER_VERSIONS = answer_choices()["python_version"]
CHECKS = ("lint", "test")  # the render's make targets, run with the version's Python


@dataclass
class VersionRun:
    python: str
    project: Project
    synced: subprocess.CompletedProcess[str]
    ran_on: str = ""
    checks: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)


def version_env(python: str) -> dict[str, str]:
    """The user's environment with uv on ``python``: the render's own .venv and mypy cache."""
    inherited = {"VIRTUAL_ENV", "DATABASE_URL", "UV_PROJECT_ENVIRONMENT", "MYPY_CACHE_DIR"}
    env = {k: v for k, v in os.environ.items() if k not in inherited}
    return env | {"UV_PYTHON": python, "UV_PYTHON_DOWNLOADS": "never"}


@pytest.fixture(scope="module")
def runs(cookies_session: Any) -> dict[str, VersionRun]:
    """Each version with an interpreter here: rendered and synced one by one, then every
    render's checks at once."""
    runs = {}
    for version in OTHER_VERSIONS:
        if (python := find_python(version)) is None:
            continue
        answers = {
            "project_name": f"Python {version} Service",
            "python_version": version,
            "metrics": "yes",
            "tracing": "otlp",
        }
        project = bake(cookies_session, version_env(python), answers)
        run = VersionRun(python, project, project.run("uv", "sync", "--locked"))
        if run.synced.returncode == 0:
            probe = "import sys; print('%d.%d' % sys.version_info[:2])"
            run.ran_on = project.run("uv", "run", "python", "-c", probe).stdout.strip()
        runs[version] = run

    jobs = [(run, check) for run in runs.values() if run.synced.returncode == 0 for check in CHECKS]
    with ThreadPoolExecutor(max_workers=len(jobs) or 1) as pool:
        results = list(pool.map(lambda job: job[0].project.run("make", job[1]), jobs))
    for (run, check), result in zip(jobs, results, strict=True):
        run.checks[check] = result
    return runs


@pytest.mark.parametrize("version", OTHER_VERSIONS)
def test_a_render_installs_lints_and_tests_on_python(
    version: str, runs: dict[str, VersionRun]
) -> None:
    if version not in runs:
        pytest.skip(f"no Python {version} here (python{version} on PATH, pyenv or uv's): skipped")
    run = runs[version]

    assert run.synced.returncode == 0, f"uv sync --locked on {run.python}:\n{run.synced.stderr}"
    assert run.ran_on == version
    failed = [
        f"make {check} on {version}:\n{result.stdout}{result.stderr}"
        for check, result in run.checks.items()
        if result.returncode != 0
    ]
    assert not failed, "\n".join(failed)  # every check's output, not only the first's
    assert list(run.checks) == list(CHECKS)
