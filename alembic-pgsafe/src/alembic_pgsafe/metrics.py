"""A running backfill's progress for Prometheus: ``alembic-pgsafe backfill run --metrics-port N``.

While the runner works, ``http://HOST:N/metrics`` serves, per backfill (label ``backfill``):
rows filled by this run and rows it set out to fill, rows per second, the batch size and the
pause between batches the runner uses now, batches done, and the latency budget's state
(``off``, ``pacing``, ``pausing``, ``floor``). A scrape every 15 s shows an hour-long backfill
as it goes, not only in its log.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Enum, Gauge, start_http_server

from alembic_pgsafe.backfill import BUDGET_STATES, BatchReport, observing_batches

__all__ = ["BackfillMetrics"]


class BackfillMetrics:
    """The gauges of every backfill run meanwhile, in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        labels = ["backfill"]

        def gauge(name: str, what: str) -> Gauge:
            return Gauge(name, what, labels, registry=self.registry)

        self.rows_done = gauge("backfill_rows_done", "Rows this run of the backfill has filled.")
        self.rows_planned = gauge(
            "backfill_rows_planned", "Rows pending when this run of the backfill began."
        )
        self.rows_per_second = gauge(
            "backfill_rows_per_second", "Rows filled per second since this run began."
        )
        self.batch_size = gauge("backfill_batch_size_rows", "Rows in the next batch.")
        self.pause = gauge("backfill_pause_seconds", "Pause before the next batch.")
        self.batches = gauge("backfill_batches", "Batches this run has committed.")
        self.budget_state = Enum(
            "backfill_budget_state",
            "What the latency budget does: off, pacing (sizes the batches), pausing (smallest"
            " batches, pauses between them), floor (held at its minimum rate).",
            labels,
            states=list(BUDGET_STATES),
            registry=self.registry,
        )

    def observe(self, report: BatchReport) -> None:
        label = report.label
        self.rows_done.labels(label).set(report.rows_done)
        self.rows_planned.labels(label).set(report.rows_total)
        self.rows_per_second.labels(label).set(report.rows_per_second)
        self.batch_size.labels(label).set(report.batch_size)
        self.pause.labels(label).set(report.pause_seconds)
        self.batches.labels(label).set(report.batches)
        self.budget_state.labels(label).state(report.budget_state)

    @contextmanager
    def served(self, port: int, address: str = "0.0.0.0") -> Iterator[int]:  # noqa: S104
        """Serve the metrics on ``port`` (0: any free port) while backfills run; yields the
        port."""
        server, thread = start_http_server(port, addr=address, registry=self.registry)
        try:
            with observing_batches(self.observe):
                yield server.server_port
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
