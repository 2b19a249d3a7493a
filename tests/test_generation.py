"""Render the template for each supported answer combination and run what it renders.

The tables below are the spec of what the template supports: each supported combination is
rendered, linted, migrated up, down and up again, and its own test suite run on real
PostgreSQL; each bad answer must stop the render with the hook's message and leave nothing.
"""

import ast
import json
import re
import shutil
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import TEMPLATE, Project, bake, load_hook

post_gen = load_hook("post_gen_project")


@dataclass(frozen=True)
class Combination:
    id: str
    answers: dict[str, str] = field(default_factory=dict)
    # Where the rendered suite gets PostgreSQL: $TEST_DATABASE_URL's server, or its own
    # embedded one (the path a user without a server takes).
    tests_on: str = "server"
    # The rendered suite run: `make test-all` (with the service's slow tests, which do not
    # depend on the answers beyond lessons/empty and server/embedded, so two combinations cover
    # them: lessons on the server, empty on the embedded one), or the fast `make test`.
    suite: str = "test"


SUPPORTED = [
    Combination("defaults", suite="test-all"),
    Combination(
        "unicode-name-health-only-no-ci",
        {
            "project_name": "Café Orders",
            "include_example_api": "no",
            "ci": "none",
            "docker": "no",
            "metrics": "no",
        },
        tests_on="embedded",
    ),
    Combination(
        "short-slug-migrated-on-embedded",
        {
            "project_name": "Ledger",
            "project_slug": "svc",
            "apply_migrations_after_render": "embedded",
        },
    ),
    Combination(
        "long-slug-migrated-on-database-url",
        {
            "project_name": "Inventory Reconciliation EU West 2",
            "project_slug": "inventory_reconciliation_eu_west",
            "apply_migrations_after_render": "database_url",
            "include_example_api": "yes",
            "ci": "github",
            "tracing": "otlp",
            "description": 'Reconciles "stock" \\ counts',
        },
    ),
    Combination(
        "empty-start-traced-no-metrics",
        {"project_name": "Orders", "starting_schema": "empty", "tracing": "otlp", "metrics": "no"},
    ),
    Combination(
        "empty-start-no-ci-migrated-on-embedded",
        {
            "project_name": "Blank Slate",
            "starting_schema": "empty",
            "apply_migrations_after_render": "embedded",
            "ci": "none",
        },
        tests_on="embedded",
        suite="test-all",
    ),
]
DEFAULTS = {
    "starting_schema": "lessons",
    "include_example_api": "yes",
    "ci": "github",
    "docker": "yes",
    "python_version": "3.11",
    "metrics": "yes",
    "tracing": "none",
}

UNSUPPORTED = [
    ({"project_slug": "my-service"}, "project_slug 'my-service': is not a Python package name"),
    ({"project_name": "123 Orders"}, "project_slug '123_orders': is not a Python package name"),
    ({"project_name": ""}, "project_name: is empty"),
    ({"project_slug": "class"}, "project_slug 'class': is a Python keyword"),
    *[
        ({"project_slug": slug}, f"project_slug {slug!r}: would shadow {what}")
        for slug, what in [
            ("alembic", "the Alembic dependency"),
            ("sqlalchemy", "the SQLAlchemy dependency"),
            ("fastapi", "the FastAPI dependency"),
            ("asyncpg", "the asyncpg dependency"),
            ("pydantic", "the pydantic dependency"),
            ("migrations", "the project's migrations/ folder"),
            ("tests", "the project's tests/ folder"),
            ("test", "the standard library's test package"),
        ]
    ],
    ({"project_name": 'Say "hi"'}, "project_name 'Say \"hi\"': use at most 80 characters"),
    ({"author_email": "not-an-email"}, "author_email 'not-an-email': is not an email address"),
    (
        {"starting_schema": "empty", "include_example_api": "yes"},
        "include_example_api 'yes': the example API serves the lessons' users and posts tables",
    ),
    (
        {"docker": "no", "kubernetes": "yes"},
        "kubernetes 'yes': the manifests run the service's image, which docker=no leaves out",
    ),
]


@dataclass
class Rendered(Project):
    combination: Combination


# ${{ ... }} is a GitHub Actions expression, written through {% raw %} on purpose.
UNRENDERED = re.compile(r"(?<!\$){{|{%|{#|cookiecutter\.")
NOT_SOURCE = {".git", ".venv", ".localdb", ".mypy_cache", ".ruff_cache", ".pytest_cache"}


