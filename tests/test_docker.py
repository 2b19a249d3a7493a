"""The rendered service's image, built and run on a real Docker engine; its compose file validated.

No container registry is reachable here, so the images the Dockerfile pulls are built locally
and passed as its build arguments: Debian bookworm from Debian's mirror (debootstrap, with this
machine's CA bundle so uv reaches the package index) for ``PYTHON_IMAGE``, and the uv binary of
this test environment for ``UV_IMAGE``. Both are cached in the engine between runs. When no engine
is running, the tests start ``dockerd`` themselves and stop it by pid. A machine without Docker
skips them with the reason; under ``CI=true`` that is a failure.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import yaml

from tests.conftest import Project, bake, free_port

SBIN = "/usr/local/sbin:/usr/sbin:/sbin"
PYTHON_BASE = "template-tests/python:bookworm"
UV_BASE = "template-tests/uv:local"
DATA_ROOT = Path("/var/lib/template-tests-docker")  # kept: the base images survive a run


def tool(name: str) -> str | None:
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:{SBIN}")


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (.ci/run installs it)")
    pytest.skip(f"{reason}: Docker is optional on a developer machine")


@dataclass
class Docker:
    client: str
    env: dict[str, str]

    def run(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        options: dict[str, Any] = {"capture_output": True, "text": True, "timeout": 900}
        return subprocess.run([self.client, *args], env=self.env, **(options | kwargs))

    def ok(self, *args: str, **kwargs: Any) -> str:
        result = self.run(*args, **kwargs)
        assert result.returncode == 0, f"docker {' '.join(args)}:\n{result.stdout}{result.stderr}"
        return result.stdout


@pytest.fixture(scope="session")
def docker(postgres_url: str) -> Iterator[Docker]:
    # Debian's docker.io client builds with its built-in BuildKit; a newer client on PATH may
    # want the buildx plugin for that, which no package here provides.
    client = "/usr/bin/docker" if Path("/usr/bin/docker").is_file() else tool("docker")
    if client is None:
        unavailable("no docker command")
    if not urlsplit(postgres_url).hostname:
        unavailable("containers reach PostgreSQL over TCP: set TEST_DATABASE_URL to a server")
    env = dict(os.environ) | {"DOCKER_BUILDKIT": "1"}
    if subprocess.run([client, "info"], capture_output=True, env=env).returncode == 0:
        yield Docker(client, env)  # an engine that is not ours to stop
        return
    dockerd = tool("dockerd")
    if dockerd is None or os.geteuid() != 0:
        unavailable("no Docker engine running, and dockerd cannot be started here")
    run = Path(tempfile.mkdtemp(prefix="template-dockerd-"))
    env["DOCKER_HOST"] = f"unix://{run / 'docker.sock'}"
    log = run / "dockerd.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                str(dockerd),
                f"--host={env['DOCKER_HOST']}",
                f"--data-root={DATA_ROOT}",
                f"--exec-root={run / 'exec'}",
                f"--pidfile={run / 'dockerd.pid'}",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([client, "info"], capture_output=True, env=env).returncode != 0:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dockerd did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        yield Docker(client, env)
    finally:
        process.terminate()
        process.wait(timeout=60)
        shutil.rmtree(run, ignore_errors=True)


def has_image(docker: Docker, name: str) -> bool:
    return docker.run("image", "inspect", name).returncode == 0


@pytest.fixture(scope="session")
def base_images(docker: Docker) -> dict[str, str]:
    """Local stand-ins for the official python and uv images, built once per engine."""
    if not has_image(docker, PYTHON_BASE):
        debootstrap = tool("debootstrap")
        if debootstrap is None:
            unavailable("no debootstrap to build a base image without a registry")
        with tempfile.TemporaryDirectory(prefix="template-rootfs-") as rootfs:
            include = "--include=python3,python3-venv,ca-certificates,passwd"
            subprocess.run(
                [str(debootstrap), "--variant=minbase", include, "bookworm", rootfs],
                check=True,
                capture_output=True,
                timeout=900,
            )
            # This machine's CA bundle: inside, the package index is reached through it.
            bundle = Path(rootfs, "etc/ssl/certs/ca-certificates.crt")
            shutil.copy("/etc/ssl/certs/ca-certificates.crt", bundle)
            for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
                shutil.rmtree(Path(rootfs, cache), ignore_errors=True)
            tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
            changes = [
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
                "ENV UV_NATIVE_TLS=1",
            ]
            flags = [f"--change={change}" for change in changes]
            docker.ok("import", *flags, "-", PYTHON_BASE, stdin=tar.stdout)
            assert tar.wait() == 0
    if not has_image(docker, UV_BASE):
        uv = tool("uv")
        assert uv is not None, "the template's test environment installs uv"
        with tempfile.TemporaryDirectory(prefix="template-uv-") as context:
            for name in ("uv", "uvx"):
                shutil.copy(Path(uv).with_name(name), Path(context, name))
            Path(context, "Dockerfile").write_text("FROM scratch\nCOPY uv uvx /\n")
            docker.ok("build", "-t", UV_BASE, context)
    return {"PYTHON_IMAGE": PYTHON_BASE, "UV_IMAGE": UV_BASE}


@dataclass
class Image:
    name: str
    project: Project
    cold_seconds: float
    cached_seconds: float
    size_bytes: int


def build(docker: Docker, project: Path, name: str, arguments: dict[str, str]) -> float:
    flags = [f"--build-arg={key}={value}" for key, value in arguments.items()]
    started = time.monotonic()
    docker.ok("build", "--network=host", *flags, "-t", name, str(project))
    return time.monotonic() - started


@pytest.fixture(scope="module")
def image(
    docker: Docker, base_images: dict[str, str], cookies_session: Any, shared_env: dict[str, str]
) -> Iterator[Image]:
    project = bake(cookies_session, shared_env, {"project_name": "Boxed Service"})
    # What must never reach an image: a local secret and a local database.
    (project.path / ".env").write_text("DATABASE_URL=postgresql://app:secret@db/app\n")
    (project.path / ".localdb").mkdir()
    (project.path / ".localdb" / "PG_VERSION").write_text("18\n")
    name = f"template-tests/boxed-service:{os.getpid()}"
    docker.run("builder", "prune", "--all", "--force")  # a cold build: no layer cache
    cold = build(docker, project.path, name, base_images)
    health = project.path / "src" / "boxed_service" / "api" / "health.py"
    health.write_text(health.read_text() + "\n# a source change: the dependencies' layer stays\n")
    cached = build(docker, project.path, name, base_images)
    size = int(docker.ok("image", "inspect", "--format={{.Size}}", name))
    print(
        f"image {name}: {size / 1e6:.0f} MB; build {cold:.1f} s cold (no layer cache),"
        f" {cached:.1f} s after a source change"
    )
    yield Image(name, project, cold, cached, size)
    docker.run("image", "rm", "--force", name)


# In the URLs the containers get: the test server trusts every local connection, so this password
# is never checked, only looked for in what the image and its runs show.
PASSWORD = "not-a-real-secret-3f9c"


def with_password(url: str) -> str:
    return url.replace("postgres@", f"postgres:{PASSWORD}@", 1)


def test_migrate_applies_the_migrations_once_and_fails_with_alembics_message(
    docker: Docker, image: Image, create_database: Callable[[], str], tmp_path: Path
) -> None:
    database = create_database()
    secret = tmp_path / "database_url"
    secret.write_text(with_password(database) + "\n", encoding="utf-8")
    secret.chmod(0o644)  # the image's user (10001) reads it, as a mounted Docker secret
    from_file = ["-v", f"{secret}:/run/secrets/database_url:ro"]
    from_file += ["-e", "DATABASE_URL_FILE=/run/secrets/database_url"]
    url = ["--network=host", "-e", f"DATABASE_URL={with_password(database)}"]

    first = docker.run("run", "--rm", "--network=host", *from_file, image.name, "migrate")
    again = docker.run("run", "--rm", *url, image.name, "migrate")

    assert first.returncode == 0, first.stderr
    assert "Running upgrade  ->" in first.stderr
    assert again.returncode == 0, again.stderr
    assert "Running upgrade" not in again.stderr
    for run in (first, again):
        assert PASSWORD not in run.stdout + run.stderr
    down = ["--network=host", "-e", f"DATABASE_URL=postgresql://app:{PASSWORD}@127.0.0.1:1/app"]
    refused = docker.run("run", "--rm", *down, image.name, "migrate")
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines() == [
        "FAILED: cannot connect to app@127.0.0.1:1/app: connection refused: is PostgreSQL"
        " running, and listening on that host and port? (SHOW_TRACEBACK=1 for the traceback)"
    ]
    conflicting = create_database()
    with psycopg.connect(conflicting, autocommit=True) as connection:
        connection.execute("CREATE TABLE users (id int)")  # the first lesson's table, taken
    url = ["--network=host", "-e", f"DATABASE_URL={conflicting}"]
    failed = docker.run("run", "--rm", *url, image.name, "migrate")
    assert failed.returncode != 0
    # Alembic's last word on stdout; on stderr the same as a JSON log line (the image's format).
    assert 'relation "users" already exists' in failed.stdout
    logged = [json.loads(line) for line in failed.stderr.splitlines() if line.startswith("{")]
    assert any('relation "users" already exists' in line["message"] for line in logged)
    assert logged[-1]["level"] == "ERROR"


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_api_serves_health_at_head_as_a_non_root_user_and_stops_on_sigterm(
    docker: Docker, image: Image, create_database: Callable[[], str]
) -> None:
    database = create_database()
    env = ["--network=host", "-e", f"DATABASE_URL={database}"]
    docker.ok("run", "--rm", *env, image.name, "migrate")
    port = free_port()
    container = docker.ok("run", "-d", *env, "-e", f"PORT={port}", image.name).strip()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body = get(f"http://127.0.0.1:{port}/health")
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, docker.run("logs", container).stderr
                time.sleep(0.5)
        assert status == 200, body
        assert body["status"] == "ok"
        assert docker.ok("exec", container, "id", "-u").strip() == "10001"
        health = ["inspect", "--format={{.State.Health.Status}}", container]
        while docker.ok(*health).strip() != "healthy":
            assert time.monotonic() < deadline + 60, "the HEALTHCHECK never reported healthy"
            time.sleep(1)
        docker.ok("stop", "--time=20", container)
        # 0: uvicorn got SIGTERM and shut down; a SIGKILL after the 20 s would give 137.
        assert docker.ok("inspect", "--format={{.State.ExitCode}}", container).strip() == "0"
        assert "Shutting down" in docker.run("logs", container).stderr
    finally:
        docker.run("rm", "--force", container)


def test_the_image_holds_no_dev_tools_secrets_history_or_local_database(
    docker: Docker, image: Image
) -> None:
    pytest_import = docker.run("run", "--rm", image.name, "python", "-c", "import pytest")
    found = docker.ok(
        "run",
        "--rm",
        "--user=0",  # to search every folder
        image.name,
        "find",
        "/",
        "-xdev",
        "(",
        "-name",
        ".env",
        "-o",
        "-name",
        ".git",
        "-o",
        "-name",
        ".localdb",
        ")",
        "-print",
    )

    history = docker.ok("history", "--no-trunc", image.name)
    inspected = docker.ok("image", "inspect", image.name)

    assert pytest_import.returncode != 0
    assert "No module named 'pytest'" in pytest_import.stderr
    assert found == ""
    # The project's .env held postgresql://app:secret@db/app: no layer, command or setting has it.
    for shown in (history, inspected):
        assert "app:secret@" not in shown
        assert "DATABASE_URL=" not in shown


def test_the_compose_file_runs_migrate_once_before_the_api(image: Image) -> None:
    compose = tool("docker-compose")
    if compose is None:
        unavailable("no docker-compose to validate compose.yaml")
    result = subprocess.run(
        [str(compose), "-f", "compose.yaml", "--profile", "pooler", "config"],
        cwd=image.project.path,
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "healthcheck" in services["db"]
    assert "healthcheck" in services["api"]
    assert services["pgbouncer"]["environment"]["POOL_MODE"] == "transaction"
    # Password authentication, the migrator migrates, the app role serves; every URL a secret.
    assert "POSTGRES_HOST_AUTH_METHOD" not in services["db"]["environment"]
    assert "scram-sha-256" in services["db"]["environment"]["POSTGRES_INITDB_ARGS"]
    assert services["migrate"]["depends_on"]["db-roles"]["condition"] == (
        "service_completed_successfully"
    )
    assert services["migrate"]["environment"] == {
        "DATABASE_URL_FILE": "/run/secrets/migrator_database_url"
    }
    assert services["api"]["environment"]["DATABASE_URL_FILE"] == ("/run/secrets/app_database_url")
    for service in services.values():
        for name, value in (service.get("environment") or {}).items():
            assert not name.endswith(("_URL", "PASSWORD")), (name, value)
    secrets = subprocess.run(
        [sys.executable, "scripts/compose_secrets.py"],
        cwd=image.project.path,
        capture_output=True,
        text=True,
        check=True,
    )
    written = sorted((image.project.path / ".secrets").iterdir())
    assert {path.name for path in written} == {
        source["source"] for service in services.values() for source in service.get("secrets", [])
    }
    for path in written:
        assert path.read_text() not in secrets.stdout
    app_url = (image.project.path / ".secrets" / "app_database_url").read_text()
    assert app_url.startswith("postgresql://boxed_service_app:")
