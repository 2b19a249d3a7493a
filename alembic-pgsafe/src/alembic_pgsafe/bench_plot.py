"""Draw a migration benchmark's bench.json as small multiples: bench.png.

    uv run --with matplotlib alembic-pgsafe bench-plot DIR/bench.json [OUT.png]

``alembic-pgsafe bench --output DIR --plot`` draws it at the end of a run; this redraws a saved
run (OUT.png defaults to bench.png beside the JSON). matplotlib is not a dependency of
alembic-pgsafe: both add it for the run only (a render's ``make bench ARGS="... --plot"`` does),
and a project's pyproject.toml and uv.lock stay as they are.

One row per strategy, in the order they ran, the same on every panel: (a) throughput as a ratio
to one plain UPDATE, (b) the concurrent writer's latency against its latency with no migration
running, (c) the longest transaction against the 200 ms target, (d) the WAL written. The index
builds get panels of their own below: (e) build time, (f) the writer's latency, (g) WAL.
"""

import argparse
import importlib.util
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

BASELINE = "single-update"
REQUIRED = {"header", "idle_writer_ms", "results"}
TARGET_TRANSACTION_MS = 200.0
MISSING_MATPLOTLIB = (
    "bench-plot needs matplotlib, which alembic-pgsafe does not depend on: run"
    " `uv run --with matplotlib alembic-pgsafe bench-plot DIR/bench.json`,"
    " or draw it as you measure: alembic-pgsafe bench --output DIR --plot"
)
WRITER_COLORS = {"p50": "#9ecae1", "p99": "#4292c6", "max": "#08306b"}  # light to dark
IDLE_STYLES: dict[str, Literal[":", "--"]] = {"p50": ":", "p99": "--"}
IDLE_COLOR = "#e6550d"
P99_TARGET = 2.0
"""The writer's p99 target during a backfill: this many times its p99 with no migration."""
BAR_COLOR = "#74a360"
WAL_COLOR = "#8c6bb1"
MISSED_COLOR = "#c0392b"
NOTE_COLOR = "#444444"
ROW_INCHES = 0.48
LABEL_POINTS = 8

Row = dict[str, Any]


def matplotlib_missing() -> str | None:
    """The line to print when matplotlib cannot be imported, else None."""
    return MISSING_MATPLOTLIB if importlib.util.find_spec("matplotlib") is None else None


