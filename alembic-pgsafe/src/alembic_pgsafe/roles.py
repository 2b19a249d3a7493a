"""``make db-roles``: the two roles the service uses its database with, and their privileges.

    python -m <package>.migration_toolkit roles [--prefix NAME]

Run once per database by someone allowed to create roles: a superuser, or a role with
CREATEROLE that may act as the roles it creates (on PostgreSQL 16 and later, with
``createrole_self_grant = 'set, inherit'``). It connects with ADMIN_DATABASE_URL (or the file
ADMIN_DATABASE_URL_FILE names), else DATABASE_URL, and makes sure of the following, in one
transaction (a failure changes nothing):

- ``<prefix>_migrator`` (MIGRATIONS_DATABASE_URL: Alembic and the backfill runner) may log in,
  NOSUPERUSER NOCREATEDB NOCREATEROLE; CONNECT and CREATE on the database, USAGE and CREATE on
  schema ``public``. It owns what the migrations create, and whatever ``public`` already holds
  is handed over to it: later revisions alter, replace or drop those objects, which only their
  owner may do.
- ``<prefix>_app`` (DATABASE_URL: the service) may log in, with the same attributes; CONNECT on
  the database, USAGE on ``public``, SELECT, INSERT, UPDATE and DELETE on the tables there,
  USAGE and SELECT on the sequences: rows, never the schema.
- The migrator's default privileges give the app those rights on every table, sequence and
  schema the migrator creates later: a revision needs no GRANT.
- PUBLIC may not CREATE in ``public``: PostgreSQL 15's default, but not that of a database
  upgraded from an older release.

It prints one line per item: what it did, or that it was already in place (all of them, on a
second run). The prefix is the package's name unless DB_ROLES_PREFIX or ``--prefix`` says
otherwise. Passwords are optional, from DB_MIGRATOR_PASSWORD and DB_APP_PASSWORD: each is sent
as a SCRAM-SHA-256 verifier computed here, as psql's ``\\password`` does, so the clear password
reaches neither the server, nor its logs, nor this command's output. Unset, a role's password
is left as it is (none, for trust, peer or certificate authentication).
"""

import argparse
import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import stringprep
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from alembic_pgsafe.connect import (
    DatabaseTarget,
    database_target,
    describe_failure,
    show_traceback,
)
from alembic_pgsafe.helpers import literal_sql
from alembic_pgsafe.settings import SettingsError, get_settings, project_prefix

__all__ = [
    "APP_ON_EXISTING",
    "APP_ON_NEW",
    "DEFAULT_PREFIX",
    "SCHEMA",
    "Roles",
    "RolesError",
    "RolesSettings",
    "admin_url",
    "apply_roles",
    "create_roles",
    "failure_line",
    "main",
    "scram_matches",
    "scram_sha_256_verifier",
]


DEFAULT_PREFIX = project_prefix()
SCHEMA = "public"
APPLICATION_NAME = "db-roles"
ROLE_NAME = re.compile(r"[a-z0-9_]+")
MAX_NAME = 63
"""PostgreSQL cuts longer names short, silently but for a NOTICE."""
ATTRIBUTES = {
    "rolcanlogin": ("LOGIN", True),
    "rolsuper": ("SUPERUSER", False),
    "rolcreatedb": ("CREATEDB", False),
    "rolcreaterole": ("CREATEROLE", False),
}
"""pg_roles column: (keyword, wanted). The keyword with NO in front when not wanted."""
SCRAM_ITERATIONS = 4096
SCRAM_SALT_BYTES = 16

# (kind in GRANT, relkinds, privileges of the app) on what a schema holds already...
APP_ON_EXISTING = (
    ("TABLES", ["r", "p", "v", "m", "f"], ["SELECT", "INSERT", "UPDATE", "DELETE"]),
    ("SEQUENCES", ["S"], ["USAGE", "SELECT"]),
)
# ...and (kind in ALTER DEFAULT PRIVILEGES, pg_default_acl.defaclobjtype, privileges) on what
# the migrator creates later.
APP_ON_NEW = (
    ("TABLES", "r", ["SELECT", "INSERT", "UPDATE", "DELETE"]),
    ("SEQUENCES", "S", ["USAGE", "SELECT"]),
    ("SCHEMAS", "n", ["USAGE"]),
)

