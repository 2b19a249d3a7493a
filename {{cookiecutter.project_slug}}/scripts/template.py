"""Keep this service in step with the template it was rendered from (through cruft).

An update renders the template at the service's recorded commit and at the newest one, and
applies the difference to the service with git's three-way merge. The paths in
``[tool.cruft] skip`` (pyproject.toml) are never touched: ``migrations/versions/`` is the
service's own history, ``uv.lock`` is re-solved by ``uv lock`` afterwards. A line that both the
template and the service changed becomes a conflict, reported here with what to do; the update
is then left staged for you to finish or undo, never half-applied out of sight.
"""

import json
import subprocess
import sys
from pathlib import Path

USAGE = """usage:
    python scripts/template.py first-commit   # after `cruft create`: git init, first commit
    python scripts/template.py check          # is the service behind its template?
    python scripts/template.py update [ARGS]  # apply the template's changes (ARGS go to cruft)"""

ROOT = Path(__file__).resolve().parent.parent
HISTORY = "migrations/versions"
FIRST_COMMIT_MESSAGE = "Initial commit from the service template"


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)


def cruft(*args: str) -> int:
    """Run the cruft command line; its output goes straight to the terminal."""
    return subprocess.run([sys.executable, "-m", "cruft", *args], cwd=ROOT, check=False).returncode


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


def update(arguments: list[str]) -> int:
    if not (ROOT / ".cruft.json").is_file():
        print(
            "update: no .cruft.json: this service was not rendered with cruft. Link it once with"
            " 'uv run cruft link <template url>' (answering as when it was rendered), commit,"
            " then update.",
            file=sys.stderr,
        )
        return 1
    before = history_files()
    status = cruft("update", "--skip-apply-ask", *arguments)
    if status != 0:
        return status
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
    locked = subprocess.run(["uv", "lock"], cwd=ROOT, check=False)
    if locked.returncode != 0:
        print("update: 'uv lock' failed: fix pyproject.toml's dependencies, then 'uv lock'.")
        return 1
    print(
        "update: done. Review 'git status' and 'git diff --staged', run 'make lint test',"
        " then commit (.cruft.json records the template commit you are now on)."
    )
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["first-commit"] and len(argv) == 1:
        return first_commit()
    if argv[:1] == ["check"] and len(argv) == 1:
        return cruft("check")
    if argv[:1] == ["update"]:
        return update(argv[1:])
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
