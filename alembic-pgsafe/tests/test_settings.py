"""Settings come from arguments, then the environment, then ``.env``, then pyproject.toml's
``[tool.alembic-pgsafe]`` table: a team sets a value once, a machine or a run overrides it."""

import os
import re
import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from alembic_pgsafe import settings
from alembic_pgsafe.settings import MigrationSettings


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project directory as the working directory, no MIGRATION_* in the environment."""
    for name in [name for name in os.environ if name.startswith("MIGRATION_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(settings, "PROJECT_ROOT", tmp_path)
    return tmp_path


def write_pyproject(project: Path, table: str) -> None:
    text = f'[project]\nname = "orders-api"\n\n[tool.alembic-pgsafe]\n{table}\n'
    (project / "pyproject.toml").write_text(text, encoding="utf-8")


def test_defaults_without_any_source(project: Path) -> None:
    limits = MigrationSettings()

    assert (limits.lock_timeout, limits.statement_timeout, limits.batch_size) == (
        "5s",
        "10min",
        None,
    )


def test_pyproject_table_sets_what_a_team_sets_once(project: Path) -> None:
    write_pyproject(project, 'lock_timeout = "2s"\nbatch_size = 1000\nlock_attempts = 3')

    limits = MigrationSettings()

    assert (limits.lock_timeout, limits.batch_size, limits.lock_attempts) == ("2s", 1000, 3)


def test_dotenv_then_environment_then_arguments_override_the_table(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_pyproject(project, 'lock_timeout = "2s"\nstatement_timeout = "1min"\nbatch_size = 10')
    (project / ".env").write_text("MIGRATION_LOCK_TIMEOUT=3s\nMIGRATION_BATCH_SIZE=20\n")
    monkeypatch.setenv("MIGRATION_BATCH_SIZE", "30")

    limits = MigrationSettings(statement_timeout="5min")

    assert limits.lock_timeout == "3s"  # .env over the table
    assert limits.batch_size == 30  # the environment over .env
    assert limits.statement_timeout == "5min"  # an argument over everything


def test_a_bad_value_in_the_table_names_the_setting(project: Path) -> None:
    write_pyproject(project, 'lock_timeout = "soon"')

    with pytest.raises(ValidationError, match="lock_timeout") as raised:
        MigrationSettings()

    assert "expected a PostgreSQL duration" in str(raised.value)


def test_roles_prefix_defaults_to_the_project_name(project: Path) -> None:
    write_pyproject(project, "")

    assert settings.project_prefix(project) == "orders_api"
    assert settings.project_prefix(project / "elsewhere") == "app"


def test_what_teams_changed_in_toolkit_code_is_a_setting(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_pyproject(
        project,
        "default_batch_size = 2000\nbatch_target_seconds = 0.2\noffline_batch_size = 10000\n"
        'trace_rows = 500\ndeploy_lock_name = "orders:deploys"',
    )
    monkeypatch.setenv("TRACE_MAX_LOCK_MS", "250")  # the name it had before the settings

    limits = MigrationSettings()

    assert (limits.default_batch_size, limits.batch_target_seconds) == (2000, 0.2)
    assert (limits.offline_batch_size, limits.trace_rows) == (10000, 500)
    assert limits.trace_max_lock_ms == 250.0
    assert limits.deploy_lock_name == "orders:deploys"
    monkeypatch.setenv("MIGRATION_TRACE_ROWS", "42")
    assert MigrationSettings().trace_rows == 42


def test_the_readme_s_settings_are_the_settings(project: Path) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    [table] = re.findall(r"```toml\n(.*?)```", section, re.DOTALL)
    documented = tomllib.loads(table)["tool"]["alembic-pgsafe"]
    (project / "pyproject.toml").write_text(table, encoding="utf-8")

    limits = MigrationSettings()

    assert set(documented) <= set(MigrationSettings.model_fields)
    assert {name: getattr(limits, name) for name in documented} == documented
