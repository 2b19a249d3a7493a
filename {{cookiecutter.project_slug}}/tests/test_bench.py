"""The migration benchmark runs end to end and every strategy leaves the right data."""

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import URL

from {{ cookiecutter.project_slug }}.settings import PROJECT_ROOT

BENCH = PROJECT_ROOT / "scripts" / "bench_migrations.py"


def test_benchmark_prints_the_tables_and_checks_every_strategy(
    create_database: Callable[[], URL], tmp_path: Path
) -> None:
    url = create_database().render_as_string(hide_password=False)
    command = [sys.executable, str(BENCH), "--rows", "2000", "--batch-size", "300"]
    options = ["--orm-sample", "50", "--idle-seconds", "0.3", "--output", str(tmp_path)]

    result = subprocess.run(
        [*command, *options, "--database-url", url],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "| keyset-fixed |" in result.stdout
    assert "Targets:" in result.stdout
    document = json.loads((tmp_path / "bench.json").read_text(encoding="utf-8"))
    strategies = {row["strategy"]: row for row in document["results"]}
    assert set(strategies) == {
        "single-update",
        "keyset-fixed",
        "keyset-adaptive",
        "limit-loop",
        "orm-loop",
        "index-plain",
        "index-concurrent",
    }
    assert all(row["data_ok"] for row in strategies.values())
    assert strategies["keyset-fixed"]["note"] == "7 batches"
    assert (tmp_path / "bench.md").read_text(encoding="utf-8") == result.stdout.rstrip("\n") + "\n"


def test_benchmark_refuses_unknown_strategies() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--strategies", "magic", "--database-url", "postgresql://x/y"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert "unknown strategies ['magic']" in result.stderr
