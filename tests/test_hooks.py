"""Unit tests of the hooks' functions, without rendering the template."""

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import TEMPLATE, load_hook

pre_gen = load_hook("pre_gen_project")
post_gen = load_hook("post_gen_project")

VALID = {
    "project_name": "My Service",
    "project_slug": "my_service",
    "author_name": "Your Name",
    "author_email": "you@example.com",
    "starting_schema": "lessons",
    "include_example_api": "yes",
    "apply_migrations_after_render": "no",
    "ci": "github",
    "docker": "yes",
    "python_version": "3.11",
    "metrics": "yes",
    "tracing": "none",
    "kubernetes": "yes",
}
TEMPLATE_VERSIONS = TEMPLATE / "{{cookiecutter.project_slug}}" / "migrations" / "versions"


# --- pre_gen_project -------------------------------------------------------------------------


def test_valid_answers_pass() -> None:
    assert pre_gen.validate(VALID) == []


@pytest.mark.parametrize(
    ("slug", "reason"),
    [
        ("", "has no letter or digit"),
        ("_", "has no letter or digit"),
        ("my-service", "is not a Python package name"),
        ("MyService", "is not a Python package name"),
        ("1service", "is not a Python package name"),
        ("café", "is not a Python package name"),
        ("class", "is a Python keyword"),
        ("match", "is a Python keyword"),
        ("alembic", "would shadow the Alembic dependency"),
        ("sqlalchemy", "would shadow the SQLAlchemy dependency"),
        ("fastapi", "would shadow the FastAPI dependency"),
        ("asyncpg", "would shadow the asyncpg dependency"),
        ("pydantic", "would shadow the pydantic dependency"),
        ("migrations", "would shadow the project's migrations/ folder"),
        ("tests", "would shadow the project's tests/ folder"),
        ("test", "would shadow the standard library's test package"),
        ("json", "would shadow the standard library module 'json'"),
        ("s" * 33, "is longer than 32 characters"),
    ],
)
def test_bad_slugs_are_refused_with_the_reason(slug: str, reason: str) -> None:
    assert reason in (pre_gen.slug_problem(slug) or "")
    assert pre_gen.validate(VALID | {"project_slug": slug}) == [
        f"project_slug {slug!r}: {pre_gen.slug_problem(slug)}"
    ]


@pytest.mark.parametrize("slug", ["my_service", "orders2", "a", "s" * 32])
def test_good_slugs_pass(slug: str) -> None:
    assert pre_gen.slug_problem(slug) is None


@pytest.mark.parametrize("email", ["", "you", "you@", "@example.com", "you@example", "a b@c.de"])
def test_bad_emails_are_refused(email: str) -> None:
    assert pre_gen.validate(VALID | {"author_email": email}) == [
        f"author_email {email!r}: is not an email address (name@example.com)"
    ]


@pytest.mark.parametrize("name", ['Say "hi"', "back\\slash", "tab\there", "n" * 81])
def test_names_that_cannot_go_into_source_are_refused(name: str) -> None:
    assert pre_gen.validate(VALID | {"project_name": name}) == [
        f"project_name {name!r}: use at most 80 characters,"
        " without double quotes, backslashes or control characters"
    ]


@pytest.mark.parametrize("name", ["Café Orders", "Billing (EU) v2 ✓", "n" * 80])
def test_names_with_any_other_characters_pass(name: str) -> None:
    assert pre_gen.validate(VALID | {"project_name": name, "project_slug": "svc"}) == []


def test_blank_project_name_and_unknown_choice_are_refused() -> None:
    problems = pre_gen.validate(VALID | {"project_name": "  ", "ci": "jenkins"})

    assert problems == ["project_name: is empty", "ci 'jenkins': must be one of github, none"]


def test_the_example_api_without_the_lessons_is_refused_in_one_line() -> None:
    problems = pre_gen.validate(VALID | {"starting_schema": "empty", "include_example_api": "yes"})

    assert problems == [
        "include_example_api 'yes': the example API serves the lessons' users and posts tables,"
        " which starting_schema=empty leaves out; answer no, or choose lessons"
    ]
    assert pre_gen.validate(VALID | {"starting_schema": "empty", "include_example_api": "no"}) == []
    assert pre_gen.validate(VALID | {"include_example_api": "no"}) == []


def test_main_prints_one_line_per_problem_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert pre_gen.main(VALID | {"project_slug": "class", "author_email": "x"}) == 1

    assert capsys.readouterr().err.splitlines() == [
        "ERROR: project_slug 'class': is a Python keyword",
        "ERROR: author_email 'x': is not an email address (name@example.com)",
    ]