def plot(document: dict[str, Any], path: Path) -> None:
    """Draw ``document`` (what bench_migrations.py writes as bench.json) into the PNG ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    header, idle = document["header"], document["idle_writer_ms"]
    backfills = [r for r in document["results"] if r["kind"] != "index"]
    indexes = [r for r in document["results"] if r["kind"] == "index"]
    groups = [rows for rows in (backfills, indexes) if rows]
    heights = [ROW_INCHES * len(rows) + 1.2 for rows in groups]
    if not indexes:  # a row of its own for the legend, in the index builds' free cell otherwise
        heights.append(0.7)
    figure = pyplot.figure(figsize=(16, sum(heights) + 2.0), layout="constrained", dpi=110)
    figure.suptitle(_title(header), fontsize=13, fontweight="bold")
    grid = figure.add_gridspec(len(heights), 4, height_ratios=heights)
    if backfills:
        axes = [figure.add_subplot(grid[0, 0])]
        axes += [figure.add_subplot(grid[0, column], sharey=axes[0]) for column in (1, 2, 3)]
        _label_rows(axes[0], backfills, "backfills")
        _throughput(axes[0], backfills)
        _writer(axes[1], backfills, idle, document["results"])
        _longest_transaction(axes[2], backfills)
        _wal(axes[3], backfills)
        _letter(axes, "abcd")
    if indexes:
        row = len(groups) - 1
        axes = [figure.add_subplot(grid[row, 0])]
        axes += [figure.add_subplot(grid[row, column], sharey=axes[0]) for column in (1, 3)]
        _label_rows(axes[0], indexes, "index builds")
        _build_seconds(axes[0], indexes)
        _writer(axes[1], indexes, idle, document["results"])
        _wal(axes[2], indexes)
        _letter(axes, "efg" if backfills else "abc")
        spare = figure.add_subplot(grid[row, 2])  # the legend takes the free cell
        spare.axis("off")
        spare.legend(handles=_legend(idle), loc="center", fontsize=9)
    else:
        spare = figure.add_subplot(grid[-1, :])
        spare.axis("off")
        spare.legend(handles=_legend(idle), loc="center", ncols=3, fontsize=9)
    notes = _footnotes(header, idle, backfills)
    figure.supxlabel(notes, x=0.01, ha="left", fontsize=9, color=NOTE_COLOR)
    figure.savefig(path, facecolor="white")
    pyplot.close(figure)


def _title(header: dict[str, Any]) -> str:
    version = str(header.get("postgresql", "?")).split(" ")[0]
    parts = [
        f"Migration benchmark: {header['rows']:,} rows",
        f"PostgreSQL {version}",
        f"{header.get('cores', '?')} cores",
        f"batch size {header.get('batch_size', '?')}",
        str(header.get("date", "")),
    ]
    return "  ·  ".join(part for part in parts if part)


def _footnotes(header: dict[str, Any], idle: dict[str, float], backfills: list[Row]) -> str:
    fresh = "after a CHECKPOINT" if header.get("checkpoint") else "(CHECKPOINT not allowed)"
    lines = [
        f"Each strategy runs on a fresh table {fresh} while a second client updates random rows,"
        f" timing each write. The orange lines: that writer alone, no migration running"
        f" ({int(idle.get('writes', 0)):,} writes)."
    ]
    lines += [
        f"* {r['strategy']}: {r['note']}. Its wall time and rows/s are scaled to {r['rows']:,}"
        " rows; its writer latency, longest transaction and WAL are the sample's."
        for r in backfills
        if _extrapolated(r)
    ]
    return "\n".join(lines)


def _legend(idle: dict[str, float]) -> list[Any]:
    """One legend for every panel: the writer's bars, the idle writer's lines, the target."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = [
        Patch(color=color, label=f"writer {stat} during the strategy")
        for stat, color in WRITER_COLORS.items()
    ]
    handles += [
        Line2D(
            [],
            [],
            color=IDLE_COLOR,
            linestyle=style,
            linewidth=2,
            label=f"writer {stat} with no migration running: {idle[stat]:,.1f} ms",
        )
        for stat, style in IDLE_STYLES.items()
        if idle.get(stat)
    ]
    target = f"target: transactions of at most {TARGET_TRANSACTION_MS:.0f} ms"
    handles.append(Line2D([], [], color="black", linestyle="--", label=target))
    if idle.get("p99"):
        p99 = f"target: writer p99 within {P99_TARGET:g}x idle, {P99_TARGET * idle['p99']:,.1f} ms"
        handles.append(Line2D([], [], color="black", linestyle="--", linewidth=1, label=p99))
    return handles


def _letter(axes: Sequence[Any], letters: str) -> None:
    """(a), (b)... before each panel's title; row labels on the first panel only."""
    for letter, axis in zip(letters, axes, strict=True):
        axis.set_title(f"({letter}) {axis.get_title(loc='left')}", loc="left", fontweight="bold")
    for axis in axes[1:]:
        axis.tick_params(labelleft=False)


def _extrapolated(result: Row) -> bool:
    return "extrapolated" in str(result.get("note", ""))


def _label_rows(axis: Any, results: Sequence[Row], group: str) -> None:
    """Strategies top to bottom in the order they ran; wrong data and extrapolation marked."""
    labels = []
    for r in results:
        label = r["strategy"] + ("*" if _extrapolated(r) else "")
        if r["kind"] == "index" and r.get("note"):
            label += f"\n({r['note']})"
        labels.append(label if r.get("data_ok", True) else f"{label}\nWRONG DATA")
    axis.set_yticks(range(len(results)), labels)
    for tick, r in zip(axis.get_yticklabels(), results, strict=True):
        if not r.get("data_ok", True):
            tick.set_color(MISSED_COLOR)
    axis.set_ylim(len(results) - 0.5, -0.5)
    axis.set_ylabel(group, fontsize=12, fontweight="bold")


