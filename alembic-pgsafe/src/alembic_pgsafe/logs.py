"""One logging setup for a service and its migrations: JSON lines for a log collector, or text.

``LOG_FORMAT=json`` (what a container image sets) writes one JSON object per line with
``time``, ``level``, ``logger`` and ``message``, plus every field the record carries: the
toolkit's events say what happened in fields (``event``, ``revision``, ``rows_done``, ...), not
only in prose, and a service's request id arrives the same way (a logging filter that sets it).
``LOG_FORMAT=text`` (the default) is for a developer's terminal. ``LOG_LEVEL`` sets the level.

Every logger goes through the root's one handler: uvicorn's (which configures its own handlers
before it imports the app), SQLAlchemy's, Alembic's and the toolkit's.
"""

import logging
import sys
import time
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Literal, TextIO

from alembic.runtime.migration import MigrationContext, MigrationInfo
from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from pythonjsonlogger.json import JsonFormatter

from alembic_pgsafe.settings import SettingsError

__all__ = [
    "JSON_FIELDS",
    "LogSettings",
    "RevisionEvents",
    "configure_logging",
    "log_settings",
]

JSON_FIELDS = ("time", "level", "logger", "message")
"""The fields every JSON line starts with; the record's own fields follow."""
TEXT_FORMAT = "%(asctime)s %(levelname)-5.5s [%(name)s] %(message)s"
OWN_HANDLERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "alembic")
"""Loggers that come with handlers of their own (uvicorn's config, alembic.ini's): they are made
to write through the root's handler instead, so every line has one format."""


class LogSettings(BaseSettings):
    """``LOG_FORMAT`` and ``LOG_LEVEL``, from the environment or ``.env``."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    log_format: Literal["json", "text"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


def log_settings() -> LogSettings:
    """The settings; :class:`SettingsError` in one line when a value cannot be used."""
    try:
        return LogSettings()
    except ValidationError as exc:
        raise SettingsError.from_validation(exc) from None


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        datefmt="%Y-%m-%dT%H:%M:%S%z",
        json_ensure_ascii=False,
    )


def configure_logging(
    log_format: Literal["json", "text"] | None = None,
    *,
    level: str | None = None,
    filters: Iterable[logging.Filter] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send every log record through one handler on stderr, in ``log_format`` (by default
    ``LOG_FORMAT``), at ``level`` (``LOG_LEVEL``); ``filters`` add fields to every record (a
    request id), on ``stream`` (stderr). Called again, it replaces the handler it installed
    before. Returns it."""
    settings = log_settings() if log_format is None or level is None else None
    chosen = log_format or (settings.log_format if settings else "text")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(
        json_formatter() if chosen == "json" else logging.Formatter(TEXT_FORMAT, "%H:%M:%S")
    )
    for record_filter in filters:
        handler.addFilter(record_filter)
    handler.set_name("alembic_pgsafe")
    root = logging.getLogger()
    for old in list(root.handlers):
        if _console(old):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level or (settings.log_level if settings else "INFO"))
    for name in OWN_HANDLERS:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            if _console(old):
                logger.removeHandler(old)
        logger.propagate = True
    return handler


def _console(handler: logging.Handler) -> bool:
    """A handler that writes to the terminal (this module's, ``basicConfig``'s, alembic.ini's,
    uvicorn's), not one a test or a platform's agent added to collect records."""
    if handler.get_name() == "alembic_pgsafe":
        return True
    stream = getattr(handler, "stream", None)
    return type(handler) is logging.StreamHandler and stream in (
        sys.stderr,
        sys.stdout,
        sys.__stderr__,
        sys.__stdout__,
    )


class RevisionEvents(logging.Filter):
    """Each revision a migration run applies, as two events with fields.

    ``migration.revision.started``: Alembic's own "Running upgrade a -> b" line (this filter on
    its logger adds the fields: ``revision``, ``down_revision``, ``direction``).
    ``migration.revision.finished``: logged by :meth:`applied`, Alembic's ``on_version_apply``
    callback, with ``duration_seconds``; ``migration.revision.failed`` by :meth:`failed`.
    """

    def __init__(self) -> None:
        super().__init__()
        self._started = time.monotonic()
        self._running: dict[str, Any] | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        step = record.args[0] if isinstance(record.args, tuple) and record.args else None
        info = getattr(step, "info", None)
        if isinstance(info, MigrationInfo):
            self._started = time.monotonic()
            self._running = _step_fields(info)
            record.__dict__.update(event="migration.revision.started", **self._running)
        return True

    def applied(
        self,
        ctx: MigrationContext,
        step: MigrationInfo,
        heads: Collection[Any],
        run_args: Mapping[str, Any],
    ) -> None:
        fields = _step_fields(step)
        seconds = round(time.monotonic() - self._started, 3)
        self._running = None
        event_log.info(
            "%s %s done in %.2f s",
            fields["direction"],
            fields["revision"],
            seconds,
            extra={"event": "migration.revision.finished", **fields, "duration_seconds": seconds},
        )
        self._started = time.monotonic()

    def failed(self, error: BaseException) -> None:
        if self._running is None:
            return
        seconds = round(time.monotonic() - self._started, 3)
        fields, self._running = self._running, None
        event_log.error(
            "%s %s failed after %.2f s: %s",
            fields["direction"],
            fields["revision"],
            seconds,
            type(error).__name__,
            extra={
                "event": "migration.revision.failed",
                **fields,
                "duration_seconds": seconds,
                "error": type(error).__name__,
            },
        )


event_log = logging.getLogger("alembic.env")


def _step_fields(info: MigrationInfo) -> dict[str, Any]:
    return {
        "revision": " ".join(info.up_revision_ids) or None,
        "down_revision": " ".join(info.down_revision_ids) or None,
        "direction": "upgrade" if info.is_upgrade else "downgrade",
    }