# Each "..._MISSING" query: what the grantee lacks of :privileges. Only grants to it by name
# count, not PUBLIC's: PUBLIC's CONNECT and USAGE on public may be revoked later, the app's stay.
DATABASE_MISSING = sa.text(
    "SELECT NOT CAST(:privileges AS text[]) <@ ARRAY("
    "SELECT a.privilege_type FROM pg_database AS d CROSS JOIN LATERAL aclexplode(d.datacl) AS a"
    " JOIN pg_roles AS r ON r.oid = a.grantee"
    " WHERE d.datname = current_database() AND r.rolname = :grantee)"
)
SCHEMA_MISSING = sa.text(
    "SELECT NOT CAST(:privileges AS text[]) <@ ARRAY("
    "SELECT a.privilege_type FROM pg_namespace AS n CROSS JOIN LATERAL aclexplode(n.nspacl) AS a"
    " JOIN pg_roles AS r ON r.oid = a.grantee WHERE n.nspname = :schema AND r.rolname = :grantee)"
)
DEFAULT_MISSING = sa.text(
    "SELECT NOT CAST(:privileges AS text[]) <@ ARRAY("
    "SELECT a.privilege_type FROM pg_default_acl AS d"
    " CROSS JOIN LATERAL aclexplode(d.defaclacl) AS a"
    " JOIN pg_roles AS o ON o.oid = d.defaclrole JOIN pg_roles AS r ON r.oid = a.grantee"
    " WHERE o.rolname = :owner AND d.defaclnamespace = 0 AND CAST(d.defaclobjtype AS text) = :kind"
    " AND r.rolname = :grantee)"
)
RELATIONS_MISSING = sa.text(
    "SELECT count(*) FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
    " WHERE n.nspname = :schema AND CAST(c.relkind AS text) = ANY (CAST(:relkinds AS text[]))"
    " AND NOT CAST(:privileges AS text[]) <@ ARRAY("
    "SELECT a.privilege_type FROM aclexplode(c.relacl) AS a"
    " JOIN pg_roles AS r ON r.oid = a.grantee WHERE r.rolname = :grantee)"
)
"""How many relations of these kinds lack one of the privileges."""
PUBLIC_MAY_CREATE = sa.text("SELECT has_schema_privilege('public', :schema, 'CREATE')")
ROLE = sa.text(
    "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = :name"
)
STORED_PASSWORD = sa.text(
    "SELECT rolpassword FROM pg_authid"
    " WHERE has_table_privilege('pg_catalog.pg_authid', 'SELECT') AND rolname = :name"
)
"""The role's verifier, or nothing when this session may not read pg_authid (no superuser)."""

# Objects of the schema another role than the migrator owns. Not an extension's members, nor
# what belongs to another object and follows it: a sequence of a column (serial, identity), a
# range type's constructors and multirange.
ALIEN_RELATIONS = sa.text(
    "SELECT c.relname AS name, CAST(c.relkind AS text) AS kind,"
    " pg_get_userbyid(c.relowner) AS owner"
    " FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
    " WHERE n.nspname = :schema AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')"
    " AND pg_get_userbyid(c.relowner) <> :migrator"
    " AND NOT EXISTS (SELECT 1 FROM pg_depend AS d"
    " WHERE d.objid = c.oid AND d.classid = 'pg_class'::regclass"
    " AND (d.deptype = 'e' OR c.relkind = 'S' AND d.deptype IN ('a', 'i')))"
    " ORDER BY c.relkind = 'S', c.relname"
)
ALIEN_ROUTINES = sa.text(
    "SELECT p.proname AS name, pg_get_function_identity_arguments(p.oid) AS arguments,"
    " pg_get_userbyid(p.proowner) AS owner"
    " FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace"
    " WHERE n.nspname = :schema AND pg_get_userbyid(p.proowner) <> :migrator"
    " AND NOT EXISTS (SELECT 1 FROM pg_depend AS d"
    " WHERE d.objid = p.oid AND d.classid = 'pg_proc'::regclass AND d.deptype IN ('e', 'i'))"
    " ORDER BY p.proname, p.oid"
)
# Enums, domains, ranges and free-standing composite types: not arrays or a table's row type,
# which follow their element or their table.
ALIEN_TYPES = sa.text(
    "SELECT t.typname AS name, CAST(t.typtype AS text) AS kind,"
    " pg_get_userbyid(t.typowner) AS owner"
    " FROM pg_type AS t JOIN pg_namespace AS n ON n.oid = t.typnamespace"
    " LEFT JOIN pg_class AS c ON c.oid = t.typrelid"
    " WHERE n.nspname = :schema AND pg_get_userbyid(t.typowner) <> :migrator"
    " AND (t.typtype IN ('e', 'd', 'r') OR c.relkind = 'c')"
    " AND NOT EXISTS (SELECT 1 FROM pg_depend AS d"
    " WHERE d.objid = t.oid AND d.classid = 'pg_type'::regclass AND d.deptype IN ('e', 'i'))"
    " ORDER BY t.typname"
)
RELATION_KINDS = {
    "r": "TABLE",
    "p": "TABLE",
    "v": "VIEW",
    "m": "MATERIALIZED VIEW",
    "f": "FOREIGN TABLE",
    "S": "SEQUENCE",
}


