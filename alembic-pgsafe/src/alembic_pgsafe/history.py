"""A linear migration history for a team: two heads found and said in one line, and the
branch's revisions put back on top of the base branch's head in one command.

    python -m <package>.migration_toolkit heads [--base BRANCH]   # one head (on BRANCH's)?
    alembic-pgsafe relink [--base BRANCH]  # make relink in a template's render

Two engineers branch from main and each add a revision on the same parent; once both are
merged, the chain has two heads and ``alembic upgrade head`` cannot choose. ``make relink``,
run on the branch that merged second (after ``git merge main`` or ``git rebase main``), finds
the revisions this branch added from git (the revision files not on the base branch) and
re-parents the first of them onto the other head: its ``down_revision`` and its docstring's
``Revises:`` line are rewritten and, where a file name would no longer sort after its parent's,
the file is renamed (``git mv``) with a later timestamp. Nothing else in the files changes; the
revision ids stay, so a database that applied the other head's revisions goes on from there.

A database that applied this branch's revision in its old place (on top of the common parent)
cannot follow it to the new one: ``make relink`` says so and changes nothing until it has been
downgraded below the branch's revisions (``make downgrade to=<parent>``, on the old chain);
``make migrate`` then applies the other head's revisions and this branch's, in order.
"""

import argparse
import asyncio
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alembic.config import Config
from alembic.script import Script, ScriptDirectory

from alembic_pgsafe.settings import PROJECT_ROOT, command_name

__all__ = [
    "BranchError",
    "base_branch",
    "branch_revisions",
    "heads_message",
    "main",
    "new_revision_files",
]


class BranchError(RuntimeError):
    """git could not tell which revisions the branch added: the message says what to do."""


def script_directory(alembic_ini: Path = PROJECT_ROOT / "alembic.ini") -> ScriptDirectory:
    return ScriptDirectory.from_config(Config(alembic_ini))


def _file(revision: Script, root: Path) -> str:
    path = Path(str(revision.path))
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name


def heads_message(script: ScriptDirectory, root: Path = PROJECT_ROOT) -> str | None:
    """One line when the chain has more than one head: the heads, their files, the command."""
    heads = sorted(script.get_heads())
    if len(heads) < 2:
        return None
    named = ", ".join(f"{head} ({_file(script.get_revision(head), root)})" for head in heads)
    return (
        f"{len(heads)} heads in the migration history: {named}. Two branches each added a"
        f" revision on the same parent: run '{command_name('relink')}' on the branch that merged"
        " last to put its revisions on top of the other head (or 'alembic merge heads';"
        " MIGRATIONS.md, 'Two heads')."
    )


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)


def base_branch(root: Path = PROJECT_ROOT, base: str | None = None) -> str:
    """``base`` if given, else the remote's default branch (origin/HEAD), else main or master."""
    if base:
        return base
    remote_head = _git(root, "symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD")
    if remote_head.returncode == 0 and remote_head.stdout.strip():
        return remote_head.stdout.strip()
    for candidate in ("main", "master", "origin/main", "origin/master"):
        if _git(root, "rev-parse", "--verify", "--quiet", candidate + "^{commit}").returncode == 0:
            return candidate
    msg = "no base branch found (no origin/HEAD, main or master): name it with BASE=<branch>"
    raise BranchError(msg)


