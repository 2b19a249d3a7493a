"""Keep this service in step with the template it was rendered from (through cruft).

An update renders the template at the service's recorded commit and at the newest one, and
applies the difference to the service with git's three-way merge. The paths in
``[tool.cruft] skip`` (pyproject.toml) are never touched: ``migrations/versions/`` is the
service's own history, ``uv.lock`` is re-solved by ``uv lock`` afterwards. The update starts
from a clean working tree and leaves everything it changed staged, ``.cruft.json`` included, so
``git diff --staged`` is the whole update. A line that both the template and the service
changed becomes a conflict, reported here with what to do; the update is then left for you to
finish or undo, never half-applied out of sight.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

USAGE = """usage:
    python scripts/template.py first-commit   # after `cruft create`: git init, first commit
    python scripts/template.py check          # is the service behind its template? (exit 1 if so)
    python scripts/template.py update [ARGS]  # apply the template's changes (ARGS go to cruft)"""

ROOT = Path(__file__).resolve().parent.parent
HISTORY = "migrations/versions"
FIRST_COMMIT_MESSAGE = "Initial commit from the service template"
# Tells the template's post-generation hook that its render is an update's, compared and
# deleted: it then prints nothing (same name in the template's hooks/post_gen_project.py).
THROWAWAY_RENDER = {"TEMPLATE_THROWAWAY_RENDER": "1"}


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)


