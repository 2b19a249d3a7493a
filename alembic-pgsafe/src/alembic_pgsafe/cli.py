"""The command line, ``alembic-pgsafe COMMAND`` (or ``python -m alembic_pgsafe COMMAND``), run
in the directory of the project's ``alembic.ini``::

    backfill run [NAME...]   run the backfills migrations scheduled, to the end; resumable
    backfill status          list them: state, rows, rate, ETA
    bench [--rows N] ...     backfill and index strategies measured with live traffic
    bench-plot JSON [PNG]    a bench.json drawn as small multiples (needs matplotlib)
    heads [--base BRANCH]    one head (on top of BRANCH's head)?
    lint [ALEMBIC_INI]       every revision's SQL against squawk and the toolkit's rules
                             (--format text|json|github, --since REV, --list-rules, --explain)
    relink [--base BRANCH]   this branch's revisions onto the other head
    review [--base BRANCH]   markdown: each new revision's SQL, findings, locks
    roles [--prefix NAME]    the migrator and app roles, once per database
    squash --to REV          the revisions up to REV become one baseline
    trace [--rev REV] ...    what each pending revision locks, and for how long

Each command's module is imported only when it runs: a container image without the linters
(the ``lint`` extra) or the benchmark's (``bench``) still runs ``backfill``.
"""

import sys
from collections.abc import Callable, Sequence
from importlib import import_module

from alembic_pgsafe import __version__

COMMANDS: dict[str, tuple[str, str]] = {
    "backfill": ("backfill_jobs", "run or list the backfills migrations scheduled"),
    "bench": ("bench", "backfill and index strategies measured with live traffic"),
    "bench-plot": ("bench_plot", "draw a bench.json as small multiples (needs matplotlib)"),
    "heads": ("history", "one head, on top of the base branch's?"),
    "lint": ("lint_cli", "check every revision's SQL: squawk and the toolkit's rules"),
    "relink": ("history", "put this branch's revisions on top of the other head"),
    "review": ("review", "markdown for a pull request: SQL, findings, locks"),
    "roles": ("roles", "create the migrator and app roles of a database"),
    "squash": ("squash", "replace the revisions up to REV with one baseline"),
    "trace": ("trace", "what each pending revision locks, and for how long"),
}
"""command: (module, what it does). ``heads`` and ``relink`` share one ``main``."""


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    return "\n".join(
        [
            "usage: alembic-pgsafe COMMAND [--help] ...",
            "",
            "Safe PostgreSQL migrations for Alembic projects. Commands:",
            *lines,
            "",
            "Run it where alembic.ini is. Settings: MIGRATION_* in the environment or .env,"
            " or [tool.alembic-pgsafe] in pyproject.toml.",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    command, *arguments = list(sys.argv[1:] if argv is None else argv) or [""]
    if command in ("-h", "--help", "help"):
        print(usage())
        return 0
    if command in ("-V", "--version"):
        print(f"alembic-pgsafe {__version__}")
        return 0
    if command not in COMMANDS:
        known = ", ".join(COMMANDS)
        said = f"unknown command {command!r}" if command else "no command given"
        print(f"alembic-pgsafe: {said}; one of: {known} (--help says more)", file=sys.stderr)
        return 2
    module = import_module(f"alembic_pgsafe.{COMMANDS[command][0]}")
    run: Callable[[list[str]], int] = module.main
    return run([command, *arguments] if command in ("heads", "relink") else arguments)
