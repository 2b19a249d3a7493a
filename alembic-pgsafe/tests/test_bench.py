"""The migration benchmark (``alembic-pgsafe bench``) runs end to end and every strategy leaves
the right data."""

import json
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import URL

from alembic_pgsafe import bench as bench_module
from tests.conftest import PROJECT, TOOLKIT, as_admin, run_blocking

pytestmark = pytest.mark.slow  # the benchmark runs every strategy: pytest -m slow


def bench(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TOOLKIT, "bench", *arguments],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_benchmark_prints_the_tables_and_checks_every_strategy(
    create_database: Callable[[], URL], tmp_path: Path
) -> None:
    url = create_database().render_as_string(hide_password=False)
    options = ["--orm-sample", "50", "--idle-seconds", "0.3", "--output", str(tmp_path)]

    result = bench("--rows", "2000", "--batch-size", "300", *options, "--database-url", url)

    assert result.returncode == 0, result.stderr
    assert "| keyset-fixed |" in result.stdout
    assert "Targets:" in result.stdout
    assert "Each strategy starts on a fresh table after a CHECKPOINT." in result.stdout
    document = json.loads((tmp_path / "bench.json").read_text(encoding="utf-8"))
    strategies = {row["strategy"]: row for row in document["results"]}
    assert set(strategies) == {
        "single-update",
        "keyset-fixed",
        "keyset-adaptive",
        "keyset-parallel",
        "keyset-gentle",
        "keyset-budget",
        "limit-loop",
        "orm-loop",
        "index-plain",
        "index-concurrent",
    }
    assert all(row["data_ok"] for row in strategies.values())
    assert strategies["keyset-fixed"]["note"] == "7 batches"
    assert strategies["keyset-budget"]["note"].endswith("batches, budget 2x, floor 10,000 rows/s")
    # what the server did is read for every strategy: every backfill rewrote rows, so wrote WAL
    assert all(row["wal_mb"] > 0 for row in strategies.values() if row["kind"] == "backfill")
    assert "| WAL MB | checkpoints |" in result.stdout
    # one batch of each loop, explained: the keyset batch walks the primary key's index
    plans = document["explained_batches"]
    assert set(plans) == {"keyset", "limit-loop"}
    assert "Index Cond" in plans["keyset"]
    assert "bench_items_pkey" in plans["keyset"]
    assert "WAL:" in plans["keyset"]
    assert "Buffers:" in plans["limit-loop"]
    assert (tmp_path / "bench.md").read_text(encoding="utf-8") == result.stdout.rstrip("\n") + "\n"


def test_benchmark_can_leave_out_the_explained_batches(
    create_database: Callable[[], URL], tmp_path: Path
) -> None:
    url = create_database().render_as_string(hide_password=False)
    options = ["--idle-seconds", "0.1", "--no-explain", "--database-url", url]

    result = bench("--rows", "500", "--strategies", "keyset-adaptive", *options)

    assert result.returncode == 0, result.stderr
    assert "| keyset-adaptive |" in result.stdout
    assert "batch at the table's midpoint" not in result.stdout


def test_benchmark_runs_where_it_may_not_checkpoint(create_database: Callable[[], URL]) -> None:
    """Managed databases seldom grant CHECKPOINT: the benchmark says so and measures anyway."""
    url = create_database()
    role = f"bench_{uuid.uuid4().hex[:12]}"
    grant = "GRANT CREATE ON SCHEMA public TO {role}"
    run_blocking(as_admin(url, "CREATE ROLE {role} LOGIN", grant, role=role))
    options = ["--idle-seconds", "0.1", "--no-explain"]
    as_role = url.set(username=role).render_as_string(hide_password=False)
    try:
        result = bench(
            "--rows", "500", "--strategies", "keyset-fixed", *options, "--database-url", as_role
        )
    finally:
        run_blocking(as_admin(url, "DROP OWNED BY {role}", "DROP ROLE {role}", role=role))

    assert result.returncode == 0, result.stderr
    assert "Each strategy starts on a fresh table (no CHECKPOINT: not allowed)." in result.stdout
    assert "| keyset-fixed |" in result.stdout


def test_benchmark_refuses_unknown_strategies() -> None:
    result = bench("--strategies", "magic", "--database-url", "postgresql://x/y")

    assert result.returncode == 2
    assert "unknown strategies ['magic']" in result.stderr


def test_off_a_terminal_progress_is_a_line_every_few_seconds(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench_module, "PROGRESS_LINE_SECONDS", 0.0)
    with bench_module.progress_bar(2_000, "  batches") as bar:  # stderr is captured: not a terminal
        bar.update(500)
        bar.update(1_500)
    monkeypatch.setattr(bench_module, "PROGRESS_LINE_SECONDS", 3600.0)
    quiet = bench_module.progress_bar(2_000, "  batches")
    quiet.update(2_000)

    assert isinstance(bar, bench_module.ProgressLines)
    assert capsys.readouterr().err == (
        "  batches: 500/2,000 rows (25%)\n  batches: 2,000/2,000 rows (100%)\n"
    )