@pytest.fixture(scope="module", params=SUPPORTED, ids=lambda combination: combination.id)
def rendered(
    request: pytest.FixtureRequest,
    cookies_session: Any,
    shared_env: dict[str, str],
    create_database: Callable[[], str],
) -> Rendered:
    combination: Combination = request.param
    env = dict(shared_env)
    if combination.answers.get("apply_migrations_after_render") == "database_url":
        env["DATABASE_URL"] = create_database()
    return Rendered(bake(cookies_session, env, combination.answers).path, env, combination)


def source_files(root: Path) -> list[Path]:
    return [
        path
        for path in root.rglob("*")
        if path.is_file()
        and not NOT_SOURCE.intersection(path.relative_to(root).parts)
        and path.suffix != ".whl"  # the migration toolkit's wheel: tests/test_package.py
    ]


def test_nothing_is_left_unrendered(rendered: Rendered) -> None:
    leftovers = [
        f"{path.relative_to(rendered.path)}: {match.group(0)!r}"
        for path in source_files(rendered.path)
        for match in UNRENDERED.finditer(path.read_text(encoding="utf-8"))
    ]

    assert leftovers == []


def answer(rendered: Rendered, option: str) -> str:
    if option == "include_example_api" and answer(rendered, "starting_schema") == "empty":
        return rendered.combination.answers.get(option, "no")  # its default follows the schema
    if option == "kubernetes":  # its default follows docker
        return rendered.combination.answers.get(option, answer(rendered, "docker"))
    return rendered.combination.answers.get(option, DEFAULTS[option])


def test_post_gen_hook_prepared_the_project(rendered: Rendered) -> None:
    slug = rendered.path.name
    for (option, value), patterns in post_gen.PATHS_ONLY_FOR.items():
        for pattern in patterns:
            kept = (rendered.path / pattern.format(slug=slug)).exists()
            assert kept == (answer(rendered, option) == value), pattern
    chain = post_gen.linear_chain(post_gen.read_revisions(rendered.path / post_gen.VERSIONS_DIR))
    schema = post_gen.PATHS_ONLY_FOR[("starting_schema", answer(rendered, "starting_schema"))]
    shipped = [path for path in schema if path.startswith(f"{post_gen.VERSIONS_DIR.as_posix()}/")]
    assert len(chain) == len(shipped) >= 1
    assert not any(rev.revision.startswith("c0ffee") for rev in chain)
    log = rendered.run("git", "log", "--oneline")
    assert len(log.stdout.splitlines()) == 1
    assert rendered.run("git", "status", "--porcelain").stdout == ""


def test_ci_workflow_runs_lint_tests_check_and_offline_sql(rendered: Rendered) -> None:
    workflow = rendered.path / ".github" / "workflows" / "ci.yml"
    if rendered.combination.answers.get("ci") == "none":
        assert not workflow.exists()
        return

    steps = yaml.safe_load(workflow.read_text(encoding="utf-8"))["jobs"]["test"]["steps"]

    commands = [step["run"] for step in steps if "run" in step]
    assert commands == [
        "uv sync --locked",
        'make heads BASE="origin/$BASE_REF"',
        "make lint",
        "make test-all",
        "make sql",
        "make migrate check",
        "make downgrade to=base migrate",
        'make --no-print-directory review BASE="origin/$BASE_REF" >> "$GITHUB_STEP_SUMMARY"',
        "make template-check",
    ]
    # The chosen Python and the newest; what reports on the change runs on the chosen one only.
    chosen = answer(rendered, "python_version")
    job = yaml.safe_load(workflow.read_text(encoding="utf-8"))["jobs"]["test"]
    assert job["strategy"]["matrix"]["python-version"] == sorted({chosen, "3.13"})
    once = f"matrix.python-version == '{chosen}'"
    # On pull requests: the base branch named through the environment, never spliced into the
    # script (zizmor's template-injection), and its history fetched to find the change's revisions.
    for command in (commands[1], commands[7]):
        [step] = [step for step in steps if step.get("run") == command]
        assert step["if"] == f"github.event_name == 'pull_request' && {once}"
        assert step["env"] == {"BASE_REF": "${{ github.base_ref }}"}
    assert steps[0]["with"]["fetch-depth"] == 0
    [behind] = [step for step in steps if step.get("run") == "make template-check"]
    assert behind["continue-on-error"] is True  # reported, never fails the build
    assert behind["if"] == f"hashFiles('.cruft.json') != '' && {once}"
    for command in commands[1:]:
        target = command.split()[2 if "--no-print-directory" in command else 1]
        assert re.search(rf"^{target}:", (rendered.path / "Makefile").read_text(), re.MULTILINE)


