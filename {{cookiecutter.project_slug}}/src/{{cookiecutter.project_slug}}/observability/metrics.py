"""``GET /metrics`` for Prometheus: the requests, the database pool and the schema's revision.

- ``http_requests_total{handler,method,status}`` and the latency histogram
  ``http_request_duration_seconds{handler,method}`` (prometheus-fastapi-instrumentator; the
  handler is the route's template, ``/users/{user_id}``, so ids do not make new series);
- ``db_pool_connections{state="in_use|idle|overflow"}`` and ``db_pool_size``: the SQLAlchemy
  pool of this process, read when scraped;
- ``schema_migrations_pending`` (revisions of this release the database lacks: 0 at the head)
  and ``schema_revision_info{current,head}``, read from the database when scraped, with
  ``database_up`` 0 when it cannot be read.

Each process counts its own requests: run one uvicorn worker per container and let the
platform scale containers (what the image and deploy/ do), or see prometheus-client's
multiprocess mode.
"""

import asyncio
from collections.abc import Iterator

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_fastapi_instrumentator import Instrumentator
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from {{ cookiecutter.project_slug }}.api.health import schema_state
from {{ cookiecutter.project_slug }}.settings import Settings

METRICS_PATH = "/metrics"
SCHEMA_READ_SECONDS = 2.0
"""A scrape waits at most this long for the database's revision."""


class PoolCollector(Collector):
    """The pool of the app's engine, as it is when Prometheus scrapes."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        engine: AsyncEngine | None = getattr(self.app.state, "engine", None)
        if engine is None:
            return
        pool = engine.sync_engine.pool
        size = getattr(pool, "size", None)
        connections = GaugeMetricFamily(
            "db_pool_connections", "Database connections of the pool, by state.", labels=["state"]
        )
        connections.add_metric(["in_use"], getattr(pool, "checkedout", lambda: 0)())
        connections.add_metric(["idle"], getattr(pool, "checkedin", lambda: 0)())
        connections.add_metric(["overflow"], max(getattr(pool, "overflow", lambda: 0)(), 0))
        yield connections
        if callable(size):
            yield GaugeMetricFamily("db_pool_size", "Connections the pool keeps.", value=size())


class SchemaGauges:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.up = Gauge(
            "database_up", "1 when the last scrape could read the database.", registry=registry
        )
        self.pending = Gauge(
            "schema_migrations_pending",
            "Revisions of this release the database lacks (0: at the head or ahead of it).",
            registry=registry,
        )
        self.info = Gauge(
            "schema_revision_info",
            "The database's revision and this release's head.",
            ["current", "head"],
            registry=registry,
        )

    async def refresh(self, app: FastAPI) -> None:
        settings: Settings = app.state.settings
        engine: AsyncEngine = app.state.engine
        try:
            async with asyncio.timeout(SCHEMA_READ_SECONDS), engine.connect() as connection:
                state = await connection.run_sync(schema_state, settings.alembic_ini)
        except (SQLAlchemyError, OSError, TimeoutError):
            self.up.set(0)
            self.pending.set(float("nan"))
            return
        self.up.set(1)
        self.pending.set(state.pending)
        self.info.clear()
        self.info.labels(" ".join(state.current) or "base", " ".join(state.head)).set(1)


def add_metrics(app: FastAPI) -> None:
    """Count every request but the scrapes, and serve ``/metrics`` from a registry of the app's
    own (several apps in one process, as in tests, do not share series)."""
    registry = CollectorRegistry()
    Instrumentator(
        should_group_status_codes=False,
        excluded_handlers=[METRICS_PATH],
        registry=registry,
    ).instrument(app)
    registry.register(PoolCollector(app))
    schema = SchemaGauges(registry)

    @app.get(METRICS_PATH, include_in_schema=False)
    async def metrics(request: Request) -> Response:
        await schema.refresh(request.app)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