@dataclass(frozen=True)
class Roles:
    """The names of the two roles: ``<prefix>_migrator`` and ``<prefix>_app``."""

    migrator: str
    app: str

    def __post_init__(self) -> None:
        for name in (self.migrator, self.app):
            if not ROLE_NAME.fullmatch(name) or len(name) > MAX_NAME:
                msg = (
                    f"role name {name!r}: lower-case letters, digits and underscores, at most"
                    f" {MAX_NAME} of them; pass a shorter --prefix"
                )
                raise ValueError(msg)

    @classmethod
    def for_prefix(cls, prefix: str = DEFAULT_PREFIX) -> "Roles":
        return cls(migrator=f"{prefix}_migrator", app=f"{prefix}_app")


# --- passwords ---------------------------------------------------------------------------------

PROHIBITED = (
    stringprep.in_table_a1,
    stringprep.in_table_c12,
    stringprep.in_table_c21_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
)


def _bidi_ok(text: str) -> bool:
    """RFC 3454, section 6: text with right-to-left characters has no left-to-right ones, and
    begins and ends with right-to-left ones."""
    if not any(map(stringprep.in_table_d1, text)):
        return True
    ends = stringprep.in_table_d1(text[0]) and stringprep.in_table_d1(text[-1])
    return ends and not any(map(stringprep.in_table_d2, text))


def saslprep(password: str) -> bytes:
    """The bytes SCRAM hashes: the password after SASLprep (RFC 4013), as PostgreSQL, libpq and
    asyncpg prepare it. ASCII stays as it is; so does a password SASLprep would refuse."""
    if password.isascii():
        return password.encode()
    mapped = "".join(
        " " if stringprep.in_table_c12(char) else char
        for char in password
        if not stringprep.in_table_b1(char)
    )
    prepared = unicodedata.normalize("NFKC", mapped)
    if any(check(char) for char in prepared for check in PROHIBITED) or not _bidi_ok(prepared):
        return password.encode()
    return prepared.encode()


def _scram_keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    """(StoredKey, ServerKey) of RFC 5802, with SHA-256 (RFC 7677)."""
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password), salt, iterations)
    stored_key = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    return stored_key, hmac.digest(salted, b"Server Key", "sha256")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def scram_sha_256_verifier(
    password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS
) -> str:
    """What PostgreSQL stores for ``password`` (RFC 5803 format):
    ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``, in base64. Sent in
    ``ALTER ROLE ... PASSWORD``, it is stored as it is: the server never sees the password."""
    salt = secrets.token_bytes(SCRAM_SALT_BYTES) if salt is None else salt
    stored_key, server_key = _scram_keys(password, salt, iterations)
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def scram_matches(verifier: str, password: str) -> bool:
    """Is ``verifier`` (a ``pg_authid.rolpassword``) the one of ``password``?"""
    match = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)", verifier)
    if match is None:
        return False
    iterations, salt, stored_key, server_key = match.groups()
    expected = _scram_keys(password, base64.b64decode(salt), int(iterations))
    stored = (base64.b64decode(stored_key), base64.b64decode(server_key))
    return all(map(hmac.compare_digest, expected, stored))


# --- what it makes sure of ---------------------------------------------------------------------