# --- post_gen_project: the option manifest ----------------------------------------------------


def make_tree(root: Path, slug: str) -> None:
    for pattern in (p for patterns in post_gen.PATHS_ONLY_FOR.values() for p in patterns):
        path = root / pattern.format(slug=slug)
        if path.suffix:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("", encoding="utf-8")
        else:
            (path / "workflows").mkdir(parents=True)


def test_unselected_option_paths_are_removed_and_selected_kept(tmp_path: Path) -> None:
    make_tree(tmp_path, "shop")
    answers = VALID | {"project_slug": "shop", "include_example_api": "no", "ci": "github"}

    removed = post_gen.remove_unselected_paths(tmp_path, answers)

    unselected = [
        *post_gen.PATHS_ONLY_FOR[("starting_schema", "empty")],
        *post_gen.PATHS_ONLY_FOR[("include_example_api", "yes")],
        *post_gen.PATHS_ONLY_FOR[("tracing", "otlp")],
    ]
    assert removed == [tmp_path / p.format(slug="shop") for p in unselected]
    assert not any(path.exists() for path in removed)
    assert (tmp_path / ".github" / "workflows").is_dir()
    assert (tmp_path / "migrations" / "versions" / "0001_create_users.py").is_file()


def test_an_empty_start_keeps_only_the_baseline_revision(tmp_path: Path) -> None:
    make_tree(tmp_path, "shop")
    answers = VALID | {"project_slug": "shop", "starting_schema": "empty"}
    answers |= {"include_example_api": "no"}

    post_gen.remove_unselected_paths(tmp_path, answers)

    versions = tmp_path / "migrations" / "versions"
    assert [path.name for path in versions.iterdir()] == ["0001_baseline.py"]
    assert not (tmp_path / "src" / "shop" / "models" / "user.py").exists()
    assert not (tmp_path / "tests" / "api" / "test_users.py").exists()


def test_manifest_paths_exist_in_the_template() -> None:
    project = TEMPLATE / "{{cookiecutter.project_slug}}"
    for patterns in post_gen.PATHS_ONLY_FOR.values():
        for pattern in patterns:
            assert (project / pattern.format(slug="{{cookiecutter.project_slug}}")).exists()


def test_a_manifest_path_missing_from_the_render_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(post_gen.HookError, match="the option manifest names"):
        post_gen.remove_unselected_paths(tmp_path, VALID | {"ci": "none"})


# --- post_gen_project: revision ids and the chain ---------------------------------------------


def rendered_versions(into: Path, starting_schema: str = "lessons") -> Path:
    """The template's revisions as the post-gen hook finds them: with the slug rendered."""
    into.mkdir()
    kept = post_gen.PATHS_ONLY_FOR[("starting_schema", starting_schema)]
    for source in TEMPLATE_VERSIONS.glob("*.py"):
        if f"migrations/versions/{source.name}" not in kept:
            continue
        text = source.read_text(encoding="utf-8").replace("{{ cookiecutter.project_slug }}", "shop")
        (into / source.name).write_text(text, encoding="utf-8")
    return into