def test_dependencies_are_locked_and_kept_current(rendered: Rendered) -> None:
    checked = rendered.run("uv", "lock", "--check")

    assert checked.returncode == 0, checked.stderr
    assert rendered.run("git", "ls-files", "uv.lock").stdout.strip() == "uv.lock"  # first commit
    dependabot = rendered.path / ".github" / "dependabot.yml"
    if rendered.combination.answers.get("ci") == "none":
        assert not dependabot.exists()
        return
    updates = yaml.safe_load(dependabot.read_text(encoding="utf-8"))["updates"]
    assert {update["package-ecosystem"] for update in updates} == {"uv", "github-actions"}


def test_pre_commit_hooks_pass_on_the_render(rendered: Rendered) -> None:
    # Synced first: the shared environment may hold another combination's project, and uv's
    # report of re-installing it would land in the middle of pre-commit's lines.
    assert rendered.run("uv", "sync", "--locked", "--quiet").returncode == 0

    result = rendered.run("uv", "run", "pre-commit", "run", "--all-files")

    assert result.returncode == 0, result.stdout + result.stderr
    hooks = re.findall(r"^(.+?)\.{3,}(\w+)$", result.stdout, re.MULTILINE)
    assert hooks == [
        ("ruff check", "Passed"),
        ("ruff format", "Passed"),
        ("mypy (strict)", "Passed"),
        ("migrations lint (squawk and the toolkit's rules)", "Passed"),
    ], result.stdout


def test_rendered_project_passes_its_linters(rendered: Rendered) -> None:
    output = rendered.make("lint")

    assert "All checks passed!" in output
    assert "Success: no issues found" in output
    assert "Found 0 issues in" in output  # squawk, on every revision's SQL
    zizmor_ran = "No findings to report." in output  # on the workflow and dependabot.yml
    assert zizmor_ran == (rendered.combination.answers.get("ci") != "none")


def test_rendered_test_suite_passes_on_real_postgresql(
    rendered: Rendered, postgres_url: str
) -> None:
    on_server = rendered.combination.tests_on == "server"

    suite = rendered.combination.suite
    output = rendered.make(suite, TEST_DATABASE_URL=postgres_url if on_server else None)

    summary = re.findall(r"^=+ (.+) in [\d.]+s", output, re.MULTILINE)[-1]
    assert re.search(r"\d+ passed", summary), summary
    assert not re.search(r"failed|error|skipped", summary), summary


def head_of(rendered: Rendered) -> str:
    heads = rendered.run("uv", "run", "alembic", "heads")
    return heads.stdout.split()[0]


def test_migrations_go_up_down_and_up_again(
    rendered: Rendered, create_database: Callable[[], str]
) -> None:
    mode = rendered.combination.answers.get("apply_migrations_after_render", "no")
    head = head_of(rendered)
    if mode == "embedded":
        database: dict[str, str | None] = {"DATABASE_URL": None}  # the hook's .localdb
    elif mode == "database_url":
        database = {"DATABASE_URL": rendered.env["DATABASE_URL"]}
    else:
        database = {"DATABASE_URL": create_database()}
    if mode != "no":  # the hook already migrated it
        assert f"{head} (head)" in rendered.make("current", **database)

    rendered.make("migrate", **database)
    assert f"{head} (head)" in rendered.make("current", **database)
    rendered.make("downgrade", "to=base", **database)
    assert head not in rendered.make("current", **database)
    rendered.make("migrate", **database)
    assert f"{head} (head)" in rendered.make("current", **database)


def test_make_revision_brings_a_database_behind_head_up_first(
    rendered: Rendered, create_database: Callable[[], str]
) -> None:
    database = create_database()  # at base: behind head even with a single revision
    if len(post_gen.read_revisions(rendered.path / post_gen.VERSIONS_DIR)) > 1:
        first = rendered.run("uv", "run", "alembic", "upgrade", "+1", DATABASE_URL=database)
        assert first.returncode == 0, first.stderr

    output = rendered.make("revision", "m=nothing changed", DATABASE_URL=database)

    assert f"-> {head_of(rendered)}" in output  # upgraded to head first
    assert "No change between the models and the database: no revision written." in output
    assert rendered.run("git", "status", "--porcelain", "migrations").stdout == ""


def first_model(rendered: Rendered) -> str:
    """The model of MIGRATIONS.md's "Your first model", as a reader would copy it."""
    playbook = (rendered.path / "MIGRATIONS.md").read_text(encoding="utf-8")
    section = playbook.split("\n## Your first model\n", 1)[1].split("\n## ", 1)[0]
    [code] = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    return textwrap.dedent(code)