def _scale(
    axis: Any, values: Sequence[float], labels: Sequence[str], *, log: bool | None = None
) -> None:
    """Log when asked or when the values span more than 20x (the extrapolated ORM loop would
    squash the others); wide enough for each bar's label at its end."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    positive = [(v, text) for v, text in zip(values, labels, strict=True) if v > 0]
    low = min((v for v, _ in positive), default=1.0)
    high = max((v for v, _ in positive), default=1.0)
    log = log if log is not None else high / low > 20
    # the share of the axis each label takes: a quarter of the figure, less the row labels
    figure = axis.figure
    width = (figure.get_figwidth() - 2.2) / 4 * figure.dpi
    share = [min(0.6, _text_pixels(figure, text) / width) for _, text in positive]
    if log:
        bottom = math.floor(math.log10(low))
        span = max(
            [(math.log10(v) - bottom) / (1 - f) for (v, _), f in zip(positive, share, strict=True)]
            + [math.log10(high) - bottom + 0.3]
        )
        axis.set_xscale("log")
        axis.set_xlim(10.0**bottom, 10 ** (bottom + span))
        axis.xaxis.set_major_locator(LogLocator(numticks=7))
        axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: _compact(value)))
        axis.xaxis.set_minor_formatter(NullFormatter())
    else:
        top = max([v / (1 - f) for (v, _), f in zip(positive, share, strict=True)] + [high * 1.1])
        axis.set_xlim(0, top)
        axis.xaxis.set_major_locator(MaxNLocator(5))
        axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: _compact(value)))
    axis.grid(axis="x", alpha=0.3)


def _text_pixels(figure: Any, text: str) -> float:
    """The width of a bar's label as drawn, its longest line."""
    from matplotlib.font_manager import FontProperties

    renderer = figure.canvas.get_renderer()
    font = FontProperties(size=LABEL_POINTS)
    widths = [
        float(renderer.get_text_width_height_descent(f"  {line}", font, ismath=False)[0])
        for line in text.split("\n")
        if line
    ]
    return max(widths, default=0.0)


def _unit(axis: Any, unit: str) -> str:
    return f"{unit}, log" if axis.get_xscale() == "log" else unit


def _compact(value: float) -> str:
    """Tick labels: 0.01, 1, 100, 10k, 1M."""
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


def _bars(
    axis: Any,
    positions: Sequence[float],
    values: Sequence[float],
    labels: Sequence[str],
    color: str | Sequence[str],
    height: float = 0.6,
    label_color: str = "black",
) -> None:
    bars = axis.barh(positions, values, color=color, height=height)
    axis.bar_label(
        bars,
        labels,
        padding=3,
        fontsize=LABEL_POINTS,
        color=label_color,
        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 0.5},
    )


def _ms(value: float) -> str:
    return f"{value:,.0f} ms" if value >= 100 else f"{value:.1f} ms"


