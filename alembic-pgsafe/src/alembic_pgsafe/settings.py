"""The toolkit's settings, read in this order (the first that sets a value wins):

1. arguments (``alembic -x lock_timeout=2s``, a command line's options);
2. the environment (``MIGRATION_LOCK_TIMEOUT=2s``; the connection's ``DATABASE_URL`` and
   ``MIGRATIONS_DATABASE_URL``, or ``*_FILE`` naming a file that holds one);
3. an optional, git-ignored ``.env`` file in the working directory;
4. the ``[tool.alembic-pgsafe]`` table of ``pyproject.toml`` in the working directory, for what
   a team sets once for every machine (``lock_timeout = "2s"``, without the prefix).

No database URL is needed for offline SQL (``alembic upgrade --sql``) or lint: only the limits.
"""

import os
import re
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BeforeValidator,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    PyprojectTomlConfigSettingsSource,
    SettingsConfigDict,
)

from alembic_pgsafe.connect import to_asyncpg_url

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "PROJECT_ROOT",
    "PYPROJECT_TABLE",
    "DatabaseSettings",
    "MigrationSettings",
    "SettingsError",
    "command_name",
    "get_settings",
    "project_prefix",
    "read_secret",
    "size_bytes",
]

PROJECT_ROOT = Path.cwd()
"""Where commands look for ``alembic.ini``, ``pyproject.toml`` and ``.env``: the directory
they run in, as for ``alembic`` itself."""
PYPROJECT_TABLE = ("tool", "alembic-pgsafe")
DEFAULT_CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a connection when DATABASE_CONNECT_TIMEOUT says nothing."""
_DURATION = re.compile(r"\d+(\.\d+)?\s*(us|ms|s|min|h|d)?")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(bytes|B|kB|MB|GB|TB)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "bytes": 1, "b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}


class SettingsError(ValueError):
    """Settings that cannot be used, said in lines that never quote a value (a URL may hold a
    password)."""

    @classmethod
    def from_validation(cls, exc: ValidationError) -> "SettingsError":
        lines = []
        for error in exc.errors(include_input=False, include_url=False, include_context=False):
            name = "_".join(str(part) for part in error["loc"]).upper() or exc.title
            lines.append(f"{name}: {error['msg'].removeprefix('Value error, ')}")
        return cls("invalid settings: " + "; ".join(lines))


def _normalise(value: str) -> str:
    return to_asyncpg_url(value).render_as_string(hide_password=False)


AsyncpgUrl = Annotated[str, AfterValidator(_normalise)]
"""A PostgreSQL URL (``postgres://``, ``postgresql://``), stored with the asyncpg driver."""

POOLER_REFUSAL = (
    "DATABASE_POOLER=pgbouncer: DATABASE_URL goes through a transaction pooler, which hands each"
    " transaction any server connection; the deploy lock (a session-level advisory lock), the"
    " session's lock_timeout and CREATE INDEX CONCURRENTLY need one connection for the whole run."
    " Set MIGRATIONS_DATABASE_URL to a direct connection to PostgreSQL for migrations."
)
_URL_FILES = {
    "database_url": "database_url_file",
    "migrations_database_url": "migrations_database_url_file",
}


def read_secret(path: str | Path, setting: str) -> str:
    """The value a secret file holds (a Docker or Kubernetes secret), without its newline."""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        msg = f"{setting.upper()}: cannot read {path}: {exc.strerror}"
        raise ValueError(msg) from None


class DatabaseSettings(BaseSettings):
    """Where the toolkit connects: each field from its upper-case environment variable."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # repr=False: the URLs may hold a password.
    database_url: AsyncpgUrl = Field(repr=False)
    """The application's connection (may go through a pooler). libpq's parameters are accepted:
    ``?sslmode=verify-full&sslrootcert=/path/ca.pem``."""
    database_url_file: Path | None = None
    """A file holding DATABASE_URL (a Docker or Kubernetes secret), read when it is unset."""
    migrations_database_url: AsyncpgUrl | None = Field(default=None, repr=False)
    """Optional direct connection for Alembic (bypassing PgBouncer, say); else database_url."""
    migrations_database_url_file: Path | None = None
    """A file holding MIGRATIONS_DATABASE_URL."""
    database_pooler: Literal["none", "pgbouncer"] = "none"
    """``pgbouncer``: database_url goes through a pooler in transaction mode, so the app keeps
    no prepared statements across transactions, and Alembic needs migrations_database_url."""
    database_connect_timeout: float = Field(default=DEFAULT_CONNECT_TIMEOUT, gt=0)
    """Seconds to wait for a connection, for the app, migrations and the toolkit's commands."""
    alembic_ini: Path = PROJECT_ROOT / "alembic.ini"

    @model_validator(mode="before")
    @classmethod
    def _urls_from_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for setting, file_setting in _URL_FILES.items():
            path = data.get(file_setting)
            if path and not data.get(setting):
                data[setting] = read_secret(path, file_setting)
        return data

    @property
    def alembic_database_url(self) -> str:
        """MIGRATIONS_DATABASE_URL, else DATABASE_URL unless that goes through a pooler."""
        if self.migrations_database_url is not None:
            return self.migrations_database_url
        if self.database_pooler == "pgbouncer":
            raise ValueError(POOLER_REFUSAL)
        return self.database_url


@lru_cache
def get_settings() -> DatabaseSettings:
    """The connection settings; :class:`SettingsError` (values never quoted) when unusable."""
    try:
        return DatabaseSettings()
    except ValidationError as exc:
        raise SettingsError.from_validation(exc) from None


def project_prefix(root: Path = PROJECT_ROOT) -> str:
    """The roles' default prefix: the project's name in ``pyproject.toml`` as a role name
    (``my-service`` gives ``my_service``), else ``app``."""
    try:
        with (root / "pyproject.toml").open("rb") as file:
            name = str(tomllib.load(file).get("project", {}).get("name", ""))
    except (OSError, tomllib.TOMLDecodeError):
        name = ""
    return re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_") or "app"


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


def _budget(value: Any) -> Any:
    """``off`` (or ``none``, ``0``) turns the latency budget off: 0."""
    if isinstance(value, str) and value.strip().lower() in ("off", "none", "0"):
        return 0.0
    return value


def _budget_factor(value: float) -> float:
    if value != 0 and not 1 < value <= 100:
        msg = f"expected a factor above 1 (2: commits may take twice as long) or off, got {value}"
        raise ValueError(msg)
    return value


LatencyBudget = Annotated[float, BeforeValidator(_budget), AfterValidator(_budget_factor)]


class MigrationSettings(BaseSettings):
    """Limits for migrations: MIGRATION_LOCK_TIMEOUT etc., ``alembic -x lock_timeout=2s``, or
    ``lock_timeout = "2s"`` under ``[tool.alembic-pgsafe]`` in pyproject.toml.

    No database URL here: offline SQL (``alembic upgrade --sql``) needs these, not a database.
    """

    model_config = SettingsConfigDict(
        env_prefix="MIGRATION_",
        env_file=".env",
        extra="ignore",
        pyproject_toml_table_header=PYPROJECT_TABLE,
    )

    lock_timeout: PostgresDuration = "5s"
    """How long one DDL statement may wait for its lock before it gives up (and is retried)."""
    statement_timeout: PostgresDuration = "10min"
    """How long one statement of a migration may run."""
    backfill_batch_timeout: PostgresDuration = "1min"
    """How long one batch of a backfill may run."""
    index_build_timeout: PostgresDuration = "2h"
    """How long CREATE INDEX CONCURRENTLY may run."""
    index_build_workers: int | None = Field(default=None, ge=0, le=64)
    """``max_parallel_maintenance_workers`` for concurrent index builds (``0`` on a small
    server keeps its cores for the application); unset: the server's setting."""
    lock_attempts: int = Field(default=5, ge=1, le=50)
    """Attempts of a DDL step whose lock is not granted, with exponential backoff between."""
    deploy_lock_wait: float = Field(default=900.0, gt=0)
    """Seconds a deploy waits for another deploy's migrations before giving up."""
    deploy_lock_name: str | None = None
    """What names the deploy lock (every deploy of one database must use the same); unset: the
    project's name in the pyproject.toml beside alembic.ini, with ``:alembic``."""
    max_replica_lag: PostgresSize | None = None
    """Backfills pause before a batch while a streaming replica is further behind than this
    (``64MB``; bytes of WAL not yet replayed, from pg_stat_replication). Unset: no check."""
    max_wal_rate: PostgresSize | None = None
    """Backfills pause between batches to keep the WAL the server writes, counted from the
    backfill's first batch, under this much per second (``32MB``). Unset: no budget."""
    max_replica_lag_wait: float = Field(default=900.0, gt=0)
    """Seconds one pause of a backfill (replica lag or WAL rate) may last; then it stops,
    resumable."""
    default_batch_size: int = Field(default=500, ge=1, le=1_000_000)
    """Rows per backfill batch when a call names no size and no budget: the default pace (500:
    the application's commit latency within about 2x idle, at about half the speed of one
    UPDATE, as ``alembic-pgsafe bench`` measured on 2 cores)."""
    batch_target_seconds: float = Field(default=0.05, gt=0, le=60)
    """How long an adaptive batch aims to take (``gentle=False``, parallel workers), and the
    latency budget's longest batch."""
    offline_batch_size: int = Field(default=5000, ge=1, le=1_000_000)
    """Rows per batch of a backfill rendered as offline SQL (a ``DO`` block)."""
    trace_rows: int = Field(
        default=10_000,
        ge=0,
        le=100_000_000,
        validation_alias=AliasChoices("trace_rows", "migration_trace_rows"),
    )
    """Rows per table ``alembic-pgsafe trace`` (and review) fills the scratch copy with
    (TRACE_ROWS, as before the settings, or MIGRATION_TRACE_ROWS)."""
    trace_max_lock_ms: float = Field(
        default=1000.0,
        gt=0,
        validation_alias=AliasChoices("trace_max_lock_ms", "migration_trace_max_lock_ms"),
    )
    """A lock that blocks writes, held longer than this on a table with rows, fails a trace
    (TRACE_MAX_LOCK_MS or MIGRATION_TRACE_MAX_LOCK_MS)."""
    commands: Literal["auto", "make", "cli"] = "auto"
    """How messages name a command a person runs next: ``make backfill`` (``make``),
    ``alembic-pgsafe backfill run`` (``cli``), or ``auto``: make where a Makefile sits in the
    working directory, else the command line (``docker run <image> backfill`` in an image
    whose SERVICE_RUNTIME is ``image``, whatever this says)."""
    squash_removes: list[str] = Field(default_factory=list)
    """Files (from alembic.ini's folder) that replay revisions by their places in the chain,
    which ``alembic-pgsafe squash`` removes with the revisions it squashes (a render's lesson
    tests); git keeps them."""
    batch_size: int | None = Field(default=None, ge=1, le=1_000_000)
    """Rows per backfill batch for this run (every backfill_in_batches call); unset: each
    call's own batch_size, or the default pace (500 rows, or the latency budget when set)."""
    backfill_budget: LatencyBudget | None = None
    """Backfills size their batches to keep the application's commits within this many times
    what they took before the backfill (``2``; a canary connection times them); ``off``: batches
    are the call's. Unset: each call's ``budget`` (none unless it gives one)."""
    backfill_budget_min_rate: float = Field(default=10_000, ge=0)
    """Rows per second the latency budget never slows a backfill below (its floor; ``0``: no
    floor), logged once a minute while it holds the pace up: a server busy with other work
    keeps the canary over any budget (see DEFAULT_MIN_RATE in ``budget.py`` for the default)."""
    progress_seconds: float = Field(default=5.0, ge=0, le=3600)
    """A running backfill logs its progress (event ``backfill.progress``: rows done, rate, ETA,
    batch size) at most this often, and once at its end: a log collector gets a line every few
    seconds, not one per batch (0: after every batch)."""
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    """``alembic-pgsafe backfill run`` serves its metrics (rows done, rows per second, batch
    size, pause, the latency budget's state) for Prometheus on this port while it runs
    (``--metrics-port``); unset: none."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, the environment, ``.env``, then pyproject.toml's table."""
        pyproject = PyprojectTomlConfigSettingsSource(settings_cls, PROJECT_ROOT / "pyproject.toml")
        return init_settings, env_settings, dotenv_settings, pyproject


CLI_COMMANDS = {
    "backfill": "alembic-pgsafe backfill run",
    "backfill-status": "alembic-pgsafe backfill status",
    "db-roles": "alembic-pgsafe roles",
    "downgrade": "alembic downgrade {to}",
    "history": "alembic history",
    "migrate": "alembic upgrade head",
    "relink": "alembic-pgsafe relink",
}
"""What a target of a template render's Makefile is as a plain command line."""


def command_name(target: str, *, to: str | None = None) -> str:
    """How a person runs ``target`` (``downgrade`` ``to`` a revision) where the message is
    printed: see the ``commands`` setting."""
    if os.environ.get("SERVICE_RUNTIME") == "image":  # the image has no make: its own commands
        return f"docker run <image> {target}"
    try:
        style = MigrationSettings().commands
    except ValueError:  # invalid settings or TOML: said where the settings are used
        style = "auto"
    if style == "auto":
        style = "make" if (PROJECT_ROOT / "Makefile").is_file() else "cli"
    if style == "make":
        return f"make {target}" + (f" to={to}" if to else "")
    return CLI_COMMANDS[target].format(to=to or "<revision>")
