"""Finish the new service: drop unselected files, initialise its migrations, git, database.

Runs inside the rendered project, in the environment cookiecutter was installed in: standard
library only. Anything more (installing dependencies, migrating) happens only when the answers
ask for it and ``uv`` is on PATH.

Under cruft the hook changes nothing outside the render. cruft runs it for ``cruft create`` and
again for both renders of every ``cruft update`` (and ``cruft diff``), in throwaway folders it
then compares; a ``git init`` there, an embedded server or an ``alembic upgrade`` of
``$DATABASE_URL`` would be side effects of an update. cruft marks its renders with ``_commit``
in the context (plain cookiecutter does not). After ``cruft create``, ``make first-commit``
makes the first commit, ``.cruft.json`` included (cruft writes that file after this hook has
run). A throwaway render says nothing: its revision ids are not the service's, and the advice
is for a create. ``make template-update`` marks its renders in the environment; a bare ``cruft
update`` or ``cruft diff`` is recognised by where cruft renders, a fresh temporary folder.
"""

from __future__ import annotations

import ast
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

# Every option's footprint: the paths that exist only for some answer, removed for the others.
# "{slug}" stands for the project's package name.
PATHS_ONLY_FOR = {
    ("starting_schema", "lessons"): [
        "migrations/versions/0001_create_users.py",
        "migrations/versions/0002_add_users_slug.py",
        "migrations/versions/0003_backfill_users_slug.py",
        "migrations/versions/0004_users_slug_unique_not_null.py",
        "migrations/versions/0005_create_posts.py",
        "migrations/versions/0006_add_users_phone.py",
        "migrations/versions/0007_expand_users_phone_number.py",
        "migrations/versions/0008_contract_users_phone.py",
        "migrations/versions/0009_add_posts_reviewer.py",
        "migrations/versions/0010_trim_post_titles.py",
        "migrations/versions/0011_add_posts_status.py",
        "migrations/versions/0012_schedule_posts_created_on.py",
        "migrations/versions/0013_posts_created_on_not_null.py",
        "src/{slug}/models/user.py",
        "src/{slug}/models/post.py",
        "tests/migrations/test_lessons.py",
        "tests/migrations/test_backfill_slug.py",
    ],
    ("starting_schema", "empty"): ["migrations/versions/0001_baseline.py"],
    ("include_example_api", "yes"): [
        "src/{slug}/api/users.py",
        "src/{slug}/api/posts.py",
        "src/{slug}/api/schemas.py",
        "tests/api/test_users.py",
        "tests/api/test_posts.py",
        "tests/api/test_unavailable.py",
    ],
    ("ci", "github"): [".github"],
    ("docker", "yes"): [
        "Dockerfile",
        ".dockerignore",
        "compose.yaml",
        "docker",
        "scripts/compose_secrets.py",
    ],
    ("kubernetes", "yes"): ["deploy"],
    ("metrics", "yes"): [
        "src/{slug}/observability/metrics.py",
        "tests/api/test_metrics.py",
    ],
    ("tracing", "otlp"): [
        "src/{slug}/observability/tracing.py",
        "tests/api/test_tracing.py",
    ],
}

VERSIONS_DIR = Path("migrations", "versions")
# Set by the service's scripts/template.py for the cruft it runs (same name there).
THROWAWAY_RENDER_ENV = "TEMPLATE_THROWAWAY_RENDER"
# What tempfile.TemporaryDirectory() names a folder, the one cruft renders an update into.
_TEMPORARY_NAME = re.compile(r"tmp[a-z0-9_]{8}")
_CREATE_DATE = re.compile(r"^Create Date:.*$", re.MULTILINE)


class HookError(Exception):
    """A problem the user must fix; its message says what and how."""


@dataclass(frozen=True)
class Revision:
    path: Path
    revision: str
    down_revision: str | None


def remove_unselected_paths(root: Path, answers: dict[str, str]) -> list[Path]:
    """Delete the paths of every option value that was not chosen; return what was removed."""
    removed = []
    for (option, value), patterns in PATHS_ONLY_FOR.items():
        if answers[option] == value:
            continue
        for pattern in patterns:
            path = root / pattern.format(slug=answers["project_slug"])
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            else:
                raise HookError(f"the option manifest names {path}, which the template lacks")
            removed.append(path)
    return removed


def _string_or_none(module: ast.Module, name: str, path: Path) -> str | None:
    for node in module.body:
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        if isinstance(target, ast.Name) and target.id == name:
            value = ast.literal_eval(node.value) if node.value is not None else None
            if value is None or isinstance(value, str):
                return value
            raise HookError(f"{path.name}: {name} must be a string or None, not {value!r}")
    raise HookError(f"{path.name}: no {name} assignment")


def read_revisions(versions: Path) -> list[Revision]:
    revisions = []
    for path in sorted(versions.glob("*.py")):
        module = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        revision = _string_or_none(module, "revision", path)
        if revision is None:
            raise HookError(f"{path.name}: revision is None")
        revisions.append(Revision(path, revision, _string_or_none(module, "down_revision", path)))
    return revisions


def linear_chain(revisions: list[Revision]) -> list[Revision]:
    """The revisions from base to head, or a HookError if they do not form one straight line."""
    by_parent: dict[str | None, list[Revision]] = {}
    for rev in revisions:
        by_parent.setdefault(rev.down_revision, []).append(rev)
    chain: list[Revision] = []
    parent: str | None = None
    while children := by_parent.get(parent):
        if len(children) > 1:
            names = ", ".join(child.path.name for child in children)
            raise HookError(f"the migrations branch after {parent or 'base'}: {names}")
        chain.append(children[0])
        parent = children[0].revision
    if len(chain) != len(revisions):
        stray = sorted(rev.path.name for rev in revisions if rev not in chain)
        raise HookError(f"migrations not linked to the chain from base: {', '.join(stray)}")
    return chain


