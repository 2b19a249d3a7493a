"""Configuration read from the environment (and an optional, git-ignored ``.env`` file)."""

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

PROJECT_ROOT = Path(__file__).resolve().parents[2]
_POSTGRES_SCHEMES = {"postgres", "postgresql", "postgresql+asyncpg"}
_DURATION = re.compile(r"\d+(\.\d+)?\s*(us|ms|s|min|h|d)?")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(bytes|B|kB|MB|GB|TB)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "bytes": 1, "b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}


def to_asyncpg_url(value: str | URL) -> URL:
    """Parse a PostgreSQL URL and make it use the asyncpg driver.

    ``postgres://`` and ``postgresql://`` URLs, as hosting providers hand them out, are accepted;
    any other scheme (another database or driver) is refused with a message naming it.
    """
    url = make_url(value)
    if url.drivername not in _POSTGRES_SCHEMES:
        msg = f"expected a PostgreSQL URL (postgresql+asyncpg://...), got scheme {url.drivername!r}"
        raise ValueError(msg)
    return url.set(drivername="postgresql+asyncpg")


def _normalise(value: str) -> str:
    return to_asyncpg_url(value).render_as_string(hide_password=False)


AsyncpgUrl = Annotated[str, AfterValidator(_normalise)]


POOLER_REFUSAL = (
    "DATABASE_POOLER=pgbouncer: DATABASE_URL goes through a transaction pooler, which hands each"
    " transaction any server connection; the deploy lock (a session-level advisory lock), the"
    " session's lock_timeout and CREATE INDEX CONCURRENTLY need one connection for the whole run."
    " Set MIGRATIONS_DATABASE_URL to a direct connection to PostgreSQL for migrations."
)


class Settings(BaseSettings):
    """All settings of the service; each field is read from the upper-case environment variable."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # repr=False: the URLs may hold a password.
    database_url: AsyncpgUrl = Field(repr=False)
    """The application's connection (may go through a pooler)."""
    migrations_database_url: AsyncpgUrl | None = Field(default=None, repr=False)
    """Optional direct connection for Alembic (bypassing PgBouncer, say); else database_url."""
    database_pooler: Literal["none", "pgbouncer"] = "none"
    """``pgbouncer``: database_url goes through a pooler in transaction mode, so the app keeps
    no prepared statements across transactions, and Alembic needs migrations_database_url."""
    database_connect_timeout: float = Field(default=5.0, gt=0)
    alembic_ini: Path = PROJECT_ROOT / "alembic.ini"

    @property
    def alembic_database_url(self) -> str:
        """MIGRATIONS_DATABASE_URL, else DATABASE_URL unless that goes through a pooler."""
        if self.migrations_database_url is not None:
            return self.migrations_database_url
        if self.database_pooler == "pgbouncer":
            raise ValueError(POOLER_REFUSAL)
        return self.database_url


def _postgres_duration(value: str) -> str:
    if not _DURATION.fullmatch(value):
        msg = f"expected a PostgreSQL duration such as 500ms, 5s, 10min or 0 (none), got {value!r}"
        raise ValueError(msg)
    return value


PostgresDuration = Annotated[str, AfterValidator(_postgres_duration)]


def size_bytes(value: str) -> int:
    """A size in PostgreSQL's units (``64MB``, ``512kB``, ``1GB``; 1024-based) in bytes."""
    match = _SIZE.fullmatch(value.strip())
    if match is None:
        msg = f"expected a size such as 64MB, 512kB or 1GB, got {value!r}"
        raise ValueError(msg)
    return int(float(match[1]) * _SIZE_UNITS[(match[2] or "").lower()])


def _postgres_size(value: str) -> str:
    size_bytes(value)
    return value


PostgresSize = Annotated[str, AfterValidator(_postgres_size)]


class MigrationSettings(BaseSettings):
    """Limits for migrations: MIGRATION_LOCK_TIMEOUT etc., or ``alembic -x lock_timeout=2s``.

    No database URL here: offline SQL (``alembic upgrade --sql``) needs these, not a database.
    """

    model_config = SettingsConfigDict(env_prefix="MIGRATION_", env_file=".env", extra="ignore")

    lock_timeout: PostgresDuration = "5s"
    """How long one DDL statement may wait for its lock before it gives up (and is retried)."""
    statement_timeout: PostgresDuration = "10min"
    """How long one statement of a migration may run."""
    backfill_batch_timeout: PostgresDuration = "1min"
    """How long one batch of a backfill may run."""
    index_build_timeout: PostgresDuration = "2h"
    """How long CREATE INDEX CONCURRENTLY may run."""
    lock_attempts: int = Field(default=5, ge=1, le=50)
    """Attempts of a DDL step whose lock is not granted, with exponential backoff between."""
    deploy_lock_wait: float = Field(default=900.0, gt=0)
    """Seconds a deploy waits for another deploy's migrations before giving up."""
    max_replica_lag: PostgresSize | None = None
    """Backfills pause before a batch while a streaming replica is further behind than this
    (``64MB``; bytes of WAL not yet replayed, from pg_stat_replication). Unset: no check."""
    max_wal_rate: PostgresSize | None = None
    """Backfills pause between batches to keep the WAL the server writes, counted from the
    backfill's first batch, under this much per second (``32MB``). Unset: no budget."""
    max_replica_lag_wait: float = Field(default=900.0, gt=0)
    """Seconds one pause of a backfill (replica lag or WAL rate) may last; then it stops,
    resumable."""
    batch_size: int | None = Field(default=None, ge=1, le=1_000_000)
    """Rows per backfill batch for this run (every backfill_in_batches call); unset: each
    call's own batch_size, or batches that adapt to about 50 ms."""


@lru_cache
def get_settings() -> Settings:
    return Settings()