class RolesError(Exception):
    """Something ``make db-roles`` could not make sure of, said in one line."""


def _run(connection: Connection, what: str, done: str, statement: str) -> str:
    """Run ``statement`` (its identifiers quoted, no value in it); say ``what`` was ``done``."""
    connection.execute(literal_sql(statement))
    return f"{what}: {done}"


def _in_place(what: str) -> str:
    return f"{what}: already in place"


def _grant(
    connection: Connection,
    what: str,
    statement: str,
    missing: sa.TextClause,
    done: str = "granted",
    **params: object,
) -> str:
    """``statement`` (a GRANT or REVOKE), unless ``missing`` finds nothing to do. Asked again
    afterwards: PostgreSQL only warns when the session may not grant a privilege."""
    before = connection.execute(missing, params).scalar_one()
    if not before:
        return _in_place(what)
    connection.execute(literal_sql(statement))
    if connection.execute(missing, params).scalar_one():
        msg = (
            f"{what}: still missing after {statement.split()[0]}: connect as a superuser or"
            " as the owner of the database and its objects"
        )
        raise RolesError(msg)
    return f"{what}: {done}" if before is True else f"{what}: {done} on {before}"


def ensure_role(connection: Connection, name: str) -> str:
    """The role exists and may log in; it is no superuser and creates no database or role."""
    wanted = {column: key if on else f"NO{key}" for column, (key, on) in ATTRIBUTES.items()}
    what = f"role {name} ({' '.join(wanted.values())})"
    role = connection.execute(ROLE, {"name": name}).mappings().first()
    quoted = connection.dialect.identifier_preparer.quote(name)
    if role is None:
        statement = f"CREATE ROLE {quoted} {' '.join(wanted.values())}"
        return _run(connection, what, "created", statement)
    # Only what differs: naming SUPERUSER at all takes a superuser, even to say NO.
    wrong = " ".join(key for column, key in wanted.items() if role[column] != ATTRIBUTES[column][1])
    if not wrong:
        return _in_place(what)
    return _run(connection, what, f"set {wrong}", f"ALTER ROLE {quoted} {wrong}")


def ensure_password(
    connection: Connection, name: str, password: SecretStr | None, variable: str
) -> str:
    """The role's password, when ``variable`` gives one; else the role's is left alone."""
    if password is None or not password.get_secret_value():
        return f"password of {name}: left as it is ({variable} is not set)"
    what = f"password of {name} (from {variable})"
    clear = password.get_secret_value()
    stored = connection.execute(STORED_PASSWORD, {"name": name}).scalar()
    if stored is not None and scram_matches(stored, clear):
        return _in_place(what)
    # ALTER ROLE takes no bind parameter: the verifier goes in as a literal SQLAlchemy renders.
    quoted = connection.dialect.identifier_preparer.quote(name)
    verifier: sa.BindParameter[str] = sa.bindparam(
        "verifier", scram_sha_256_verifier(clear), literal_execute=True
    )
    connection.execute(sa.text(f"ALTER ROLE {quoted} PASSWORD :verifier").bindparams(verifier))
    return f"{what}: set, as a SCRAM-SHA-256 verifier"


def ensure_database_privileges(connection: Connection, roles: Roles) -> list[str]:
    database = connection.execute(sa.select(sa.func.current_database())).scalar_one()
    quote = connection.dialect.identifier_preparer.quote
    return [
        _grant(
            connection,
            f"database {database}: {', '.join(privileges)} for {role}",
            f"GRANT {', '.join(privileges)} ON DATABASE {quote(database)} TO {quote(role)}",
            DATABASE_MISSING,
            privileges=privileges,
            grantee=role,
        )
        for role, privileges in ((roles.migrator, ["CONNECT", "CREATE"]), (roles.app, ["CONNECT"]))
    ]