def new_revision_files(versions: Path, base: str, root: Path = PROJECT_ROOT) -> set[Path]:
    """Revision files under ``versions`` that the base branch does not have: added in the
    branch's commits since it forked from ``base``, staged, changed or not yet added."""
    top = _git(root, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        msg = f"{root} is not in a git repository: the branch's revisions are found from git"
        raise BranchError(msg)
    fork = _git(root, "merge-base", "HEAD", base)
    if fork.returncode != 0:
        msg = (
            f"git cannot find where this branch forked from {base!r}: fetch it ('git fetch"
            " origin') or name the base branch with BASE=<branch>"
        )
        raise BranchError(msg)
    folder = str(versions)
    added = _git(root, "diff", "--name-only", "--diff-filter=A", fork.stdout.strip(), "--", folder)
    untracked = _git(root, "ls-files", "--others", "--exclude-standard", "--", folder)
    toplevel = Path(top.stdout.strip())
    names = added.stdout.splitlines() + [
        str((root / name).resolve().relative_to(toplevel)) for name in untracked.stdout.split()
    ]
    return {
        (toplevel / name).resolve()
        for name in names
        if name.endswith(".py") and (toplevel / name).is_file()
    }


def branch_revisions(
    script: ScriptDirectory, base: str | None = None, root: Path = PROJECT_ROOT
) -> list[Script]:
    """The revisions this branch added (not on ``base``), oldest first."""
    versions = Path(script.versions)
    added = new_revision_files(versions, base_branch(root, base), root)
    return [
        revision
        for revision in reversed(list(script.walk_revisions()))
        if Path(str(revision.path)).resolve() in added
    ]


def _revision_of(script: ScriptDirectory, revision_id: str) -> Script:
    found = script.get_revision(revision_id)
    if found is None:  # pragma: no cover - ids come from the script directory itself
        msg = f"revision {revision_id} not found"
        raise BranchError(msg)
    return found


def base_heads(script: ScriptDirectory, base: str, root: Path) -> list[str]:
    """The heads of the base branch's own chain, read from its revision files in git."""
    versions = Path(script.versions).resolve()
    top = Path(_git(root, "rev-parse", "--show-toplevel").stdout.strip())
    folder = versions.relative_to(top).as_posix()
    listed = _git(root, "ls-tree", "-r", "--name-only", base, "--", folder)
    if listed.returncode != 0:
        msg = f"git cannot list {folder} on {base!r}: fetch it or name another with BASE=<branch>"
        raise BranchError(msg)
    revisions: dict[str, tuple[str, ...]] = {}
    for name in listed.stdout.split():
        if not name.endswith(".py"):
            continue
        source = _git(root, "show", f"{base}:{name}").stdout
        if (found := _ids(source)) is not None:
            revisions[found[0]] = found[1]
    parents = {parent for down in revisions.values() for parent in down}
    return sorted(set(revisions) - parents)


_REVISION = re.compile(r"^revision\b[^=\n]*=\s*['\"]([^'\"]+)['\"]", re.MULTILINE)
_DOWN = re.compile(r"^down_revision\b[^=\n]*=\s*(\([^)]*\)|[^\n]+)", re.MULTILINE)


def _ids(source: str) -> tuple[str, tuple[str, ...]] | None:
    """A revision file's id and its parents' ids, read from its text (no import)."""
    revision = _REVISION.search(source)
    down = _DOWN.search(source)
    if revision is None or down is None:
        return None
    return revision.group(1), tuple(re.findall(r"['\"]([^'\"]+)['\"]", down.group(1)))


def on_top_message(script: ScriptDirectory, base: str, root: Path) -> str | None:
    """One line when the chain is not one head on top of every head of ``base``'s chain."""
    if several := heads_message(script, root):
        return several
    (head,) = script.get_heads() or (None,)
    if head is None:
        return None
    ancestors = {revision.revision for revision in script.walk_revisions("base", head)}
    behind = [rev for rev in base_heads(script, base, root) if rev not in ancestors]
    if not behind:
        return None
    return (
        f"this branch's revisions are not on top of {base}'s head {', '.join(behind)}:"
        f" merge it ('git merge {base}'), then run '{command_name('relink')}' (BASE={base}) and"
        " commit."
    )


@dataclass
class Relinked:
    moved: Script
    old_parent: str
    new_parent: str
    renamed: list[tuple[str, str]]


def _database_versions(root: Path) -> tuple[str, list[str]] | None:
    """Where the database of ``make migrate`` is and its alembic_version rows; None when no
    database is named or reachable (said on stderr)."""
    from sqlalchemy import inspect, pool, text

    from alembic_pgsafe.connect import create_engine, failure_line, where
    from alembic_pgsafe.settings import SettingsError, get_settings

    try:
        settings = get_settings()
    except SettingsError:
        return None
    url = settings.alembic_database_url

    async def versions() -> list[str]:
        engine = create_engine(
            url, timeout=settings.database_connect_timeout, poolclass=pool.NullPool
        )
        try:
            async with engine.connect() as connection:
                has_table = await connection.run_sync(
                    lambda sync: inspect(sync).has_table("alembic_version")
                )
                if not has_table:
                    return []
                rows = await connection.execute(text("SELECT version_num FROM alembic_version"))
                return [row[0] for row in rows]
        finally:
            await engine.dispose()

    try:
        return where(url), asyncio.run(versions())
    except Exception as exc:
        print(
            f"relink: could not check the database: {failure_line(exc, where(url))}",
            file=sys.stderr,
        )
        return None


_STAMP = re.compile(r"^(\d{4})_(\d{2})_(\d{2})_(\d{6})_")
_NUMBER = re.compile(r"^(\d+)_")


def _sorted_name(name: str, previous: str, now: datetime) -> str | None:
    """A name for ``name`` that sorts after ``previous``, in the same style, or None."""
    if name > previous:
        return name
    if stamp := _STAMP.match(name):
        after = _STAMP.match(previous)
        earliest = (
            datetime.strptime("".join(after.groups()), "%Y%m%d%H%M%S").replace(tzinfo=UTC)
            + timedelta(seconds=1)
            if after
            else now
        )
        when = max(now, earliest)
        return when.strftime("%Y_%m_%d_%H%M%S_") + name[stamp.end() :]
    if (number := _NUMBER.match(name)) and (before := _NUMBER.match(previous)):
        width = len(number.group(1))
        return f"{int(before.group(1)) + 1:0{width}d}_" + name[number.end() :]
    return None


def _rewrite_parent(path: Path, old: str, new: str) -> None:
    source = path.read_text(encoding="utf-8")
    source, downs = re.subn(
        r"^(down_revision\b[^=\n]*=\s*)['\"]" + re.escape(old) + r"['\"]",
        lambda match: f'{match.group(1)}"{new}"',
        source,
        count=1,
        flags=re.MULTILINE,
    )
    source, revises = re.subn(
        r"^Revises: " + re.escape(old) + r"$",
        f"Revises: {new}",
        source,
        count=1,
        flags=re.MULTILINE,
    )
    if downs != 1:
        msg = f"{path.name}: no line 'down_revision = \"{old}\"' to rewrite; change it by hand"
        raise BranchError(msg)
    if revises != 1:
        print(f"relink: {path.name} has no 'Revises: {old}' line in its docstring; left as is")
    path.write_text(source, encoding="utf-8")


def _move(root: Path, source: Path, target: Path) -> None:
    tracked = _git(root, "ls-files", "--error-unmatch", str(source)).returncode == 0
    if tracked:
        moved = _git(root, "mv", str(source), str(target))
        if moved.returncode != 0:
            msg = f"git mv {source.name} {target.name} failed: {moved.stderr.strip()}"
            raise BranchError(msg)
    else:
        source.rename(target)


def relink(
    script: ScriptDirectory,
    base: str | None = None,
    root: Path = PROJECT_ROOT,
    *,
    check_database: bool = True,
) -> Relinked | None:
    """Put this branch's revisions on top of the other head. None when there is nothing to do;
    BranchError (its message is for the user) when it cannot be done safely."""
    base = base_branch(root, base)
    heads = set(script.get_heads())
    ours = branch_revisions(script, base, root)
    ids = {revision.revision for revision in ours}
    if len(heads) < 2:
        return None
    if not ours:
        msg = (
            f"the heads {', '.join(sorted(heads))} are not this branch's (no revision file is new"
            f" since it forked from {base}): relink on the branch that added one"
        )
        raise BranchError(msg)
    if merges := [rev.revision for rev in ours if isinstance(rev.down_revision, tuple)]:
        msg = f"this branch has merge revisions ({', '.join(merges)}): delete them, then relink"
        raise BranchError(msg)
    roots = [rev for rev in ours if rev.down_revision not in ids]
    others = sorted(heads - ids)
    if len(roots) != 1 or len(others) != 1 or len(heads & ids) != 1:
        msg = (
            f"cannot relink: expected this branch's revisions ({', '.join(sorted(ids))}) to form"
            f" one chain beside one other head; heads are {', '.join(sorted(heads))}"
        )
        raise BranchError(msg)
    (first,), (other,) = roots, others
    old_parent = str(first.down_revision)
    if check_database and (found := _database_versions(root)) is not None:
        where_, applied = found
        if on_branch := [version for version in applied if version in ids]:
            shown = ", ".join(
                f"{rev} ({Path(str(_revision_of(script, rev).path)).name})" for rev in on_branch
            )
            msg = (
                f"the database at {where_} has applied {shown} on top of {old_parent}, where it"
                f" will no longer be: first '{command_name('downgrade', to=old_parent)}', then"
                f" '{command_name('relink')}' again, then '{command_name('migrate')}'. Nothing"
                " was changed."
            )
            raise BranchError(msg)
    _rewrite_parent(Path(str(first.path)), old_parent, other)
    renamed: list[tuple[str, str]] = []
    previous = Path(str(_revision_of(script, other).path)).name
    now = datetime.now(UTC)
    for revision in ours:
        path = Path(str(revision.path))
        name = _sorted_name(path.name, previous, now)
        if name is None:
            print(
                f"relink: {path.name} sorts before {previous}; rename it so the files sort in order"
            )
            name = path.name
        elif name != path.name:
            _move(root, path, path.with_name(name))
            renamed.append((path.name, name))
        previous = name
    return Relinked(first, old_parent, other, renamed)


def _arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="alembic-pgsafe")
    parser.add_argument("command", choices=("heads", "relink"))
    parser.add_argument("--base", help="the base branch (default: origin/HEAD, main or master)")
    parser.add_argument("--config", type=Path, default=PROJECT_ROOT / "alembic.ini")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    options = _arguments(argv)
    alembic_ini = options.config.resolve()
    root = alembic_ini.parent
    script = script_directory(alembic_ini)
    command = options.command
    try:
        if command == "heads":
            problem = (
                on_top_message(script, base_branch(root, options.base), root)
                if options.base
                else heads_message(script, root)
            )
            if problem:
                print(f"heads: {problem}", file=sys.stderr)
                return 1
            print(f"heads: one head, {', '.join(script.get_heads()) or 'none'}")
            return 0
        done = relink(script, options.base, root)
    except BranchError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return 1
    if done is None:
        print(f"relink: one head ({', '.join(script.get_heads())}): nothing to relink")
        return 0
    moved = Path(str(done.moved.path)).name
    print(f"relink: {moved} now revises {done.new_parent} (was {done.old_parent})")
    for old, new in done.renamed:
        print(f"relink: renamed {old} -> {new}, so the files sort in chain order")
    migrate = command_name("migrate")
    print(f"relink: one head again; run '{migrate}', then commit the changed files")
    return 0
