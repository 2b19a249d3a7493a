"""The release path of alembic-pgsafe: .github/workflows/release-alembic-pgsafe.yml.

A pushed tag alembic-pgsafe-v<version> builds the package (after checking that the tag, the
package's version and its CHANGELOG.md agree) with a read-only token, and a second job, the only
one with an OIDC token, publishes what the first built to PyPI by trusted publishing. zizmor
must find nothing in .github (the bar of the renders' `make lint`), and the structure below is
checked on top of it: zizmor accepts tags for actions/* and knows nothing of this release.
Each check is also run on a broken copy, to show that it fails.
"""

import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import TEMPLATE

GITHUB = TEMPLATE / ".github"
WORKFLOW = GITHUB / "workflows" / "release-alembic-pgsafe.yml"
DEPENDABOT = GITHUB / "dependabot.yml"
PACKAGE = TEMPLATE / "alembic-pgsafe"
TAG_PREFIX = "alembic-pgsafe-v"
# owner/repo[/path]@<full commit SHA>, then two spaces and the release it is: "  # v1.2.3".
PINNED = re.compile(r"uses: [\w.-]+/[\w./-]+@[0-9a-f]{40}  # v\d+(\.\d+)*$")
SHA = re.compile(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}")
LINTERS = [
    "uv run --directory alembic-pgsafe --locked --all-extras ruff check .",
    "uv run --directory alembic-pgsafe --locked --all-extras ruff format --check .",
    "uv run --directory alembic-pgsafe --locked --all-extras mypy",
]


def tool(name: str) -> str:
    """A command of the template's environment (.venv/bin), else of $PATH."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which(name, path=search)
    assert found, f"{name} is missing: pip install -r requirements-dev.txt"
    return found


def load(text: str) -> dict[str, Any]:
    workflow: dict[Any, Any] = yaml.safe_load(text)
    # YAML 1.1 reads the key `on` as true.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [step for step in job["steps"] if step.get("uses", "").startswith(f"{action}@")]


def version_check(build: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The build job's step that compares the tag's version with the package's."""
    found = [
        (index, step)
        for index, step in enumerate(build["steps"])
        if all(
            word in step.get("run", "")
            for word in ("GITHUB_REF_NAME", "alembic-pgsafe/pyproject.toml", "CHANGELOG.md")
        )
    ]
    assert len(found) == 1, "the build job has no step checking the tag against the version"
    return found[0]


def check_release_workflow(text: str) -> None:
    """Every rule of the release workflow, each failing with its own message."""
    for line in text.splitlines():
        if "uses:" in line and not line.lstrip().startswith("#"):
            assert PINNED.search(line), f"not pinned to a commit with its release: {line.strip()}"

    workflow = load(text)
    assert workflow["on"] == {"push": {"tags": [f"{TAG_PREFIX}*"]}}, "trigger: release tags only"
    assert workflow.get("permissions") == {}, "top-level permissions must be {}"
    assert set(workflow["jobs"]) == {"build", "publish"}, "jobs: build and publish"
    build, publish = workflow["jobs"]["build"], workflow["jobs"]["publish"]

    for job in (build, publish):
        for step in job["steps"]:
            if "uses" in step:
                assert SHA.fullmatch(step["uses"]), f"not pinned to a commit: {step['uses']}"
    assert build.get("permissions") == {"contents": "read"}, "build: a read-only token"
    assert publish.get("permissions") == {"id-token": "write"}, "publish: id-token: write only"
    assert publish.get("needs") == "build", "publish needs build"
    assert publish.get("environment") == {
        "name": "pypi",
        "url": "https://pypi.org/p/alembic-pgsafe",
    }, "publish: environment pypi with its url"

    [checkout] = steps_using(build, "actions/checkout")
    assert checkout.get("with", {}).get("persist-credentials") is False, "checkout: no kept token"
    [setup_uv] = steps_using(build, "astral-sh/setup-uv")
    assert setup_uv.get("with", {}).get("enable-cache") is False, "setup-uv: no cache in a release"
    commands = [line for step in build["steps"] for line in step.get("run", "").splitlines()]
    for linter in LINTERS:
        assert linter in commands, f"build does not run {linter}"
    check_at, check = version_check(build)
    assert "env" not in check, "the tag comes from the runner's environment, not ${{ }}"
    assert "${{" not in check["run"], "nothing is spliced into the version check's script"
    [build_at] = [i for i, s in enumerate(build["steps"]) if "uv build" in s.get("run", "")]
    assert "--out-dir dist alembic-pgsafe" in build["steps"][build_at]["run"], "uv build: dist/"
    assert check_at < build_at, "the version is checked before anything is built"
    assert any("twine@" in line and " check " in line for line in commands), "no twine check"
    [upload] = steps_using(build, "actions/upload-artifact")
    assert upload["with"]["path"] == "dist/", "upload dist/"

    # The publish job runs none of the package's code: it downloads and uploads, no more.
    assert all("run" not in step for step in publish["steps"]), "publish runs no command"
    [download] = steps_using(publish, "actions/download-artifact")
    assert download["with"] == {"name": upload["with"]["name"], "path": "dist/"}, "download"
    [pypi] = steps_using(publish, "pypa/gh-action-pypi-publish")
    assert len(publish["steps"]) == 2, "publish: download, then pypa/gh-action-pypi-publish"
    assert pypi["with"] == {"packages-dir": "dist/"}, "trusted publishing: no password, no url"
    assert "# repository-url: " in text, "the commented line for a team's own index"


