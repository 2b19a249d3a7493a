"""Lint the SQL of every migration with squawk, one file per revision.

    python scripts/lint_migrations.py [path/to/alembic.ini]

Each revision is rendered offline, as ``alembic upgrade <previous>:<revision> --sql`` does
(no database needed), into migrations/versions/<file>.sql under a temporary folder; squawk
then checks them all with .squawk.toml and says which rule each unsafe statement breaks.
A rule can be waived for one statement, with the reason in the revision, by emitting
``-- squawk-ignore <rule>`` before it (see acknowledge_lint in db/migration_helpers.py).
"""

import io
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

ROOT = Path(__file__).resolve().parents[1]


def render_revisions(alembic_ini: Path, into: Path) -> list[Path]:
    """Write each revision's offline SQL to ``into``; return the files, base first."""
    script = ScriptDirectory.from_config(Config(alembic_ini))
    files = []
    for revision in reversed(list(script.walk_revisions())):
        if isinstance(revision.down_revision, tuple):
            print(f"skipping merge revision {revision.revision}", file=sys.stderr)
            continue
        output = io.StringIO()
        config = Config(alembic_ini, output_buffer=output)
        config.attributes["configure_logger"] = False
        span = revision.revision
        if revision.down_revision:
            span = f"{revision.down_revision}:{revision.revision}"
        command.upgrade(config, span, sql=True)
        path = into / "migrations" / "versions" / f"{Path(revision.path).stem}.sql"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(output.getvalue(), encoding="utf-8")
        files.append(path.relative_to(into))
    return files


def main(argv: list[str]) -> int:
    alembic_ini = Path(argv[0]).resolve() if argv else ROOT / "alembic.ini"
    squawk = shutil.which("squawk")
    if squawk is None:
        print("squawk is not installed: run 'uv sync' (it is a dev dependency)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        files = render_revisions(alembic_ini, Path(tmp))
        config = alembic_ini.parent / ".squawk.toml"
        result = subprocess.run([squawk, "--config", str(config), *map(str, files)], cwd=tmp)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
