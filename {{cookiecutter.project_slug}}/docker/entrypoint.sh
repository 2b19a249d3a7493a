#!/bin/sh
# The image's commands: `serve` (the default) or `migrate`; anything else runs as given.
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
    *)
        exec "$command" "$@"
        ;;
esac
