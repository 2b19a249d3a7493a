"""The toolkit's commands, ``python -m <package>.migration_toolkit COMMAND``, each behind a
make target::

    backfill run [NAME...]   make backfill
    backfill status          make backfill-status
    heads [--base BRANCH]    one head (on top of BRANCH's head)? make lint and CI ask
    lint [ALEMBIC_INI]       make lint (the migrations' part)
    relink [--base BRANCH]   make relink (this branch's revisions onto the other head)
    review [--base BRANCH]   make review (markdown: each new revision's SQL, findings, locks)
    roles [--prefix NAME]    make db-roles (the migrator and app roles, once per database)
    squash --to REV          make squash (the revisions up to REV become one baseline)
    trace [--rev REV] ...    make trace (what each revision locks, and for how long)

Each command's module is imported only when it runs: the container image, which has no dev
tools, runs ``backfill`` without the linters ``lint`` needs.
"""

import sys
from collections.abc import Sequence

USAGE = f"usage: python -m {__package__} COMMAND ...; COMMAND is one of: " + ", ".join(
    ("backfill", "heads", "lint", "relink", "review", "roles", "squash", "trace")
)


def main(argv: Sequence[str] | None = None) -> int:
    command, *arguments = list(sys.argv[1:] if argv is None else argv) or [""]
    if command == "backfill":
        from {{ cookiecutter.project_slug }}.migration_toolkit import backfill_jobs

        return backfill_jobs.main(arguments)
    if command in ("heads", "relink"):
        from {{ cookiecutter.project_slug }}.migration_toolkit import history

        return history.main([command, *arguments])
    if command == "lint":
        from {{ cookiecutter.project_slug }}.migration_toolkit import lint

        return lint.main(arguments)
    if command == "review":
        from {{ cookiecutter.project_slug }}.migration_toolkit import review

        return review.main(arguments)
    if command == "roles":
        from {{ cookiecutter.project_slug }}.migration_toolkit import roles

        return roles.main(arguments)
    if command == "squash":
        from {{ cookiecutter.project_slug }}.migration_toolkit import squash

        return squash.main(arguments)
    if command == "trace":
        from {{ cookiecutter.project_slug }}.migration_toolkit import trace

        return trace.main(arguments)
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