def check_dependabot(text: str) -> None:
    updates = yaml.safe_load(text)["updates"]
    [actions] = [u for u in updates if u["package-ecosystem"] == "github-actions"]
    assert actions["directory"] == "/", "dependabot: the repository's .github/workflows"
    assert actions["schedule"]["interval"] == "weekly", "dependabot: weekly"
    assert actions["cooldown"]["default-days"] >= 7, "dependabot: a week's cooldown"


def zizmor(github: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("zizmor"), "--offline", "--no-progress", "--color", "never", str(github)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_zizmor_finds_nothing_in_the_workflow_and_dependabot() -> None:
    result = zizmor(GITHUB)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report." in result.stdout


def test_the_release_workflow_follows_its_rules() -> None:
    check_release_workflow(WORKFLOW.read_text(encoding="utf-8"))
    check_dependabot(DEPENDABOT.read_text(encoding="utf-8"))


def remove_version_check(text: str) -> str:
    return re.sub(r"      - name: the tag's version.*?(?=      - name: lint)", "", text, flags=re.S)


BROKEN: list[tuple[str, Callable[[str], str], str]] = [
    (
        "a tag instead of a SHA",
        lambda text: re.sub(r"(actions/checkout)@[0-9a-f]{40}", r"\1@v4", text),
        "not pinned to a commit",
    ),
    (
        "a SHA without its release",
        lambda text: re.sub(r"(pypi-publish@[0-9a-f]{40})  # .*", r"\1", text),
        "not pinned to a commit",
    ),
    ("a token for every job", lambda text: text.replace("permissions: {}", ""), "top-level"),
    (
        "an OIDC token for the build",
        lambda text: text.replace("contents: read", "contents: read\n      id-token: write"),
        "build: a read-only token",
    ),
    (
        "a manual trigger",
        lambda text: text.replace("on:\n", "on:\n  workflow_dispatch:\n"),
        "trigger",
    ),
    (
        "no environment",
        lambda text: text.replace("      name: pypi\n", "      name: release\n"),
        "environment pypi",
    ),
    ("no version check", remove_version_check, "no step checking the tag"),
    (
        "a stored token",
        lambda text: text.replace(
            "packages-dir: dist/", "packages-dir: dist/\n          password: x"
        ),
        "trusted publishing",
    ),
    (
        "no linters",
        lambda text: text.replace(LINTERS[2], "true"),
        "does not run",
    ),
]


@pytest.mark.parametrize(
    ("change", "expected"),
    [(change, expected) for _, change, expected in BROKEN],
    ids=[name for name, _, _ in BROKEN],
)
def test_the_rules_fail_on_a_broken_workflow(change: Callable[[str], str], expected: str) -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    broken = change(text)
    assert broken != text, "the change did not apply: update it with the workflow"

    with pytest.raises(AssertionError, match=expected):
        check_release_workflow(broken)


@pytest.mark.parametrize(
    ("file", "old", "new", "audit"),
    [
        (
            "workflows/release-alembic-pgsafe.yml",
            r"pypa/gh-action-pypi-publish@[0-9a-f]{40}",
            "pypa/gh-action-pypi-publish@release/v1",
            "unpinned-uses",
        ),
        ("dependabot.yml", r"\n +cooldown:\n +default-days: 7", "", "dependabot-cooldown"),
    ],
    ids=["action-on-a-branch", "dependabot-without-cooldown"],
)
def test_zizmor_fails_on_a_broken_copy(
    tmp_path: Path, file: str, old: str, new: str, audit: str
) -> None:
    github = tmp_path / ".github"
    shutil.copytree(GITHUB, github)
    text = (github / file).read_text(encoding="utf-8")
    broken, count = re.subn(old, new, text)
    assert count == 1, "the change did not apply: update it with the file"
    (github / file).write_text(broken, encoding="utf-8")

    result = zizmor(github)

    assert result.returncode != 0
    assert f"[{audit}]" in result.stdout, result.stdout


def run_version_check(root: Path, ref: str) -> subprocess.CompletedProcess[str]:
    """The workflow's version check, run as the runner runs it (bash -e) in ``root``."""
    _, step = version_check(load(WORKFLOW.read_text(encoding="utf-8"))["jobs"]["build"])
    path = os.pathsep.join([str(Path(tool("uv")).parent), os.environ.get("PATH", "")])
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-e", "-c", step["run"]],
        cwd=root,
        env={
            **os.environ,
            "PATH": path,
            "GITHUB_REF": ref,
            "GITHUB_REF_NAME": ref.rpartition("/")[2],
        },
        capture_output=True,
        text=True,
        check=False,
    )


