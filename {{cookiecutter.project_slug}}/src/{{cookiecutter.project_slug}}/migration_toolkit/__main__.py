"""The toolkit's commands, ``python -m <package>.migration_toolkit COMMAND``, each behind a
make target::

    backfill run [NAME...]   make backfill
    backfill status          make backfill-status
    lint [ALEMBIC_INI]       make lint (the migrations' part)
    roles [--prefix NAME]    make db-roles (the migrator and app roles, once per database)
    trace [--rev REV] ...    make trace (what each revision locks, and for how long)

Each command's module is imported only when it runs: the container image, which has no dev
tools, runs ``backfill`` without the linters ``lint`` needs.
"""

import sys
from collections.abc import Sequence

USAGE = f"usage: python -m {__package__} COMMAND ...; COMMAND is backfill, lint, roles or trace"


def main(argv: Sequence[str] | None = None) -> int:
    command, *arguments = list(sys.argv[1:] if argv is None else argv) or [""]
    if command == "backfill":
        from {{ cookiecutter.project_slug }}.migration_toolkit import backfill_jobs

        return backfill_jobs.main(arguments)
    if command == "lint":
        from {{ cookiecutter.project_slug }}.migration_toolkit import lint

        return lint.main(arguments)
    if command == "roles":
        from {{ cookiecutter.project_slug }}.migration_toolkit import roles

        return roles.main(arguments)
    if command == "trace":
        from {{ cookiecutter.project_slug }}.migration_toolkit import trace

        return trace.main(arguments)
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
