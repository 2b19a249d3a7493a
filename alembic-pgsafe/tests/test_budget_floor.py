"""The latency budget's floor: however long the canary's commits stay over the budget, the
backfill goes on at ``min_rate`` rows per second at least, and says so once a minute.

No database and no real load: the canary's latencies and the clock are the test's, and the
batches take what a simple model says (a fixed cost per batch plus one per row), so every
figure is the same on a busy machine as on a quiet one.
"""

import itertools
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from alembic_pgsafe import settings
from alembic_pgsafe.budget import DEFAULT_MIN_RATE, FLOOR_LOG_SECONDS, LatencyBudget
from alembic_pgsafe.settings import MigrationSettings

IDLE = [0.001] * 120
"""Canary commits before the first batch: 1 ms, so the budget (2x) is 2 ms."""
OVER = [0.005] * 10
"""The canary commits during one batch, all over the budget: a server busy with other work."""
WITHIN = [0.001] * 10
FLOOR = 20_000


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Run:
    """A runner's loop around the budget: a batch, ``adjust``, the pause it asks for."""

    budget: LatencyBudget
    clock: Clock
    per_row: float = 20e-6
    """Seconds a row takes (50,000 rows/s with no pauses)."""
    per_batch: float = 0.002
    """Seconds each batch costs whatever its size (finding its end, the commit)."""
    size: int = 0
    rows: int = 0

    def __post_init__(self) -> None:
        self.size = self.budget.start_size
        self.budget.calibrate(IDLE)

    def batches(self, count: int, latencies: list[float]) -> float:
        """Run ``count`` batches with these canary latencies each; their rows per second."""
        started, rows = self.clock.now, 0
        for _ in range(count):
            took = self.per_batch + self.size * self.per_row
            self.clock.now += took
            rows += self.size
            self.size = self.budget.adjust(latencies, self.size, took)
            self.clock.now += self.budget.pause
        return rows / (self.clock.now - started)


def budget(clock: Clock, min_rate: float = FLOOR) -> LatencyBudget:
    return LatencyBudget("postgresql://localhost/unused", "items.doubled", clock=clock,
                         min_rate=min_rate)  # fmt: skip


def floor_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "held at the floor" in r.getMessage()]


class FloorLines(logging.Handler):
    """When (on the test's clock) the budget said it was held at the floor."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.at: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "held at the floor" in record.getMessage():
            self.at.append(self.clock.now)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def floor_logged(clock: Clock) -> Iterator[FloorLines]:
    handler = FloorLines(clock)
    logger = logging.getLogger("alembic.backfill")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def test_without_a_floor_a_busy_server_slows_the_budget_to_a_crawl() -> None:
    clock = Clock()
    run = Run(budget(clock, min_rate=0), clock)

    rate = run.batches(200, OVER)

    assert rate < FLOOR / 10  # batches of 50 rows, each followed by a pause 19 times as long
    assert run.budget.pause > 0.05
    assert run.budget.floor_held == 0


def test_the_floor_holds_the_pace_however_long_the_canary_is_over_the_budget() -> None:
    clock = Clock()
    run = Run(budget(clock), clock)

    run.batches(50, OVER)  # from 1,000-row batches down to the floor
    rates = [run.batches(100, OVER) for _ in range(5)]

    assert all(FLOOR * 0.95 <= rate <= FLOOR * 1.5 for rate in rates), rates
    assert run.budget.pause == 0  # batches of the floor's size, back to back
    assert run.budget.floor_held > 400


def test_the_floor_does_not_stop_the_budget_slowing_down_above_it() -> None:
    clock = Clock()
    run = Run(budget(clock, min_rate=1_000), clock)

    rate = run.batches(100, OVER)

    assert rate < FLOOR  # well below 500-row batches' pace: the budget still works
    assert run.batches(100, OVER) >= 1_000 * 0.95


def test_the_floor_never_makes_a_batch_longer_than_the_target() -> None:
    """On a server too slow to reach the floor, batches stay within target_seconds."""
    clock = Clock()
    run = Run(budget(clock), clock, per_row=1e-3)  # 1,000 rows/s at best

    rate = run.batches(200, OVER)

    assert run.size * run.per_row <= run.budget.target_seconds * 1.01
    assert rate > 900  # as fast as 50 ms batches go: 50 rows in 52 ms


def test_the_floor_is_logged_once_a_minute_with_the_numbers(
    caplog: pytest.LogCaptureFixture, clock: Clock, floor_logged: FloorLines
) -> None:
    caplog.set_level(logging.INFO, logger="alembic.backfill")
    run = Run(budget(clock), clock)

    while clock.now < 1000 + 3.5 * FLOOR_LOG_SECONDS:  # 3.5 min about the floor
        run.batches(1, OVER)  # one batch held at the floor, then two within the budget
        run.batches(2, WITHIN)

    assert run.budget.floor_held > 10_000
    logged_at = floor_logged.at
    assert len(logged_at) == 4, logged_at  # at once, then after 60, 120 and 180 s
    assert logged_at[0] < 1000.1
    gaps = [later - earlier for earlier, later in itertools.pairwise(logged_at)]
    assert all(FLOOR_LOG_SECONDS <= gap < FLOOR_LOG_SECONDS + 0.1 for gap in gaps), gaps
    line = floor_lines(caplog)[-1]
    assert line.startswith("items.doubled: held at the floor of 20,000 rows/s: ")
    assert "of the last 200 canary commits took over the budget of 2.00 ms (2x 1.00 ms)" in line
    assert "the last batch went at 20," in line
    assert "next batches 6" in line
    # no change-of-pace line meanwhile (at most one a second otherwise): the floor sets the pace
    assert not [r for r in caplog.records if "slowing down" in r.getMessage()]


def test_the_floor_is_said_again_when_the_load_comes_back_a_minute_later(
    caplog: pytest.LogCaptureFixture, clock: Clock, floor_logged: FloorLines
) -> None:
    caplog.set_level(logging.INFO, logger="alembic.backfill")
    run = Run(budget(clock), clock)
    run.batches(100, OVER)
    assert len(floor_logged.at) == 1

    run.batches(500, WITHIN)  # the load is gone: faster than the floor, nothing said of it
    assert len(floor_logged.at) == 1
    assert run.size > 1_000
    assert any("speeding up" in r.getMessage() for r in caplog.records)

    run.batches(200, OVER)  # back within a minute of the first line: still nothing
    assert len(floor_logged.at) == 1
    clock.now = floor_logged.at[0] + FLOOR_LOG_SECONDS
    run.batches(1, OVER)
    assert len(floor_logged.at) == 2


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in [name for name in os.environ if name.startswith("MIGRATION_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(settings, "PROJECT_ROOT", tmp_path)
    return tmp_path


def test_the_floor_is_a_setting(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert MigrationSettings().backfill_budget_min_rate == DEFAULT_MIN_RATE
    table = "[tool.alembic-pgsafe]\nbackfill_budget_min_rate = 5000\n"
    (project / "pyproject.toml").write_text(table, encoding="utf-8")
    assert MigrationSettings().backfill_budget_min_rate == 5000
    monkeypatch.setenv("MIGRATION_BACKFILL_BUDGET_MIN_RATE", "0")
    assert MigrationSettings().backfill_budget_min_rate == 0  # no floor
    monkeypatch.setenv("MIGRATION_BACKFILL_BUDGET_MIN_RATE", "-1")
    with pytest.raises(ValueError, match="backfill_budget_min_rate"):
        MigrationSettings()