CHANGELOG = "# Changelog\n\n## 1.2.30\n\n## 1a2b3\n\n- 1.2.3 is mentioned, not a heading\n"


@pytest.mark.parametrize(
    ("tag", "changelog", "message"),
    [
        ("refs/tags/alembic-pgsafe-v1.2.3", "## 1.2.3\n", "releasing alembic-pgsafe 1.2.3"),
        (
            "refs/tags/alembic-pgsafe-v1.2.3",
            "## 1.2.3 (2026-01-31)\n",
            "releasing alembic-pgsafe 1.2.3",
        ),
        (
            "refs/tags/alembic-pgsafe-v1.2.4",
            "## 1.2.3\n",
            "::error::tag alembic-pgsafe-v1.2.4 says 1.2.4 "
            "but alembic-pgsafe/pyproject.toml says 1.2.3",
        ),
        (
            "refs/tags/alembic-pgsafe-v1.2.3",
            "",
            "::error::alembic-pgsafe/CHANGELOG.md has no '## 1.2.3' heading",
        ),
        (
            "refs/heads/alembic-pgsafe-v1.2.3",
            "## 1.2.3\n",
            "::error::refs/heads/alembic-pgsafe-v1.2.3 is not a release tag "
            "(refs/tags/alembic-pgsafe-v<version>)",
        ),
    ],
    ids=["agree", "heading-with-a-date", "tag-differs", "no-changelog-entry", "a-branch"],
)
def test_the_version_check_stops_a_tag_that_disagrees(
    tmp_path: Path, tag: str, changelog: str, message: str
) -> None:
    package = tmp_path / "alembic-pgsafe"
    package.mkdir()
    (package / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "1.2.3"\n')
    (package / "CHANGELOG.md").write_text(CHANGELOG + changelog)

    result = run_version_check(tmp_path, tag)

    assert result.stdout.splitlines() == [message], result.stderr  # one line, either way
    assert result.returncode == (1 if message.startswith("::error::") else 0)


def test_the_package_as_it_stands_passes_its_release_check() -> None:
    """Tagging this commit alembic-pgsafe-v<its version> would pass the check."""
    with (PACKAGE / "pyproject.toml").open("rb") as file:
        version = tomllib.load(file)["project"]["version"]

    result = run_version_check(TEMPLATE, f"refs/tags/{TAG_PREFIX}{version}")

    assert result.returncode == 0, result.stdout + result.stderr
