#!/bin/sh
# The image's commands: `serve` (the default), `migrate`, `backfill`, `backfill-status`;
# anything else runs as given.
set -eu
command="${1:-serve}"
[ "$#" -gt 0 ] && shift
case "$command" in
    serve)
        # exec: uvicorn is PID 1 and gets SIGTERM itself, finishing requests in flight.
        exec uvicorn {{ cookiecutter.project_slug }}.main:app --host 0.0.0.0 --port "$PORT" "$@"
        ;;
    migrate)
        # Once per deploy, before the new release serves; concurrent runs take turns (deploy lock).
        exec alembic -c "$ALEMBIC_INI" upgrade head "$@"
        ;;
    backfill)
        # After the deploy: the backfills its migrations scheduled; safe to run twice at once.
        exec alembic-pgsafe backfill run "$@"
        ;;
    backfill-status)
        exec alembic-pgsafe backfill status
        ;;
    *)
        exec "$command" "$@"
        ;;
esac