def cruft(*args: str, capture: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the cruft command line; unless captured, its output goes straight to the terminal."""
    return subprocess.run(
        [sys.executable, "-m", "cruft", *args],
        cwd=ROOT,
        env=os.environ | THROWAWAY_RENDER,
        capture_output=capture,
        text=True,
        check=False,
    )


def identity() -> tuple[str, ...]:
    """The author answered at render time, for a machine where git has no user configured."""
    if git("config", "user.email").stdout.strip() or not (ROOT / ".cruft.json").is_file():
        return ()
    answers = json.loads((ROOT / ".cruft.json").read_text(encoding="utf-8"))["context"]
    author = answers["cookiecutter"]
    return (
        "-c",
        f"user.name={author['author_name']}",
        "-c",
        f"user.email={author['author_email']}",
    )


def first_commit() -> int:
    if git("rev-parse", "--is-inside-work-tree").returncode == 0:
        print("first-commit: already inside a git repository; add and commit the service there")
        return 1
    for step in (
        ("-c", "init.defaultBranch=main", "init", "-q"),
        ("add", "-A"),
        (*identity(), "commit", "-q", "-m", FIRST_COMMIT_MESSAGE),
    ):
        result = git(*step)
        if result.returncode != 0:
            print(f"first-commit: git {' '.join(step)} failed:\n{result.stderr}", file=sys.stderr)
            return 1
    listed = "with .cruft.json" if git("ls-files", ".cruft.json").stdout else "no .cruft.json"
    print(f"first-commit: git repository initialised, first commit made ({listed})")
    return 0


def history_files() -> dict[str, bytes]:
    return {
        path.relative_to(ROOT).as_posix(): path.read_bytes()
        for path in sorted((ROOT / HISTORY).rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def conflicts() -> list[str]:
    """Files git left with conflict markers, and patches cruft could not apply (*.rej)."""
    unmerged = git("diff", "--name-only", "--diff-filter=U").stdout.split()
    untracked = git("ls-files", "--others", "--exclude-standard").stdout.split()
    return sorted({*unmerged, *(path for path in untracked if path.endswith(".rej"))})


NOT_LINKED = (
    "no .cruft.json: this service was not rendered with cruft. Link it once with"
    " 'uv run cruft link <template url>' (answering as when it was rendered), commit, then"
    " update."
)


def cruft_state() -> dict[str, str]:
    """The template and the commit of it this service was last rendered or updated from."""
    state = json.loads((ROOT / ".cruft.json").read_text(encoding="utf-8"))
    return {"template": str(state["template"]), "commit": str(state["commit"])[:12]}


def check() -> int:
    """0 when the service is on the template's newest commit, 1 when behind, 2 when unknown."""
    if not (ROOT / ".cruft.json").is_file():
        print(f"template-check: {NOT_LINKED}", file=sys.stderr)
        return 2
    state = cruft_state()
    checked = cruft("check", capture=True)
    if checked.returncode == 0:
        print(f"template-check: up to date with the template (commit {state['commit']})")
        return 0
    if checked.returncode == 1 and "out of date" in checked.stdout:
        print(
            f"template-check: behind the template: this service is on commit {state['commit']},"
            " the template has changed since. Run 'make template-update' to apply its changes."
        )
        return 1
    output = (checked.stdout + checked.stderr).strip()
    print(f"template-check: could not compare with {state['template']}:\n{output}", file=sys.stderr)
    return 2


def unfinished_work(arguments: list[str]) -> list[str]:
    """The changes cruft refuses to update over (untracked files too, unless allowed)."""
    allow_untracked = "--allow-untracked-files" in arguments
    lines = git("status", "--porcelain").stdout.splitlines()
    return [line for line in lines if not (allow_untracked and line.startswith("??"))]


def unstaged() -> set[str]:
    """Files whose working copy differs from the index, and untracked ones (not ignored)."""
    listed = git("ls-files", "-z", "--modified", "--deleted", "--others", "--exclude-standard")
    return set(filter(None, listed.stdout.split("\0")))


def update(arguments: list[str]) -> int:
    if not (ROOT / ".cruft.json").is_file():
        print(f"update: {NOT_LINKED}", file=sys.stderr)
        return 1
    in_git = git("rev-parse", "--is-inside-work-tree").returncode == 0
    if in_git and unfinished_work(arguments):
        print(
            "update: the working tree has changes ('git status'): commit or stash them first,"
            " so that what is staged after the update is the update alone.",
            file=sys.stderr,
        )
        return 1
    # Untracked files allowed by --allow-untracked-files are the user's: never staged.
    untracked_before = unstaged() if in_git else set()
    before = history_files()
    recorded = (ROOT / ".cruft.json").read_bytes()
    status = cruft("update", "--skip-apply-ask", *arguments).returncode
    if status != 0:
        return status
    if (ROOT / ".cruft.json").read_bytes() == recorded:
        print(f"update: nothing to do: already on template commit {cruft_state()['commit']}")
        return 0
    if history_files() != before:
        print(
            f"update: STOPPED: the update changed {HISTORY}/, which belongs to this service."
            f" Undo it with 'git checkout HEAD -- {HISTORY}' and check that pyproject.toml's"
            " [tool.cruft] skip still lists it.",
            file=sys.stderr,
        )
        return 1
    if found := conflicts():
        print("update: CONFLICT: the template and this service changed the same lines in:")
        for path in found:
            print(f"    {path}")
        print(
            "Edit each file where git marked <<<<<<< ======= >>>>>>> (or apply the .rej hunk by"
            " hand and delete it), keeping the service's lines, the template's, or both; then"
            " 'git add' them, run 'make lint test' and commit with .cruft.json, which already"
            " names the new template commit. To drop the whole update: 'git reset --hard'."
        )
        return 1
    locked = subprocess.run(["uv", "lock", "--quiet"], cwd=ROOT, check=False)
    if locked.returncode != 0:
        print("update: 'uv lock' failed: fix pyproject.toml's dependencies, then 'uv lock'.")
        return 1
    now_on = f"template commit {cruft_state()['commit']}"
    if not in_git:
        print(f"update: done, now on {now_on}. Run 'make lint test' (not a git repository).")
        return 0
    # git apply staged the template's changes; .cruft.json and uv.lock were written after.
    return stage(sorted(unstaged() - untracked_before), now_on)


def stage(paths: list[str], now_on: str) -> int:
    added = git("--literal-pathspecs", "add", "-A", "--", *paths) if paths else None
    if added is not None and added.returncode != 0:
        print(f"update: applied, but 'git add' failed:\n{added.stderr.strip()}", file=sys.stderr)
        return 1
    print(f"update: done, now on {now_on}; the update is staged ('git diff --staged'):")
    for path in git("diff", "--staged", "--name-only", "--relative").stdout.splitlines():
        print(f"    {path}")
    print("Review it, run 'make lint test', then commit.")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["first-commit"] and len(argv) == 1:
        return first_commit()
    if argv[:1] == ["check"] and len(argv) == 1:
        return check()
    if argv[:1] == ["update"]:
        return update(argv[1:])
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
