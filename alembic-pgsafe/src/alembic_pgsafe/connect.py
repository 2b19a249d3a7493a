"""How the toolkit (and a service using it) reaches PostgreSQL, and what it says when it cannot.

- **URLs as providers write them.** libpq's parameters in the query string (``sslmode``,
  ``sslrootcert``, ``sslcert``, ``sslkey``, ``sslpassword``, ``sslcrl``, ``connect_timeout``,
  ``application_name``) are not asyncpg's keyword arguments; :func:`database_target` takes them
  out of the URL and hands them to asyncpg the way asyncpg reads them from a DSN, so ``sslmode``
  means what it means for libpq (``require`` encrypts, ``verify-full`` also checks the CA and the
  host name). ``sslrootcert=system`` trusts the operating system's CAs.
- **One line per failure.** :func:`describe_failure` turns whatever connecting raised (refused,
  timeout, unknown host, missing database or role, wrong password, TLS) into one line naming
  ``user@host:port/database`` (never the password) and what to check. Command lines print that
  line and exit non-zero; ``SHOW_TRACEBACK=1`` shows the whole traceback instead.
- **A pooler nobody declared.** :func:`through_transaction_pooler` tells whether a connection
  goes through a pooler in transaction mode (PgBouncer's ``pool_mode = transaction``): the deploy
  lock, session settings and ``CREATE INDEX CONCURRENTLY`` need one server connection throughout.
"""

import os
import re
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

import asyncpg
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = [
    "POOLER_DETECTED",
    "SSLMODES",
    "Cause",
    "ConnectionFailure",
    "DatabaseTarget",
    "create_engine",
    "database_target",
    "describe_failure",
    "failure_line",
    "show_traceback",
    "through_transaction_pooler",
    "to_asyncpg_url",
    "where",
]

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# Passed to asyncpg as a DSN's query, which asyncpg reads with libpq's meaning.
_TLS_PARAMETERS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "sslcrl")
_POSTGRES_SCHEMES = {"postgres", "postgresql", "postgresql+asyncpg"}

Cause = Literal[
    "refused",
    "timeout",
    "unknown host",
    "authentication",
    "database missing",
    "tls",
    "unavailable",
    "configuration",
    "pooler",
    "lost",
]


def to_asyncpg_url(value: str | URL) -> URL:
    """Parse a PostgreSQL URL and make it use the asyncpg driver.

    ``postgres://`` and ``postgresql://`` URLs, as hosting providers hand them out, are accepted;
    any other scheme (another database or driver) is refused with a message naming it, never
    the URL (it may hold a password).
    """
    try:
        url = make_url(value)
    except Exception:  # SQLAlchemy's message would quote the URL
        msg = "not a URL: expected postgresql://user@host:port/database"
        raise ValueError(msg) from None
    if url.drivername not in _POSTGRES_SCHEMES:
        msg = f"expected a PostgreSQL URL (postgresql://...), got scheme {url.drivername!r}"
        raise ValueError(msg)
    sslmode = url.query.get("sslmode")
    if sslmode is not None and sslmode not in SSLMODES:
        msg = f"sslmode must be one of {', '.join(SSLMODES)}; got {sslmode!r}"
        raise ValueError(msg)
    return url.set(drivername="postgresql+asyncpg")


@dataclass(frozen=True)
class DatabaseTarget:
    """A URL split into what SQLAlchemy's URL carries and what asyncpg takes as options."""

    url: URL
    """The URL without libpq's TLS and timeout parameters: SQLAlchemy passes it to asyncpg."""
    options: dict[str, Any] = field(default_factory=dict)
    """asyncpg's options: ``dsn`` (the TLS parameters), ``ssl``, ``timeout``."""

    @property
    def where(self) -> str:
        """``user@host:port/database``, never the password."""
        return where(self.url)

    def connect_args(self, *, timeout: float | None = None, **extra: Any) -> dict[str, Any]:
        """The options for ``create_async_engine(connect_args=...)``; a URL's connect_timeout
        wins over ``timeout``."""
        options: dict[str, Any] = dict(extra)
        if timeout is not None:
            options["timeout"] = timeout
        return options | self.options

    def asyncpg_arguments(self, *, timeout: float | None = None) -> dict[str, Any]:
        """Keyword arguments for ``asyncpg.connect`` itself: a DSN with the URL's query (a Unix
        socket's ``host``, say) and the TLS parameters."""
        arguments = self.connect_args(timeout=timeout)
        tls = parse_qsl(urlsplit(arguments.pop("dsn", "")).query)
        dsn = self.url.set(drivername="postgresql", query={**self.url.query, **dict(tls)})
        return arguments | {"dsn": dsn.render_as_string(hide_password=False)}


def _system_ca_context(sslmode: str) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = sslmode == "verify-full"
    return context


