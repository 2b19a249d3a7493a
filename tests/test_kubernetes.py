"""The Kubernetes manifests a render ships (kubernetes=yes), checked offline.

What runs, all without a cluster:
- ``kubernetes-validate --strict`` (requirements-dev.txt) against one pinned Kubernetes version,
  on each manifest and on what ``kubectl kustomize`` builds from them (kustomize is built into
  kubectl; no cluster is contacted);
- checkov, pinned, in an environment of its own (``uv tool run``): installed into the template's
  venv it would downgrade pytest and packaging. Open-source checkov reports no severities
  without a Prisma Cloud key, so every failed check counts, save the skips below.
"""

import collections
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import bake

# The oldest Kubernetes minor the manifests claim (kubernetes-validate 1.37 bundles 1.25-1.37).
KUBERNETES_VERSION = "1.32.0"
# Pinned: a new checkov release adds checks, which should arrive as a reviewed bump, not as a
# failure of an unrelated change.
CHECKOV = "checkov==3.3.30"
# Checks that cannot pass in a template, each with the reason. Keep it short.
CHECKOV_SKIPS = {
    # The template cannot know the digest of an image it has not built: a team sets it once, in
    # kustomization.yaml's `images` entry (`digest: sha256:...`), for the Deployment and Jobs.
    "CKV_K8S_43": "Image should use digest",
}
EXPECTED_KINDS = {
    "ServiceAccount",
    "Deployment",
    "Service",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "Job",
}
# What checkov 3.3 has checks for: the kinds above but NetworkPolicy and PodDisruptionBudget
# (a NetworkPolicy counts through CKV2_K8S_6, checked on each Pod template).
CHECKOV_KINDS = {"ServiceAccount", "Deployment", "Service", "Job", "Pod"}
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    found = BIN / name if (BIN / name).exists() else shutil.which(name)
    assert found, f"{name}: not found next to {sys.executable} nor on PATH"
    return str(found)


def run(*command: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def project(cookies_session: Any, shared_env: dict[str, str]) -> Path:
    return bake(cookies_session, shared_env, {"kubernetes": "yes"}).path


@pytest.fixture(scope="module")
def folder(project: Path) -> Path:
    return project / "deploy" / "kubernetes"


@pytest.fixture(scope="module")
def built(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The kustomization built as ``kubectl apply -k`` would apply it, in one file."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl (for its built-in kustomize) is not on PATH: apt-get install kubectl")
    result = run(kubectl, "kustomize", str(folder))
    assert result.returncode == 0, result.stderr
    path = tmp_path_factory.mktemp("kustomize") / "built.yaml"
    path.write_text(result.stdout, encoding="utf-8")
    return path


def manifests(folder: Path) -> list[Path]:
    return sorted(path for path in folder.glob("*.yaml") if path.name != "kustomization.yaml")


def validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    return run(
        tool("kubernetes-validate"),
        "--strict",
        "--kubernetes-version",
        KUBERNETES_VERSION,
        *map(str, paths),
    )


def test_kustomization_lists_every_manifest(folder: Path) -> None:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text(encoding="utf-8"))

    assert sorted(kustomization["resources"]) == [path.name for path in manifests(folder)]
    assert {path.name for path in folder.iterdir()} == {
        "kustomization.yaml",
        "README.md",
        *kustomization["resources"],
    }


def test_each_manifest_is_valid_for_the_pinned_kubernetes(folder: Path) -> None:
    result = validate(*manifests(folder))

    assert result.returncode == 0, result.stdout + result.stderr
    passed = [line for line in result.stdout.splitlines() if " passed for resource " in line]
    assert len(passed) == len(manifests(folder)), result.stdout


def test_what_kustomize_builds_is_valid_and_complete(built: Path) -> None:
    result = validate(built)
    resources = list(yaml.safe_load_all(built.read_text(encoding="utf-8")))

    assert result.returncode == 0, result.stdout + result.stderr
    assert {resource["kind"] for resource in resources} == EXPECTED_KINDS
    assert {resource["metadata"]["namespace"] for resource in resources} == {"my-service"}
    containers = [
        container
        for resource in resources
        if resource["kind"] in {"Deployment", "Job"}
        for container in resource["spec"]["template"]["spec"]["containers"]
    ]
    # kustomization.yaml's `images` entry sets the image of the Deployment and both Jobs.
    assert {container["image"] for container in containers} == {"my_service:0.1.0"}
    # No Secret is shipped, and no URL sits in an environment variable: they come from files.
    assert "Secret" not in {resource["kind"] for resource in resources}
    env = {item["name"]: item["value"] for c in containers for item in c["env"]}
    assert not [name for name, value in env.items() if "://" in value or name.endswith("_URL")]


def test_the_validator_rejects_an_unknown_field(folder: Path, tmp_path: Path) -> None:
    """The check above can fail: a misspelt field is refused under --strict."""
    deployment = yaml.safe_load((folder / "deployment.yaml").read_text(encoding="utf-8"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    broken = tmp_path / "deployment.yaml"
    broken.write_text(yaml.safe_dump(deployment), encoding="utf-8")

    result = validate(broken)

    assert result.returncode != 0
    assert "readinesProbe" in result.stdout + result.stderr


def test_checkov_fails_no_check(folder: Path) -> None:
    """checkov's Kubernetes checks on what the kustomization applies (``--framework kustomize``
    builds it, so the namespace kustomization.yaml sets counts; ``--framework kubernetes`` reads
    the files one by one and would flag every resource as in the default namespace)."""
    result = run(
        tool("uv"),
        "tool",
        "run",
        "--from",
        CHECKOV,
        "checkov",
        "--directory",
        str(folder),
        "--framework",
        "kustomize",
        "--skip-check",
        ",".join(CHECKOV_SKIPS),
        "--skip-download",  # no Prisma Cloud: nothing leaves the machine
        "--output",
        "json",
    )
    report = json.loads(result.stdout)
    passed_by_kind = collections.Counter(
        check["resource"].split(":")[-1].split(".")[0]
        for check in report["results"]["passed_checks"]
    )
    failed = [
        f"{check['check_id']} {check['check_name']}: {check['resource']}"
        for check in report["results"]["failed_checks"]
    ]

    assert failed == [], result.stderr
    assert report["summary"]["parsing_errors"] == 0
    # Not vacuous: every kind checkov has checks for was built and passed some.
    assert set(passed_by_kind) == CHECKOV_KINDS
    assert "CKV2_K8S_6" in {check["check_id"] for check in report["results"]["passed_checks"]}
    assert result.returncode == 0, result.stderr


def test_no_kubernetes_leaves_no_deploy_folder(
    project: Path, cookies_session: Any, shared_env: dict[str, str]
) -> None:
    without = bake(cookies_session, shared_env, {"kubernetes": "no"}).path
    readme = "### Kubernetes\n"

    assert not (without / "deploy").exists()
    assert readme not in (without / "README.md").read_text(encoding="utf-8")
    assert readme in (project / "README.md").read_text(encoding="utf-8")
