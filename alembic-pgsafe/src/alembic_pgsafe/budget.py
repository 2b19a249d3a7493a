"""Size a backfill's batches by how the application's own writes are doing.

Problem: every commit flushes the WAL written before it, a backfill's included, so the
application's writes wait longer while a batch is written (``IO/WALSync`` is what they wait on,
sampled during ``make bench``). How much depends on the disk, the hour and what else runs, not
on the table: the same fixed batch that costs nothing on a quiet server makes a busy one's
commits wait (``make bench`` measured the writer's p99 from 1.2x to 8x idle for one batch size,
from run to run). So the batches are sized while they run, from what commits cost:

A canary process commits a one-line transaction every few milliseconds on a connection of its
own (``pg_current_xact_id()`` gives it a transaction id, so its COMMIT waits for a WAL flush as
a write's does) and reports how long each took: first before the first batch, to learn what
commits cost with no backfill running (the p98: the tail, as an application's p99 is), then all
along. The budget is ``factor`` times that, and at least ``MIN_ALLOWANCE`` more. Each canary
commit over it shrinks the batches by about 14%; each within it grows them by a hundredth of
that, so the pace settles where 1 commit in 100 is over the budget (the canary's p99 at the
budget). Below ``min_size`` rows, pauses come between batches; batches never grow past
``target_seconds``. The log says each change of pace and why.

The budget never slows the backfill below ``min_rate`` rows per second (its floor,
MIGRATION_BACKFILL_BUDGET_MIN_RATE): on a server busy with other work the canary's commits can
stay over any budget, and the backfill would crawl (1 M rows in 111 s where 500-row batches
took 8 s, seen once). Held at the floor, it says so once a minute, with the numbers.
"""

import contextlib
import json
import logging
import math
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO, Any

from sqlalchemy import URL, Connection

from alembic_pgsafe.connect import database_target
from alembic_pgsafe.settings import get_settings

__all__ = [
    "CANARY_PROGRAM",
    "DEFAULT_BUDGET",
    "DEFAULT_MIN_RATE",
    "LatencyBudget",
    "sibling_url",
]

log = logging.getLogger("alembic.backfill")

DEFAULT_BUDGET = 2.0
"""The application's commits may take up to this many times what they took before the backfill."""
DEFAULT_MIN_RATE = 10_000
"""Rows per second the budget never slows a backfill below (0: no floor): 1 M rows in under two
minutes, 10 M in under 17, whatever the load. ``alembic-pgsafe bench --scenario load-step`` on 2
cores (PostgreSQL 15, a machine busy with other work, 2026-12-07): once the application's
writes stepped up, the budget with no floor fell from 42,000 to 840 rows/s (500,000 rows in
303 s, 0.02x one UPDATE) while 500-row batches went on at 14,600. Under that pace, the floor
still lets the budget yield more than the default batches do."""
CANARY_PROGRAM = """
import asyncio, itertools, json, ssl, sys, time
import asyncpg

async def commit_until_stopped(request):
    connect = request["connect"] | {"statement_cache_size": 0}  # a transaction pooler too
    if request["system_ca"] is not None:
        connect["ssl"] = ssl.create_default_context()
        connect["ssl"].check_hostname = request["system_ca"]
    connection = await asyncpg.connect(**connect)
    for count in itertools.count():
        started = time.monotonic()
        async with connection.transaction():
            await connection.fetchval("SELECT pg_current_xact_id()")
        print(f"{time.monotonic() - started:.6f}", flush=True)
        calibrating = count < request["calibration"]
        await asyncio.sleep(request["calibration_interval" if calibrating else "interval"])

try:
    asyncio.run(commit_until_stopped(json.loads(sys.stdin.read())))
except (BrokenPipeError, KeyboardInterrupt):
    pass
except Exception as exc:  # one line for the budget's log (never the URL: not in messages)
    sys.exit(f"{type(exc).__name__}: {exc}")
"""
"""The canary process, run with ``python -c``: imports nothing but asyncpg, so it starts fast.
Its statement takes a transaction id, so that its COMMIT flushes WAL as a write's does."""
CANARY_INTERVAL = 0.005
"""Seconds between two canary transactions (about 150 a second: a transaction id each)."""
CALIBRATION_SAMPLES = 120
"""Canary commits timed before the first batch: what commits cost without the backfill, tail
included."""
CALIBRATION_INTERVAL = 0.002
"""Seconds between two canary transactions before the first batch (a quarter of a second)."""
BASELINE_QUANTILE = 0.98
"""The calibration's latency the budget multiplies: the tail, as the application's p99 is."""
OVER_SHARE = 0.01
"""The share of canary commits that may take longer than the budget: it holds the canary's p99
(and so the application's) within the budget."""
STEP = 0.15
"""How hard one canary commit moves the batch size: one over the budget shrinks the batches by
about 14%; a hundred within it grow them by as much (the pace settles where 1% are over)."""
MIN_ALLOWANCE = 0.001
"""Seconds a commit may take over its latency before the backfill whatever the factor: on a
fast disk a commit takes a fraction of a millisecond, and any other writer doubles that."""
RECENT = 200
"""The canary commits a log line counts (about a second)."""
LOG_SECONDS = 1.0
"""A change of pace is logged at most this often (a change of direction always)."""
FLOOR_LOG_SECONDS = 60.0
"""While the floor holds the pace up, that is logged at most this often (not once a batch)."""
FLOOR_MAX_RAISE = 2.0
"""The most the floor multiplies the pace by after one batch: one batch slowed by something
else (a lock, a checkpoint) does not make the next one huge."""