def ensure_schema_privileges(connection: Connection, roles: Roles, schema: str) -> list[str]:
    quote = connection.dialect.identifier_preparer.quote
    no_public_create = _grant(
        connection,
        f"schema {schema}: no CREATE for PUBLIC",
        f"REVOKE CREATE ON SCHEMA {quote(schema)} FROM PUBLIC",
        PUBLIC_MAY_CREATE,
        "revoked",
        schema=schema,
    )
    return [no_public_create] + [
        _grant(
            connection,
            f"schema {schema}: {', '.join(privileges)} for {role}",
            f"GRANT {', '.join(privileges)} ON SCHEMA {quote(schema)} TO {quote(role)}",
            SCHEMA_MISSING,
            privileges=privileges,
            grantee=role,
            schema=schema,
        )
        for role, privileges in ((roles.migrator, ["USAGE", "CREATE"]), (roles.app, ["USAGE"]))
    ]


def hand_over(connection: Connection, roles: Roles, schema: str) -> list[str]:
    """Whatever another role owns in ``schema`` (tables, views, sequences, functions, types)
    becomes the migrator's: the revisions that alter it run as the migrator."""
    quote = connection.dialect.identifier_preparer.quote
    params = {"schema": schema, "migrator": roles.migrator}
    found = []  # (what, ALTER ... OWNER TO statement)
    for relation in connection.execute(ALIEN_RELATIONS, params):
        kind = RELATION_KINDS[relation.kind]
        target = f"{kind} {quote(schema)}.{quote(relation.name)}"
        found.append((f"{kind.lower()} {schema}.{relation.name}", relation.owner, target))
    for routine in connection.execute(ALIEN_ROUTINES, params):
        # The arguments as PostgreSQL writes them (types quoted where needed): they tell
        # overloaded functions apart.
        target = f"ROUTINE {quote(schema)}.{quote(routine.name)}({routine.arguments})"
        what = f"function {schema}.{routine.name}({routine.arguments})"
        found.append((what, routine.owner, target))
    for type_ in connection.execute(ALIEN_TYPES, params):
        kind = "DOMAIN" if type_.kind == "d" else "TYPE"
        target = f"{kind} {quote(schema)}.{quote(type_.name)}"
        found.append((f"{kind.lower()} {schema}.{type_.name}", type_.owner, target))
    if not found:
        return [_in_place(f"schema {schema}: everything owned by {roles.migrator}")]
    return [
        _run(
            connection,
            f"{what} (owned by {owner})",
            f"handed over to {roles.migrator}",
            f"ALTER {target} OWNER TO {quote(roles.migrator)}",
        )
        for what, owner, target in found
    ]


def grant_existing(connection: Connection, roles: Roles, schema: str) -> list[str]:
    """The app's privileges on the tables and sequences ``schema`` holds already."""
    quote = connection.dialect.identifier_preparer.quote
    return [
        _grant(
            connection,
            f"{kind.lower()} in schema {schema}: {', '.join(privileges)} for {roles.app}",
            f"GRANT {', '.join(privileges)} ON ALL {kind} IN SCHEMA {quote(schema)}"
            f" TO {quote(roles.app)}",
            RELATIONS_MISSING,
            privileges=privileges,
            grantee=roles.app,
            schema=schema,
            relkinds=relkinds,
        )
        for kind, relkinds, privileges in APP_ON_EXISTING
    ]


def ensure_default_privileges(connection: Connection, roles: Roles) -> list[str]:
    """What the migrator creates later, in any schema, the app may use at once."""
    quote = connection.dialect.identifier_preparer.quote
    return [
        _grant(
            connection,
            f"new {kind.lower()} of {roles.migrator}: {', '.join(privileges)} for {roles.app}",
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {quote(roles.migrator)}"
            f" GRANT {', '.join(privileges)} ON {kind} TO {quote(roles.app)}",
            DEFAULT_MISSING,
            privileges=privileges,
            grantee=roles.app,
            owner=roles.migrator,
            kind=defaclobjtype,
        )
        for kind, defaclobjtype, privileges in APP_ON_NEW
    ]


def apply_roles(
    connection: Connection,
    roles: Roles,
    *,
    migrator_password: SecretStr | None = None,
    app_password: SecretStr | None = None,
) -> list[str]:
    """Everything ``make db-roles`` makes sure of, in the caller's transaction; a line each."""
    return [
        ensure_role(connection, roles.migrator),
        ensure_password(connection, roles.migrator, migrator_password, "DB_MIGRATOR_PASSWORD"),
        ensure_role(connection, roles.app),
        ensure_password(connection, roles.app, app_password, "DB_APP_PASSWORD"),
        *ensure_database_privileges(connection, roles),
        *ensure_schema_privileges(connection, roles, SCHEMA),
        *hand_over(connection, roles, SCHEMA),
        *grant_existing(connection, roles, SCHEMA),
        *ensure_default_privileges(connection, roles),
    ]