def database_target(value: str | URL) -> DatabaseTarget:
    """Split a PostgreSQL URL (libpq's parameters allowed) into SQLAlchemy's URL and asyncpg's
    options."""
    url = to_asyncpg_url(value)
    query = dict(url.query)
    options: dict[str, Any] = {}
    tls = {key: str(query.pop(key)) for key in _TLS_PARAMETERS if key in query}
    if "connect_timeout" in query:
        options["timeout"] = float(str(query.pop("connect_timeout")))
    if "application_name" in query:
        options["server_settings"] = {"application_name": str(query.pop("application_name"))}
    if tls.get("sslrootcert") == "system":
        # libpq 16's "trust the system's CAs"; asyncpg would look for a file named "system".
        sslmode = tls.pop("sslmode", "verify-full")
        del tls["sslrootcert"]
        if sslmode in ("require", "verify-ca", "verify-full"):
            context = _system_ca_context(sslmode)
            if "sslcert" in tls:
                context.load_cert_chain(tls.pop("sslcert"), tls.pop("sslkey", None))
            options["ssl"] = context
        else:
            tls["sslmode"] = sslmode
    if tls:
        # asyncpg reads a DSN's query as libpq does; the host, port, user and database still
        # come from the URL's parts, which SQLAlchemy passes as keyword arguments.
        options["dsn"] = f"postgresql://?{urlencode(tls)}"
    return DatabaseTarget(url=url.set(query=query), options=options)


def create_engine(url: str | URL, *, timeout: float | None = None, **options: Any) -> AsyncEngine:
    """``create_async_engine`` for a URL that may carry libpq's parameters (``sslmode``...)."""
    target = database_target(url)
    connect_args = target.connect_args(timeout=timeout, **options.pop("connect_args", {}))
    return create_async_engine(target.url, connect_args=connect_args, **options)


def where(url: URL | str) -> str:
    """``user@host:port/database`` of a URL, never its password."""
    parsed = make_url(url) if isinstance(url, str) else url
    user = parsed.username or os.environ.get("PGUSER") or "(default user)"
    # A Unix socket's folder may come as the query's host (?host=/run/postgresql).
    host = parsed.host or str(parsed.query.get("host") or "localhost")
    port = parsed.port or str(parsed.query.get("port") or 5432)
    return f"{user}@{host}:{port}/{parsed.database or user}"


@dataclass(frozen=True)
class ConnectionFailure:
    """Why connecting failed, as one line a person can act on."""

    cause: Cause
    detail: str

    def line(self, where: str) -> str:
        if self.cause == "lost":
            return f"lost the connection to {where}: {self.detail}"
        return f"cannot connect to {where}: {self.detail}"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for attribute in ("orig", "__cause__", "__context__"):
            linked = getattr(current, attribute, None)
            if isinstance(linked, BaseException):
                pending.append(linked)
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)


_MISSING_DATABASE = re.compile(r'database ".*" does not exist|no such database')


def _lost(error: BaseException, message: str) -> bool:
    """The server hung up on a connection that was working: PostgreSQL stopping
    (``terminating connection due to administrator command``), a reset, a closed socket."""
    if isinstance(error, asyncpg.AdminShutdownError | asyncpg.ConnectionDoesNotExistError):
        return True
    if isinstance(error, ConnectionResetError | BrokenPipeError):
        return True
    return isinstance(error, ConnectionError) and "connection_lost" in message