def sibling_url(connection: Connection) -> URL | str:
    """Where more connections to ``connection``'s database come from: the configured URL
    with its TLS parameters when the connection was made from it, else the connection's own."""
    url = connection.engine.url
    with contextlib.suppress(Exception):  # no usable settings: the connection's URL it is
        settings = get_settings()
        for configured in (settings.alembic_database_url, settings.database_url):
            if database_target(configured).url == url:
                return configured
    return url


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


class Canary:
    """A process of its own (:data:`CANARY_PROGRAM`) that commits a one-line transaction
    every ``interval`` seconds on a connection of its own and prints how long each took; a
    thread here reads them into ``samples``.

    A process, not a thread: a thread's timings would include its waits for the runner's GIL,
    which grow as batches shrink and would read as the database getting slower.
    """

    def __init__(
        self, url: URL | str, connect_args: dict[str, Any], interval: float = CANARY_INTERVAL
    ) -> None:
        arguments = database_target(url).asyncpg_arguments(timeout=10)
        context = arguments.pop("ssl", None)  # the system's CAs (sslrootcert=system)
        # Through stdin: a password on the command line would show in ps.
        self._request = json.dumps(
            {
                "connect": arguments | {"server_settings": connect_args.get("server_settings")},
                "system_ca": None if context is None else context.check_hostname,
                "interval": interval,
                "calibration": CALIBRATION_SAMPLES,
                "calibration_interval": CALIBRATION_INTERVAL,
            }
        )
        self.interval = interval
        self.samples: list[float] = []
        self.error: str | None = None
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(  # noqa: S603 (this interpreter, this module)
            [sys.executable, "-c", CANARY_PROGRAM],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        process = self._process
        if process.stdin is None or process.stdout is None or process.stderr is None:
            raise RuntimeError("the canary process has no pipes")  # Popen above makes them
        process.stdin.write(self._request)
        process.stdin.close()
        self._reader = threading.Thread(
            target=self._read, args=(process, process.stdout, process.stderr), daemon=True
        )
        self._reader.start()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=10)

    def wait_for(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.samples) < count and self.error is None:
            if time.monotonic() > deadline:
                self.error = f"fewer than {count} canary commits in {timeout:g} s"
                return False
            time.sleep(self.interval)
        return self.error is None

    def _read(self, process: "subprocess.Popen[str]", stdout: IO[str], stderr: IO[str]) -> None:
        with stdout, stderr:
            for line in stdout:
                self.samples.append(float(line))
            returncode = process.wait()
            if returncode > 0:  # terminated by stop(): a negative code, and no error
                message = stderr.read().strip().splitlines()
                self.error = message[-1] if message else f"the canary exited with {returncode}"