# --- the command -------------------------------------------------------------------------------


class RolesSettings(BaseSettings):
    """What ``make db-roles`` reads from the environment, then from ``.env``."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    admin_database_url: str | None = Field(default=None, repr=False)
    """A role allowed to create roles; unset: DATABASE_URL's (or DATABASE_URL_FILE's)."""
    admin_database_url_file: Path | None = None
    """A file holding ADMIN_DATABASE_URL (a Docker or Kubernetes secret)."""
    db_roles_prefix: str = DEFAULT_PREFIX
    db_migrator_password: SecretStr | None = None
    db_app_password: SecretStr | None = None
    database_connect_timeout: float = Field(default=5.0, gt=0)


def admin_url(settings: RolesSettings) -> str:
    """ADMIN_DATABASE_URL, its file's, else the service's DATABASE_URL."""
    if settings.admin_database_url:
        return settings.admin_database_url
    if settings.admin_database_url_file is not None:
        try:
            return settings.admin_database_url_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            msg = f"ADMIN_DATABASE_URL_FILE: cannot read {settings.admin_database_url_file}"
            raise SettingsError(f"{msg}: {exc.strerror}") from None
    return get_settings().database_url


async def create_roles(
    target: DatabaseTarget,
    roles: Roles,
    *,
    migrator_password: SecretStr | None = None,
    app_password: SecretStr | None = None,
    connect_timeout: float = 5.0,
) -> list[str]:
    """:func:`apply_roles` on the database, in one transaction."""
    engine = create_async_engine(
        target.url,
        poolclass=NullPool,
        connect_args=target.connect_args(
            timeout=connect_timeout, server_settings={"application_name": APPLICATION_NAME}
        ),
    )
    try:
        async with engine.begin() as connection:
            return await connection.run_sync(
                apply_roles, roles, migrator_password=migrator_password, app_password=app_password
            )
    finally:
        await engine.dispose()


def failure_line(exc: Exception, target: DatabaseTarget) -> str | None:
    """One line on why it failed, naming ``user@host:port/database``; None: not a database's
    error (a bug, whose traceback says more)."""
    failure = describe_failure(exc)
    if failure is not None:
        return f"{failure.line(target.where)} (SHOW_TRACEBACK=1 for the traceback)"
    if isinstance(exc, DBAPIError):  # refused by the server: no right to create roles, say
        message = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else repr(exc)
        return f"{target.where}: {message}; nothing was changed"
    if isinstance(exc, RolesError):
        return f"{target.where}: {exc}; nothing was changed"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="alembic-pgsafe roles",
        description="Create the migrator and app roles of this database, with their privileges"
        " (make db-roles). Idempotent: a second run changes nothing.",
        epilog="Connects with ADMIN_DATABASE_URL (or ADMIN_DATABASE_URL_FILE), else DATABASE_URL."
        " Passwords, both optional: DB_MIGRATOR_PASSWORD, DB_APP_PASSWORD.",
    )
    parser.add_argument(
        "--prefix",
        help="the roles are PREFIX_migrator and PREFIX_app (default: DB_ROLES_PREFIX, else"
        f" {DEFAULT_PREFIX})",
    )
    arguments = parser.parse_args(argv)
    try:
        settings = RolesSettings()
        roles = Roles.for_prefix(arguments.prefix or settings.db_roles_prefix)
        target = database_target(admin_url(settings))
    except ValidationError as exc:
        print(f"db-roles: {SettingsError.from_validation(exc)}", file=sys.stderr)
        return 2
    except ValueError as exc:  # SettingsError too: never quotes a URL
        print(f"db-roles: {exc}", file=sys.stderr)
        return 2
    try:
        lines = asyncio.run(
            create_roles(
                target,
                roles,
                migrator_password=settings.db_migrator_password,
                app_password=settings.db_app_password,
                connect_timeout=settings.database_connect_timeout,
            )
        )
    except Exception as exc:
        line = failure_line(exc, target)
        if line is None or show_traceback():
            raise
        print(f"db-roles: {line}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0
