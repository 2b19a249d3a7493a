"""``alembic-pgsafe bench --scenario load-step``: the application's write rate steps up half-way
through each backfill, and the table shows the writer's p99 before and after the step.

Structure and fields only: the timings are the benchmark's to claim, not a test's (a test that
waits on timing flakes on a busy machine).
"""

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import URL

from tests.test_bench import bench

pytestmark = pytest.mark.slow  # writers in processes of their own, per strategy: pytest -m slow

ROWS = 3000


def test_the_load_step_scenario_prints_p99_before_and_after_the_step(
    create_database: Callable[[], URL], tmp_path: Path
) -> None:
    url = create_database().render_as_string(hide_password=False)
    options = ["--idle-seconds", "0.3", "--step-writers", "2", "--output", str(tmp_path)]

    result = bench("--rows", str(ROWS), "--scenario", "load-step", *options, "--database-url", url)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"# Migration benchmark, load step: {ROWS:,} rows"
    assert "once half the rows are filled, 2 more clients join it" in result.stdout
    assert " ms before the step, " in result.stdout
    assert "One UPDATE (the throughput baseline, with the writer alone):" in result.stdout
    header = next(line for line in lines if line.startswith("| strategy |"))
    assert [cell.strip() for cell in header.strip("|").split("|")] == [
        "strategy",
        "wall s",
        "x single UPDATE",
        "rows/s before → after step",
        "rows per batch before → after",
        "writer p99 ms before step (x idle)",
        "writer p99 ms after step (x idle)",
        "writes/s of the step load",
        "longest tx ms",
        "data",
        "note",
    ]
    rows = {line.split("|")[1].strip(): line for line in lines if line.startswith("| keyset-")}
    assert set(rows) == {"keyset-gentle", "keyset-budget"}
    assert "| 500 → 500 |" in rows["keyset-gentle"]  # fixed 500-row batches on both sides
    assert "budget 2x, floor 10,000 rows/s |" in rows["keyset-budget"]

    document = json.loads((tmp_path / "bench.json").read_text(encoding="utf-8"))
    assert document["header"]["scenario"] == "load-step"
    assert set(document["idle_writer_ms"]) == {"before_step", "after_step"}
    assert [r["strategy"] for r in document["results"]] == ["single-update"]
    stepped = {r["strategy"]: r for r in document["load_step"]}
    assert set(stepped) == {"keyset-gentle", "keyset-budget"}
    for row in stepped.values():
        assert row["data_ok"]
        before, after = row["before"], row["after"]
        assert before["rows"] + after["rows"] == row["rows"] == ROWS
        assert before["rows"] * 2 >= ROWS  # the step came once half the rows were filled
        assert before["batches"] > 0
        assert after["batches"] > 0
        assert set(before["writer_ms"]) == {"writes", "p50", "p99", "max"}
        assert after["writer_ms"]["writes"] > 0
        assert after["writes_per_second"] > 0  # the step's clients wrote after the step
    assert (
        stepped["keyset-gentle"]["before"]["rows"]
        == stepped["keyset-gentle"]["before"]["batches"] * 500
    )


def test_the_load_step_scenario_refuses_what_cannot_step(tmp_path: Path) -> None:
    """The step comes half-way through a backfill's progress: index builds report none."""
    result = bench(
        "--scenario",
        "load-step",
        "--strategies",
        "index-plain",
        "--database-url",
        "postgresql://x/y",
    )

    assert result.returncode == 2
    assert "--scenario load-step steps up the load half-way through a backfill" in result.stderr
    assert "['index-plain']" in result.stderr

    plotted = bench(
        "--scenario", "load-step", "--output", str(tmp_path), "--plot", "--database-url", "x://y"
    )
    assert plotted.returncode == 2
    assert "--plot draws the steady scenario's results" in plotted.stderr
