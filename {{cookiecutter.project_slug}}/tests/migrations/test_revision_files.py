"""New revision files: born clean for ruff, and named so that they sort in creation order."""

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from {{ cookiecutter.project_slug }}.settings import PROJECT_ROOT


def config_writing_to(versions: Path) -> Config:
    """The project's alembic.ini, new revisions in ``versions``, no post-write hooks."""
    config = Config(PROJECT_ROOT / "alembic.ini")
    config.attributes["configure_logger"] = False
    config.set_main_option("version_locations", str(versions))
    config.set_section_option("post_write_hooks", "hooks", "")
    return config


def ruff(*arguments: str) -> subprocess.CompletedProcess[str]:
    config = str(PROJECT_ROOT / "pyproject.toml")
    return subprocess.run(
        [sys.executable, "-m", "ruff", *arguments, "--config", config],
        capture_output=True,
        text=True,
        check=False,
    )


def assert_clean(path: Path) -> None:
    checked = ruff("check", "--no-fix", str(path))
    formatted = ruff("format", "--check", str(path))
    assert checked.returncode == 0, checked.stdout
    assert formatted.returncode == 0, formatted.stdout


def test_hand_written_revision_is_born_clean(tmp_path: Path) -> None:
    command.revision(config_writing_to(tmp_path), message="backfill order totals")

    [written] = tmp_path.glob("*.py")
    assert_clean(written)
    assert "import sqlalchemy" not in written.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("upgrades", "downgrades", "imports"),
    [
        (
            'op.add_column("orders", sa.Column("note", sa.Text(), nullable=True))',
            'op.drop_column("orders", "note")',
            {"import sqlalchemy as sa", "from alembic import op"},
        ),
        (
            'op.drop_index("ix_orders_note", table_name="orders")',
            'op.create_index("ix_orders_note", "orders", ["note"])',
            {"from alembic import op"},
        ),
    ],
)
def test_generated_revision_imports_exactly_what_it_uses(
    tmp_path: Path, upgrades: str, downgrades: str, imports: set[str]
) -> None:
    script = ScriptDirectory.from_config(config_writing_to(tmp_path))
    revision = script.generate_revision(
        "a1b2c3d4e5f6", "orders note", head="base", upgrades=upgrades, downgrades=downgrades
    )

    assert revision is not None
    written = Path(str(revision.path))
    assert_clean(written)
    lines = set(written.read_text(encoding="utf-8").splitlines())
    assert {"import sqlalchemy as sa", "from alembic import op"} & lines == imports


def test_revisions_created_within_one_minute_sort_in_creation_order(tmp_path: Path) -> None:
    config = config_writing_to(tmp_path)
    while datetime.now(UTC).second >= 57:  # both in the same minute
        time.sleep(0.2)
    # Ids chosen so that ordering by id would put the second first.
    command.revision(config, message="first", rev_id="ffffffffff01")
    started = datetime.now(UTC).second
    while datetime.now(UTC).second == started:
        time.sleep(0.05)
    command.revision(config, message="second", rev_id="000000000002")

    names = sorted(path.name for path in tmp_path.glob("*.py"))
    assert [name.rsplit("_", 1)[-1] for name in names] == ["first.py", "second.py"]
    assert names[0][:15] == names[1][:15]  # the same YYYY_MM_DD_HHMM