@pytest.fixture(params=["lessons", "empty"])
def versions(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    return rendered_versions(tmp_path / "versions", request.param)


def test_fresh_ids_keep_the_chain_and_date_it(versions: Path) -> None:
    before = post_gen.linear_chain(post_gen.read_revisions(versions))
    now = datetime(2030, 5, 17, 9, 30, tzinfo=UTC)

    mapping = post_gen.refresh_revision_ids(versions, now)

    after = post_gen.linear_chain(post_gen.read_revisions(versions))
    assert [mapping[rev.revision] for rev in before] == [rev.revision for rev in after]
    assert [rev.path.name for rev in before] == [rev.path.name for rev in after]
    assert len(set(mapping.values())) == len(before)
    for rev in after:
        text = rev.path.read_text(encoding="utf-8")
        assert f"Revision ID: {rev.revision}\n" in text
        assert "Create Date: 2030-05-17 09:30:00+00:00\n" in text
        assert not any(old in text for old in mapping)


def test_two_renders_share_no_revision_id(tmp_path: Path) -> None:
    first = rendered_versions(tmp_path / "a")
    second = rendered_versions(tmp_path / "b")
    now = datetime.now(UTC)

    ids_a = set(post_gen.refresh_revision_ids(first, now).values())
    ids_b = set(post_gen.refresh_revision_ids(second, now).values())

    assert ids_a.isdisjoint(ids_b)


def revision_file(directory: Path, name: str, revision: str, down: str | None) -> None:
    body = f'revision: str = "{revision}"\ndown_revision: str | None = {down!r}\n'
    (directory / f"{name}.py").write_text(body, encoding="utf-8")


def test_a_branch_is_reported(tmp_path: Path) -> None:
    revision_file(tmp_path, "0001_a", "a", None)
    revision_file(tmp_path, "0002_b", "b", "a")
    revision_file(tmp_path, "0003_c", "c", "a")

    with pytest.raises(post_gen.HookError, match=r"branch after a: 0002_b\.py, 0003_c\.py"):
        post_gen.linear_chain(post_gen.read_revisions(tmp_path))


def test_an_unlinked_revision_is_reported(tmp_path: Path) -> None:
    revision_file(tmp_path, "0001_a", "a", None)
    revision_file(tmp_path, "0002_b", "b", "missing")

    with pytest.raises(post_gen.HookError, match=r"not linked to the chain from base: 0002_b\.py"):
        post_gen.linear_chain(post_gen.read_revisions(tmp_path))


def test_a_file_without_revision_is_reported(tmp_path: Path) -> None:
    (tmp_path / "0001_a.py").write_text("x = 1\n", encoding="utf-8")

    with pytest.raises(post_gen.HookError, match=r"0001_a\.py: no revision assignment"):
        post_gen.read_revisions(tmp_path)


# --- post_gen_project: git and migrations -------------------------------------------------------


def test_git_is_initialised_with_one_commit(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("hello\n", encoding="utf-8")

    said = post_gen.init_git(tmp_path, "Ada Lovelace", "ada@example.com")

    assert said == "git: repository initialised with a first commit"
    log = subprocess.run(
        ["git", "log", "--format=%an <%ae>|%s"], cwd=tmp_path, capture_output=True, text=True
    )
    assert log.stdout.splitlines() == [
        "Ada Lovelace <ada@example.com>|Initial commit from the service template"
    ]


def test_git_is_not_nested_in_an_existing_repository(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("hello\n", encoding="utf-8")
    post_gen.init_git(tmp_path, "Ada", "ada@example.com")
    inner = tmp_path / "inner"
    inner.mkdir()

    assert post_gen.init_git(inner, "Ada", "ada@example.com") == (
        "git: already inside a repository, skipped"
    )
    assert not (inner / ".git").exists()


def test_no_migration_when_not_asked(tmp_path: Path) -> None:
    said = post_gen.apply_migrations(tmp_path, "no", {"PATH": ""})

    assert said == "migrations: not applied (run 'make migrate')"


def test_migrating_without_uv_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(post_gen.HookError, match=r"uv is not on PATH: install it"):
        post_gen.apply_migrations(tmp_path, "embedded", {"PATH": str(tmp_path)})


def test_database_url_mode_without_database_url_says_what_to_set(tmp_path: Path) -> None:
    uv = shutil.which("uv")
    assert uv is not None, "the template's test environment installs uv"

    with pytest.raises(post_gen.HookError, match="DATABASE_URL is not set"):
        post_gen.apply_migrations(tmp_path, "database_url", {"PATH": str(Path(uv).parent)})


# --- post_gen_project: renders by cruft -------------------------------------------------------


def project_tree(root: Path, slug: str) -> Path:
    """The option manifest's files and the lessons' revisions, as a render leaves them."""
    make_tree(root, slug)
    for revision in rendered_versions(root.parent / "revisions").iterdir():
        shutil.copy(revision, root / post_gen.VERSIONS_DIR / revision.name)
    return root


def test_a_render_by_cruft_touches_nothing_outside_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project_tree(tmp_path / "shop", "shop")
    # What would be touched otherwise: $DATABASE_URL migrated, git initialised.
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/never")
    answers = VALID | {"project_slug": "shop", "apply_migrations_after_render": "database_url"}

    status = post_gen.main(answers | {"_commit": "0" * 40, "_template": "/t"}, root)

    assert status == 0
    assert not (root / ".git").exists()
    out = capsys.readouterr()
    assert "cruft: no git repository made and nothing migrated" in out.out
    assert "make first-commit" in out.out
    assert "migrations: applied" not in out.out + out.err
    assert len(post_gen.read_revisions(root / post_gen.VERSIONS_DIR)) == 13  # still prepared


def test_a_render_by_cookiecutter_still_makes_its_first_commit(tmp_path: Path) -> None:
    root = project_tree(tmp_path / "shop", "shop")

    assert post_gen.main(VALID | {"project_slug": "shop"}, root) == 0

    assert (root / ".git").is_dir()
    assert not post_gen.rendered_by_cruft(VALID | {"_template": "gh:x/y", "_output_dir": "."})