def test_first_model_gets_its_revision_migrated_checked_and_linted(
    rendered: Rendered, create_database: Callable[[], str], postgres_url: str, tmp_path: Path
) -> None:
    # A copy: the other tests of this combination see the render as it was.
    copy = tmp_path / rendered.path.name
    shutil.copytree(rendered.path, copy, ignore=shutil.ignore_patterns(*NOT_SOURCE - {".git"}))
    project = Rendered(copy, rendered.env, rendered.combination)
    models = copy / "src" / copy.name / "models"
    (models / "order.py").write_text(first_model(rendered), encoding="utf-8")
    init = (models / "__init__.py").read_text(encoding="utf-8")
    base = f"from {copy.name}.db.base import Base\n"
    init = init.replace(base, f"{base}from {copy.name}.models.order import Order\n")
    init = init.replace('__all__ = ["Base"', '__all__ = ["Base", "Order"')
    (models / "__init__.py").write_text(init, encoding="utf-8")
    versions = copy / post_gen.VERSIONS_DIR
    before = set(versions.glob("*.py"))
    database = {"DATABASE_URL": create_database()}

    project.make("revision", "m=create orders", **database)

    [written] = set(versions.glob("*.py")) - before
    assert written.name.endswith("_create_orders.py")
    revision = written.read_text(encoding="utf-8")
    assert 'op.create_table(\n        "orders",' in revision
    assert 'op.create_index(op.f("ix_orders_created_at"), "orders", ["created_at"]' in revision
    project.make("migrate", **database)
    assert f"{head_of(project)} (head)" in project.make("current", **database)
    assert "No new upgrade operations detected." in project.make("check", **database)
    linted = project.make("lint")
    assert f"Found 0 issues in {len(before) + 1} files" in linted
    on_server = rendered.combination.tests_on == "server"
    tested = project.make("test", TEST_DATABASE_URL=postgres_url if on_server else None)
    assert re.search(r"^=+ \d+ passed, \d+ deselected in", tested, re.MULTILINE), tested[-2000:]


def strategies_of(bench_script: Path) -> list[str]:
    """The keys of the STRATEGIES dict in the toolkit's benchmark (alembic_pgsafe/bench.py):
    what --strategies runs by default."""
    for node in ast.parse(bench_script.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.AnnAssign | ast.Assign) and isinstance(node.value, ast.Dict):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "STRATEGIES" for t in targets):
                return [ast.literal_eval(key) for key in node.value.keys if key is not None]
    raise AssertionError(f"no STRATEGIES dict in {bench_script}")


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, which the format puts first."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR", f"{path}: no IHDR chunk first"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_benchmark_runs_at_20000_rows_with_the_same_data_for_every_strategy(
    cookies_session: Any,
    shared_env: dict[str, str],
    create_database: Callable[[], str],
    tmp_path: Path,
) -> None:
    """make bench --plot too: matplotlib comes for the run only (uv run --with), so the
    render's pyproject.toml and uv.lock stay byte for byte as they were."""
    project = bake(cookies_session, shared_env, {"project_name": "Bench Service"})
    locked = {name: (project.path / name).read_bytes() for name in ("pyproject.toml", "uv.lock")}
    arguments = f"ARGS=--rows 20000 --orm-sample 500 --output {tmp_path} --plot"

    output = project.make("bench", arguments, DATABASE_URL=create_database())

    assert "# Migration benchmark: 20,000 rows" in output
    results = json.loads((tmp_path / "bench.json").read_text(encoding="utf-8"))["results"]
    expected = strategies_of(TEMPLATE / "alembic-pgsafe" / "src" / "alembic_pgsafe" / "bench.py")
    assert [row["strategy"] for row in results] == expected
    assert all(row["data_ok"] for row in results), results
    assert f"plot written to {tmp_path / 'bench.png'}" in output
    width, height = png_size(tmp_path / "bench.png")
    assert 1000 <= width <= 4000, (width, height)
    assert 500 <= height <= 3000, (width, height)
    assert (tmp_path / "bench.png").stat().st_size > 50_000  # drawn, not an empty canvas
    changed = [name for name, was in locked.items() if (project.path / name).read_bytes() != was]
    assert not changed, f"make bench --plot changed {changed}"


@pytest.mark.parametrize(("answers", "message"), UNSUPPORTED, ids=lambda value: str(value))
def test_bad_answer_is_refused_and_leaves_nothing(
    cookies: Any,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    answers: dict[str, str],
    message: str,
) -> None:
    result = cookies.bake(extra_context=answers)

    assert result.exception is not None
    assert f"ERROR: {message}" in capfd.readouterr().err
    output = Path(str(tmp_path)) / "cookies"
    assert [path for path in output.rglob("*") if not path.is_dir() or any(path.iterdir())] == []