@dataclass
class LatencyBudget:
    """Keep the application's commits within ``factor`` times what they cost before the
    backfill, by the size of the next batch and the pause before it.

    Used as a context manager around the batches: entering starts the canary and measures
    the baseline; :meth:`next_batch` is asked after each batch.
    """

    url: URL | str
    label: str
    factor: float = DEFAULT_BUDGET
    start_size: int = 1000
    min_size: int = 50
    max_size: int = 50_000
    target_seconds: float = 0.05
    """The longest a batch may take: batches never grow past it, whatever the budget allows."""
    max_pause: float = 1.0
    min_rate: float = DEFAULT_MIN_RATE
    """Rows per second the budget never slows the backfill below; 0: no floor."""
    connect_args: dict[str, Any] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    """What the pace is timed with (a test's fake clock)."""
    idle: float = 0.0
    """The canary's latency (BASELINE_QUANTILE) before the first batch, in seconds."""
    pause: float = 0.0
    """Seconds to wait before the next batch (the pace is below ``min_size`` rows)."""
    _canary: Canary | None = None
    _seen: int = 0
    _pace: float = 0.0
    _reported: float = 0.0
    _recent: deque[bool] = field(default_factory=lambda: deque(maxlen=RECENT))
    _direction: str = ""
    _logged_at: float = -1e9
    _last_call: float = 0.0
    _floor_logged_at: float = -math.inf
    floor_held: int = 0
    at_floor: bool = False
    """Whether the floor set the pace of the last batch."""
    """Batches whose pace the floor held up (the budget alone would have gone slower)."""

    @property
    def limit(self) -> float:
        return max(self.factor * self.idle, self.idle + MIN_ALLOWANCE)

    def __enter__(self) -> "LatencyBudget":
        canary = Canary(self.url, self.connect_args)
        canary.start()
        if not canary.wait_for(CALIBRATION_SAMPLES, timeout=10):
            canary.stop()
            log.warning(
                "%s: no latency budget: the canary failed (%s); batches adapt to their"
                " duration only",
                self.label,
                canary.error,
            )
            return self
        self._canary = canary
        self._seen = len(canary.samples)
        self.calibrate(canary.samples[: self._seen])
        return self

    def calibrate(self, latencies: Sequence[float]) -> None:
        """Take the commit latencies seen before the first batch as the baseline."""
        self.min_size = min(self.min_size, self.start_size)
        self.idle = quantile(list(latencies), BASELINE_QUANTILE)
        self._pace = self._reported = float(self.start_size)
        self._last_call = self.clock()
        floor = f", never below {self.min_rate:,.0f} rows/s" if self.min_rate else ""
        log.info(
            "%s: commits take %.2f ms before the backfill (p%d of %d canary commits): batches"
            " keep them within %.2f ms (%gx)%s",
            self.label,
            self.idle * 1000,
            round(BASELINE_QUANTILE * 100),
            len(latencies),
            self.limit * 1000,
            self.factor,
            floor,
        )

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._canary is not None:
            self._canary.stop()

    def next_batch(self, size: int, batch_seconds: float) -> int | None:
        """The size of the next batch, after one of ``size`` rows that took ``batch_seconds``;
        ``pause`` is then how long to wait before it. None without a canary to go by: the
        runner's batches then adapt to their duration alone.

        Each canary commit since the last call moves the pace: over the budget, down by
        ``STEP``; within it, up by ``STEP * OVER_SHARE / (1 - OVER_SHARE)``, so the pace settles
        where ``OVER_SHARE`` of the commits are over it. Below ``min_size`` rows the pace goes
        on falling as pauses between batches (up to ``max_pause``), but never below ``min_rate``
        rows per second.
        """
        canary = self._canary
        if canary is not None and canary.error is not None:
            log.warning("%s: the canary stopped (%s): keeping the pace", self.label, canary.error)
            self._canary = canary = None
        if canary is None:
            return None
        fresh = canary.samples[self._seen :]
        self._seen += len(fresh)
        return self.adjust(fresh, size, batch_seconds)

    def adjust(self, latencies: Sequence[float], size: int, batch_seconds: float) -> int:
        """:meth:`next_batch` given the canary commits' ``latencies`` since the last batch."""
        now = self.clock()
        cycle, self._last_call = now - self._last_call, now
        over = sum(latency > self.limit for latency in latencies)
        self._recent.extend(latency > self.limit for latency in latencies)
        # pace: rows per batch, or below min_size the share of time not paused
        pace = self._pace * math.exp(
            STEP * (len(latencies) - over) * OVER_SHARE / (1 - OVER_SHARE) - STEP * over
        )
        # The rate goes with the pace (exactly while pausing: the share of time not paused), so
        # the pace that holds the floor is the last one scaled by how far below it it went.
        rate = size / cycle if cycle > 0 else math.inf
        floor = self._pace * min(FLOOR_MAX_RAISE, self.min_rate / rate) if self.min_rate else 0.0
        held = self.at_floor = floor > pace
        pace = max(pace, floor)
        if batch_seconds > self.target_seconds:  # the time cap holds in any case
            pace = min(pace, size * self.target_seconds / batch_seconds)
        elif batch_seconds > self.target_seconds * 0.8:
            pace = min(pace, size)
        self._pace = max(self.min_size / 20, min(self.max_size, pace))
        if self._pace >= self.min_size:
            self.pause, size = 0.0, int(self._pace)
        else:  # min_size rows, and a pause that brings the average to the pace
            self.pause = min(self.max_pause, batch_seconds * (self.min_size / self._pace - 1))
            size = self.min_size
        if held:  # the floor sets the pace: said once a minute, not each batch
            self.floor_held += 1
            self._reported = self._pace
            self._report_floor(rate, size, now)
            return size
        slower = self._pace < self._reported * 0.8
        if slower or self._pace > self._reported * 1.25:
            self._reported = self._pace
            self._report(slower, size, now)
        return size

    def _next(self, size: int) -> str:
        pace = f"next batches {size} rows"
        if self.pause:
            pace += f", {self.pause * 1000:.0f} ms apart"
        return pace

    def _report_floor(self, rate: float, size: int, now: float) -> None:
        # Near the floor, batches held by it and batches not alternate: the minute is counted
        # from the last line whatever came between, or the line would come every few batches.
        if now - self._floor_logged_at < FLOOR_LOG_SECONDS:
            return
        self._floor_logged_at = now
        log.warning(
            "%s: held at the floor of %s rows/s: %d of the last %d canary commits took over the"
            " budget of %.2f ms (%gx %.2f ms) and the budget alone would go slower; the last"
            " batch went at %s rows/s; %s (%d batches at the floor so far)",
            self.label,
            f"{self.min_rate:,.0f}",
            sum(self._recent),
            len(self._recent),
            self.limit * 1000,
            self.factor,
            self.idle * 1000,
            f"{rate:,.0f}",
            self._next(size),
            self.floor_held,
        )

    def _report(self, slower: bool, size: int, now: float) -> None:
        direction = "slowing down" if slower else "speeding up"
        if direction == self._direction and now - self._logged_at < LOG_SECONDS:
            return
        self._direction, self._logged_at = direction, now
        log.info(
            "%s: %s: %d of the last %d canary commits took over the budget of %.2f ms (%gx"
            " %.2f ms, the p%d before the backfill; %g%% may): %s",
            self.label,
            direction,
            sum(self._recent),
            len(self._recent),
            self.limit * 1000,
            self.factor,
            self.idle * 1000,
            round(BASELINE_QUANTILE * 100),
            OVER_SHARE * 100,
            self._next(size),
        )