def _throughput(axis: Any, results: Sequence[Row]) -> None:
    baseline = next((r for r in results if r["strategy"] == BASELINE), None)
    rates = [float(r["rows_per_second"]) for r in results]
    rows = range(len(results))
    if baseline and baseline["rows_per_second"]:
        ratios = [rate / float(baseline["rows_per_second"]) for rate in rates]
        labels = [
            (f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x") + f" ({rate:,.0f} rows/s)"
            for ratio, rate in zip(ratios, rates, strict=True)
        ]
        _scale(axis, [*ratios, 1.0], [*labels, ""])
        axis.axvline(1.0, color="black", linewidth=1, zorder=1)
        _bars(axis, rows, ratios, labels, BAR_COLOR)
        axis.set_xlabel(_unit(axis, f"x {BASELINE}'s rows/s (the line at 1)"))
        axis.set_title("throughput vs one plain UPDATE", loc="left")
    else:  # the baseline did not run: rows/s as they are
        labels = [f"{rate:,.0f} rows/s" for rate in rates]
        _scale(axis, rates, labels)
        _bars(axis, rows, rates, labels, BAR_COLOR)
        axis.set_xlabel(_unit(axis, f"rows/s ({BASELINE} did not run: no ratio)"))
        axis.set_title("throughput", loc="left")


def _writer_labels(results: Sequence[Row]) -> list[str]:
    """The label at the end of each max bar: the max, and how many writes it is the max of."""
    labels = []
    for r in results:
        count, worst = int(r["writer_ms"]["writes"]), float(r["writer_ms"]["max"])
        many = "s" if count > 1 else ""
        labels.append(f"max {_ms(worst)}, {count:,} write{many}" if count else "")
    return labels


def _writer(
    axis: Any, results: Sequence[Row], idle: dict[str, float], every: Sequence[Row]
) -> None:
    """The concurrent writer's p50 / p99 / max per strategy; with no migration, as lines.

    On the scale of ``every`` strategy's, so that the index builds compare with the backfills."""
    idle_ms = [float(idle[stat]) for stat in IDLE_STYLES if idle.get(stat)]
    _scale(
        axis,
        [*(float(r["writer_ms"]["max"]) for r in every), *idle_ms],
        [*_writer_labels(every), *("" for _ in idle_ms)],
        log=True,
    )
    height = 0.84 / len(WRITER_COLORS)
    for offset, (stat, color) in enumerate(WRITER_COLORS.items()):
        ms = [float(r["writer_ms"][stat]) for r in results]
        positions = [i + (offset - 1) * height for i in range(len(results))]
        labels = _writer_labels(results) if stat == "max" else [""] * len(results)
        _bars(axis, positions, ms, labels, color, height=height, label_color=NOTE_COLOR)
    for row, r in enumerate(results):
        if not r["writer_ms"]["writes"]:  # a bar of no length, on a log scale: say so instead
            left = axis.get_xlim()[0]
            axis.text(left, row, " no write during it", va="center", fontsize=LABEL_POINTS)
    for stat, style in IDLE_STYLES.items():
        if idle.get(stat):
            axis.axvline(idle[stat], color=IDLE_COLOR, linestyle=style, linewidth=2)
    if idle.get("p99"):
        axis.axvline(P99_TARGET * idle["p99"], color="black", linestyle="--", linewidth=1)
    axis.set_xlabel("ms, log; orange lines: no migration running")
    axis.set_title("concurrent writer's latency", loc="left")


def _longest_transaction(axis: Any, results: Sequence[Row]) -> None:
    ms = [float(r["longest_transaction_s"]) * 1000 for r in results]
    labels = [_ms(value) for value in ms]
    _scale(axis, [*ms, TARGET_TRANSACTION_MS], [*labels, ""], log=True)
    axis.axvline(TARGET_TRANSACTION_MS, color="black", linestyle="--", zorder=1)
    colors = [MISSED_COLOR if value > TARGET_TRANSACTION_MS else BAR_COLOR for value in ms]
    _bars(axis, range(len(results)), ms, labels, colors)
    axis.set_xlabel(f"ms, log; dashed line: the {TARGET_TRANSACTION_MS:.0f} ms target")
    axis.set_title("longest transaction", loc="left")


def _wal(axis: Any, results: Sequence[Row]) -> None:
    mb = [float(r.get("wal_mb", 0.0)) for r in results]
    labels = []
    for r, value in zip(results, mb, strict=True):
        checkpoints = int(r.get("checkpoints", 0))
        labels.append(f"{value:,.1f} MB" + (f"\n{checkpoints} checkpoints" if checkpoints else ""))
    _scale(axis, mb, labels)
    _bars(axis, range(len(results)), mb, labels, WAL_COLOR)
    axis.set_xlabel(_unit(axis, "MB"))
    axis.set_title("WAL written", loc="left")


def _build_seconds(axis: Any, results: Sequence[Row]) -> None:
    seconds = [float(r["seconds"]) for r in results]
    labels = [f"{value:,.3g} s" for value in seconds]
    _scale(axis, seconds, labels)
    _bars(axis, range(len(results)), seconds, labels, BAR_COLOR)
    axis.set_xlabel(_unit(axis, "seconds"))
    axis.set_title("build time", loc="left")


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="alembic-pgsafe bench-plot",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("json", type=Path, help="a bench.json (alembic-pgsafe bench --output DIR)")
    parser.add_argument("png", type=Path, nargs="?", help="default: bench.png beside the JSON")
    args = parser.parse_args(argv)
    if message := matplotlib_missing():
        print(message, file=sys.stderr)
        return 2
    try:
        document = json.loads(args.json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        print(f"bench_plot: cannot read {args.json}: {error}", file=sys.stderr)
        return 2
    if not isinstance(document, dict) or not document.keys() >= REQUIRED:
        expected = ", ".join(sorted(REQUIRED))
        print(f"bench_plot: {args.json} is not a bench.json (no {expected})", file=sys.stderr)
        return 2
    path = args.png or args.json.with_name("bench.png")
    plot(document, path)
    print(f"plot written to {path}", file=sys.stderr)
    return 0