def describe_failure(exc: BaseException) -> ConnectionFailure | None:
    """Why connecting failed, or None when ``exc`` is not a failure to connect."""
    for error in _chain(exc):
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        if any(marker in message for marker in _POOLED_STATEMENT_ERRORS):
            return ConnectionFailure("pooler", POOLER_DETECTED.format(where="it"))
        if isinstance(error, asyncpg.InvalidPasswordError):
            return ConnectionFailure(
                "authentication", f"{message}: check the password in the URL or its secret file"
            )
        if isinstance(error, asyncpg.InvalidCatalogNameError) or _MISSING_DATABASE.search(message):
            return ConnectionFailure(
                "database missing", f"{message}: create it, or fix the URL's database name"
            )
        if "authentication failed" in message:  # through PgBouncer: a ProtocolViolationError
            return ConnectionFailure(
                "authentication", f"{message}: check the user and password in the URL"
            )
        if isinstance(error, asyncpg.InvalidAuthorizationSpecificationError):
            if "no encryption" in message:
                return ConnectionFailure(
                    "tls",
                    "the server accepts only encrypted connections here:"
                    " add ?sslmode=require (or verify-full) to the URL",
                )
            if "does not exist" in message:
                from alembic_pgsafe.settings import command_name  # settings import this module

                roles = command_name("db-roles")
                return ConnectionFailure(
                    "authentication", f"{message}: create the role ('{roles}') or fix the URL"
                )
            return ConnectionFailure(
                "authentication", f"{message}: check the user and the server's pg_hba.conf"
            )
        if isinstance(error, ssl.SSLCertVerificationError):
            reason = error.verify_message or message
            return ConnectionFailure(
                "tls",
                f"the server's certificate was refused ({reason}): check sslrootcert (the CA)"
                " and, for sslmode=verify-full, that the URL's host is a name in the certificate",
            )
        if isinstance(error, ssl.SSLError):
            return ConnectionFailure("tls", f"TLS failed ({message}): check the ssl* parameters")
        if isinstance(error, ConnectionError) and "rejected SSL upgrade" in message:
            return ConnectionFailure(
                "tls",
                "the server does not offer TLS but the URL requires it (sslmode=require or"
                " stricter): turn ssl on in the server or lower sslmode",
            )
        if isinstance(error, asyncpg.ClientConfigurationError):
            return ConnectionFailure("configuration", f"{message}: check the URL's parameters")
        if isinstance(error, asyncpg.CannotConnectNowError | asyncpg.TooManyConnectionsError):
            return ConnectionFailure("unavailable", f"{message}: try again shortly")

        if isinstance(error, socket.gaierror):
            return ConnectionFailure(
                "unknown host", "the host name does not resolve: check the URL's host (DNS)"
            )
        if isinstance(error, ConnectionRefusedError | FileNotFoundError) or (
            isinstance(error, OSError) and "Connect call failed" in message
        ):  # FileNotFoundError: no server's Unix socket at that path
            return ConnectionFailure(
                "refused",
                "connection refused: is PostgreSQL running, and listening on that host and port?",
            )
        if _lost(error, message):
            return ConnectionFailure(
                "lost", f"{message}: the server closed it (restarting?); try again shortly"
            )
        if isinstance(error, TimeoutError):
            return ConnectionFailure(
                "timeout",
                "no answer in time (DATABASE_CONNECT_TIMEOUT): check the host, the port and"
                " any firewall between",
            )
        if isinstance(error, OSError) and error.errno is not None:
            return ConnectionFailure("unavailable", f"{message}: check the URL's host and port")
    # SQLAlchemy marks a connection the server dropped mid-use as invalidated.
    if getattr(exc, "connection_invalidated", False):
        return ConnectionFailure(
            "lost", "the server closed the connection (restarting?); try again shortly"
        )
    return None


def show_traceback() -> bool:
    """``SHOW_TRACEBACK=1``: command lines raise the error itself, traceback and all."""
    return os.environ.get("SHOW_TRACEBACK", "").lower() in ("1", "true", "yes")


def failure_line(exc: Exception, where: str) -> str:
    """What a command line prints for ``exc``: one line when it is a failure to connect.

    Anything else (a bug, whose traceback says more), or any error with ``SHOW_TRACEBACK=1``,
    is raised again.
    """
    failure = describe_failure(exc)
    if failure is None or show_traceback():
        raise exc
    return f"{failure.line(where)} (SHOW_TRACEBACK=1 for the traceback)"


POOLER_DETECTED = (
    "{where} goes through a pooler in transaction mode (PgBouncer's pool_mode = transaction,"
    " say): server sessions are shared between clients. Migrations and the backfill"
    " runner need one server session for the whole run (the deploy lock, lock_timeout, CREATE"
    " INDEX CONCURRENTLY). Set MIGRATIONS_DATABASE_URL to a direct connection to PostgreSQL"
    " (and DATABASE_POOLER=pgbouncer for the app)."
)
_POOLED_STATEMENT_ERRORS = ("__asyncpg_stmt_",)


def through_transaction_pooler(connection: Connection) -> bool:
    """Does ``connection`` reach PostgreSQL through a pooler in transaction mode?

    A transaction pooler gives a server session back to its pool when a transaction ends and
    hands the most recently used one (PgBouncer's default) to the next client. So: note this
    session's server pid, end the transaction, and ask a second client of the same engine for
    its pid in a transaction of its own. Directly (or through a session pooler) the second
    client has a session of its own; through a transaction pooler it is handed this one. Ends
    with no transaction open on ``connection``.
    """
    pid_query = text("SELECT pg_backend_pid()")
    try:
        mine = connection.execute(pid_query).scalar_one()
        connection.commit()
        with connection.engine.connect() as other:
            theirs = other.execute(pid_query).scalar_one()
            other.rollback()
        again = connection.execute(pid_query).scalar_one()
        connection.commit()
    except Exception as exc:
        # asyncpg names its prepared statements per client; on a shared server session the
        # second client's collide with the first's.
        if any(marker in str(exc) for marker in _POOLED_STATEMENT_ERRORS):
            return True
        raise
    return bool(theirs == mine or again != mine)
