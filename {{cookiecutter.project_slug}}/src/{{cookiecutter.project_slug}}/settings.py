"""Configuration read from the environment, then from an optional, git-ignored ``.env`` file.

Every entry point reads the same settings in that order: the app, Alembic, the migration
toolkit's commands and ``scripts/localdb.py`` (which starts the embedded PostgreSQL only when
neither names a database). A URL may also come from a file (``DATABASE_URL_FILE``,
``MIGRATIONS_DATABASE_URL_FILE``), as Docker and Kubernetes mount secrets.

The connection settings are the migration toolkit's (``alembic_pgsafe.settings``), so the
service and its migrations read one set; the limits of migrations are ``MigrationSettings``
(``MIGRATION_*``, or ``[tool.alembic-pgsafe]`` in pyproject.toml).
"""

import os
from functools import lru_cache
from pathlib import Path

from alembic_pgsafe.connect import to_asyncpg_url, where
from alembic_pgsafe.settings import (
    DatabaseSettings,
    MigrationSettings,
    SettingsError,
    read_secret,
    size_bytes,
)
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "PROJECT_ROOT",
    "MigrationSettings",
    "Settings",
    "SettingsError",
    "get_settings",
    "named_database",
    "size_bytes",
    "to_asyncpg_url",
]

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Settings(DatabaseSettings):
    """All settings of the service; each field is read from the upper-case environment variable.

    The database's (``DATABASE_URL`` and the rest) come from :class:`DatabaseSettings`."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    alembic_ini: Path = PROJECT_ROOT / "alembic.ini"


class _NamedDatabase(BaseSettings):
    """Only what says whether a database is named, read in the same order as :class:`Settings`."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str | None = None
    database_url_file: str | None = None


def named_database() -> str | None:
    """Which setting names the database, the environment's or ``.env``'s, and where it points
    (``DATABASE_URL from .env: app@db:5432/app``); None when none names one."""
    named = _NamedDatabase()
    for setting in ("database_url", "database_url_file"):
        value = getattr(named, setting)
        if not value:
            continue
        source = "the environment" if os.environ.get(setting.upper()) else ".env"
        try:
            url = value if setting == "database_url" else read_secret(value, setting)
            return f"{setting.upper()} from {source}: {where(url)}"
        except Exception:  # Settings says what is wrong with it, in its words
            return f"{setting.upper()} from {source}"
    return None


@lru_cache
def get_settings() -> Settings:
    """The settings; :class:`SettingsError` (values never quoted) when they cannot be used."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError.from_validation(exc) from None
