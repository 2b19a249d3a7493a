"""The service's logs: one setup for the app, uvicorn, SQLAlchemy, Alembic and the migration
toolkit (``alembic_pgsafe.logs``).

``LOG_FORMAT=json`` (the image's default) writes one JSON object per line: ``time``, ``level``,
``logger``, ``message``, the record's own fields and, inside a request, ``request_id``. That id
is the request's ``X-Request-ID`` header (a load balancer's or a caller's), or a new one, and the
response sends it back: a 503 a user reports leads to the log line of the database failure
behind it. ``LOG_FORMAT=text`` (the default) is for a terminal; ``LOG_LEVEL`` sets the level.
"""

import logging
import re

from alembic_pgsafe.logs import configure_logging
from asgi_correlation_id import CorrelationIdMiddleware, correlation_id
from fastapi import FastAPI

REQUEST_ID_HEADER = "X-Request-ID"
# An id from outside is kept when it is a plain token (a UUID, a load balancer's trace id);
# anything else is replaced, so a log line never carries a caller's arbitrary text.
_ACCEPTED_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestId(logging.Filter):
    """Adds ``request_id`` to each record logged while a request is served."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = correlation_id.get()
        if request_id is not None:
            record.request_id = request_id
        return True


def _accepted(value: str) -> bool:
    return _ACCEPTED_ID.fullmatch(value) is not None


def setup_logging() -> None:
    """Every logger through one handler, in ``LOG_FORMAT``, with the request's id."""
    configure_logging(filters=[RequestId()])
    # /health and /metrics read the database's revision through Alembic, which says at INFO
    # how it would migrate ("Context impl PostgresqlImpl."): nothing the app does.
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)


def add_request_ids(app: FastAPI) -> None:
    """Take each request's id from ``X-Request-ID`` (or make one) and send it back."""
    app.add_middleware(CorrelationIdMiddleware, header_name=REQUEST_ID_HEADER, validator=_accepted)
