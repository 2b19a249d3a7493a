"""The migration toolkit renders install: the wheel the template ships is the package's source.

Renders get ``alembic-pgsafe`` from ``wheels/`` in the render (a path source in its
``pyproject.toml``, recorded with its hash in the shipped ``uv.lock``), so a fresh machine, an
image build and CI need no index that has it. That wheel must be what ``alembic-pgsafe/`` builds
today: a change to the package without ``make package lock`` fails here, not in a render.
"""

import hashlib
import subprocess
import tomllib
import zipfile
from pathlib import Path

from tests.conftest import TEMPLATE

PACKAGE = TEMPLATE / "alembic-pgsafe"
RENDER = TEMPLATE / "{{cookiecutter.project_slug}}"


def package_version() -> str:
    with (PACKAGE / "pyproject.toml").open("rb") as file:
        return str(tomllib.load(file)["project"]["version"])


def contents(wheel: Path) -> dict[str, bytes]:
    """What a wheel installs and declares, without what the build backend's version writes
    (the WHEEL file's generator, RECORD's hashes of it), so a newer hatchling is no change."""
    with zipfile.ZipFile(wheel) as archive:
        return {
            name: archive.read(name)
            for name in archive.namelist()
            if not name.endswith(("dist-info/WHEEL", "dist-info/RECORD"))
        }


def test_the_shipped_wheel_is_a_build_of_the_package_source(tmp_path: Path) -> None:
    built = subprocess.run(
        ["uv", "build", "-q", "--wheel", "-o", str(tmp_path), str(PACKAGE)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    [fresh] = tmp_path.glob("*.whl")

    shipped = sorted(path.name for path in (RENDER / "wheels").iterdir())

    assert shipped == [f"alembic_pgsafe-{package_version()}-py3-none-any.whl"]
    stale = "the shipped wheel is not the package's source: run 'make package lock'"
    assert contents(RENDER / "wheels" / fresh.name) == contents(fresh), stale


def test_renders_pin_the_version_the_template_ships() -> None:
    version = package_version()
    pyproject = (RENDER / "pyproject.toml").read_text(encoding="utf-8")
    lock = (RENDER / "uv.lock").read_text(encoding="utf-8")

    assert f'"alembic-pgsafe=={version}",' in pyproject
    assert f'path = "wheels/alembic_pgsafe-{version}-py3-none-any.whl"' in pyproject
    assert f'name = "alembic-pgsafe"\nversion = "{version}"\n' in lock
    wheel = RENDER / "wheels" / f"alembic_pgsafe-{version}-py3-none-any.whl"
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert f'hash = "sha256:{digest}"' in lock, "uv.lock has another wheel's hash: make lock"
    changelog = (PACKAGE / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"\n## {version}\n" in changelog