def refresh_revision_ids(versions: Path, now: datetime) -> dict[str, str]:
    """Give every shipped revision a fresh id and today's date, keeping the chain's links.

    Two services rendered from this template then never share revision ids (a database moved
    or shared between them would otherwise look already migrated). Returns old id -> new id.
    """
    revisions = read_revisions(versions)
    new_ids = {rev.revision: secrets.token_hex(6) for rev in revisions}
    old_id = re.compile("|".join(re.escape(old) for old in new_ids))
    for rev in revisions:
        text = rev.path.read_text(encoding="utf-8")
        text = _CREATE_DATE.sub(f"Create Date: {now.isoformat(sep=' ')}", text)
        text = old_id.sub(lambda match: new_ids[match.group(0)], text)
        rev.path.write_text(text, encoding="utf-8")
    return new_ids


def init_git(root: Path, author_name: str, author_email: str) -> str:
    """Make the project a git repository with a first commit; say what was done."""
    if shutil.which("git") is None:
        return "git: not installed, skipped"
    inside = subprocess.run(
        ["git", "rev-parse", "--is-inside-work-tree"], cwd=root, capture_output=True, text=True
    )
    if inside.returncode == 0:
        return "git: already inside a repository, skipped"
    identity = ["-c", f"user.name={author_name}", "-c", f"user.email={author_email}"]
    for command in (
        ["git", "-c", "init.defaultBranch=main", "init", "-q"],
        ["git", "add", "-A"],
        ["git", *identity, "commit", "-q", "-m", "Initial commit from the service template"],
    ):
        subprocess.run(command, cwd=root, check=True, capture_output=True)
    return "git: repository initialised with a first commit"


def apply_migrations(root: Path, mode: str, environ: dict[str, str]) -> str:
    """Upgrade the chosen database to head when asked; say what was done or why not."""
    if mode == "no":
        return "migrations: not applied (run 'make migrate')"
    uv = shutil.which("uv", path=environ.get("PATH"))
    if uv is None:
        raise HookError("uv is not on PATH: install it (pip install uv), then run 'make migrate'")
    env = dict(environ)
    if mode == "embedded":
        env.pop("DATABASE_URL", None)
        env.pop("MIGRATIONS_DATABASE_URL", None)
    elif not env.get("DATABASE_URL"):
        raise HookError("DATABASE_URL is not set: set it, then run 'make migrate'")
    with_db = [uv, "run", "python", "scripts/localdb.py", "--"]
    for command in ([uv, "sync"], [*with_db, "alembic", "upgrade", "head"]):
        result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise HookError(f"'{' '.join(command[:4])} ...' failed:\n{result.stderr.strip()}")
    current = subprocess.run(
        [*with_db, "alembic", "current"], cwd=root, env=env, capture_output=True, text=True
    )
    reached = current.stdout.strip() or current.stderr.strip()
    where = "the embedded PostgreSQL in .localdb/" if mode == "embedded" else "$DATABASE_URL"
    return f"migrations: applied on {where}, now at {reached}"


def rendered_by_cruft(answers: dict[str, str]) -> bool:
    """cruft (create, update, diff) adds ``_commit`` to the context; plain cookiecutter does not."""
    return "_commit" in answers


def throwaway_render(root: Path, environ: dict[str, str]) -> bool:
    """Is this one of the renders an update or a diff compares, deleted right after?

    ``make template-update`` says so in the environment. A bare ``cruft update`` or ``cruft
    diff`` renders into a fresh ``tempfile.TemporaryDirectory()`` of its own, holding nothing
    else; ``cruft create`` renders where it is told (the current folder by default).
    """
    if environ.get(THROWAWAY_RENDER_ENV) == "1":
        return True
    folder = root.resolve().parent
    return (
        folder.parent == Path(tempfile.gettempdir()).resolve()
        and _TEMPORARY_NAME.fullmatch(folder.name) is not None
        and [path.name for path in folder.iterdir()] == [root.name]
    )


def main(answers: dict[str, str], root: Path) -> int:
    try:
        remove_unselected_paths(root, answers)
        now = datetime.now(timezone.utc).replace(microsecond=0)  # noqa: UP017 (hooks run on 3.10)
        refresh_revision_ids(root / VERSIONS_DIR, now)
        chain = linear_chain(read_revisions(root / VERSIONS_DIR))
    except HookError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    if rendered_by_cruft(answers) and throwaway_render(root, dict(os.environ)):
        return 0
    count = f"{len(chain)} revision{'s' if len(chain) > 1 else ''}"
    print(f"migrations: {count} in one line, head {chain[-1].revision}")
    if rendered_by_cruft(answers):
        print(
            "cruft: no git repository made and nothing migrated (this may be an update's render);"
            " after 'cruft create': cd into the project, 'make first-commit', then 'make migrate'"
        )
        return 0
    try:
        print(apply_migrations(root, answers["apply_migrations_after_render"], dict(os.environ)))
    except HookError as exc:
        # The project is rendered: keep it, and say what is left to do.
        print(f"WARNING: migrations NOT applied: {exc}", file=sys.stderr)
    # Last, so that the first commit holds what the steps above wrote (uv.lock).
    print(init_git(root, answers["author_name"], answers["author_email"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(r"""{{ cookiecutter | jsonify }}"""), Path.cwd()))
