"""Write the local stack's secrets (``compose.yaml``) into ``.secrets/``, once.

    python scripts/compose_secrets.py      # make compose-secrets

Random passwords for PostgreSQL's superuser, the migrator and the app role, and the URLs the
containers read from ``/run/secrets/``. ``.secrets/`` is git-ignored and kept out of the image
(``.dockerignore``); files that exist are left as they are, so the database's volume and its
passwords stay in step. Nothing is printed but the file names.
"""

import secrets
import sys
from pathlib import Path

SLUG = "{{ cookiecutter.project_slug }}"
DIRECTORY = Path(__file__).resolve().parents[1] / ".secrets"


def contents() -> dict[str, str]:
    existing = {path.name: path.read_text().strip() for path in DIRECTORY.glob("*")}
    passwords = {
        name: existing.get(name) or secrets.token_urlsafe(24)
        for name in ("postgres_password", "migrator_password", "app_password")
    }
    migrator, app = f"{SLUG}_migrator", f"{SLUG}_app"

    def url(user: str, password: str, host: str = "db:5432") -> str:
        return f"postgresql://{user}:{password}@{host}/app"

    return {
        **passwords,
        "admin_database_url": url("postgres", passwords["postgres_password"]),
        "migrator_database_url": url(migrator, passwords["migrator_password"]),
        "app_database_url": url(app, passwords["app_password"]),
        "pooled_database_url": url(app, passwords["app_password"], host="pgbouncer:6432"),
        "pgbouncer_userlist": f'"{app}" "{passwords["app_password"]}"',
    }


def main() -> int:
    DIRECTORY.mkdir(mode=0o700, exist_ok=True)
    for name, value in contents().items():
        path = DIRECTORY / name
        if path.exists():
            continue
        path.write_text(value + "\n", encoding="utf-8")
        # Readable by the containers' users: Docker bind-mounts the file as it is.
        path.chmod(0o644)
        print(f"wrote {path.relative_to(DIRECTORY.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
