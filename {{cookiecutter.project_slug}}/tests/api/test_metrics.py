"""``/metrics`` in Prometheus' format: requests by route, method and status, their latency, the
database pool, and the schema's revision against this release's head."""

import math

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import URL

from {{ cookiecutter.project_slug }}.main import create_app

from tests.api.conftest import serve, settings_for
from tests.api.outage import failing_database, impatient_settings

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample: (name, sorted labels) -> value. Parsing fails on a malformed exposition."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


async def test_requests_latency_pool_and_revision_are_exported(migrated_database: URL) -> None:
    app = create_app(settings_for(migrated_database))
    async with serve(app) as client:
        for _ in range(3):
            assert (await client.get("/health")).status_code == 200
        assert (await client.get("/nowhere")).status_code == 404
        response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    found = samples(response.text)
    health = {"handler": "/health", "method": "GET", "status": "200"}
    assert value(found, "http_requests_total", **health) == 3
    count = value(found, "http_request_duration_seconds_count", handler="/health", method="GET")
    assert count == 3
    assert value(found, "http_requests_total", handler="none", method="GET", status="404") == 1
    assert not any(dict(labels).get("handler") == "/metrics" for _, labels in found)
    assert value(found, "db_pool_connections", state="in_use") == 0  # all returned
    assert value(found, "db_pool_connections", state="idle") >= 1
    assert value(found, "db_pool_size") >= 1
    assert value(found, "database_up") == 1
    assert value(found, "schema_migrations_pending") == 0
    head = app.state.settings.alembic_ini  # a Path: the head is read from the scripts
    assert head.is_file()
    info = [dict(labels) for name, labels in found if name == "schema_revision_info"]
    assert len(info) == 1
    assert info[0]["current"] == info[0]["head"]


async def test_a_database_that_cannot_be_read_is_down_not_a_failed_scrape(
    server_url: URL,
) -> None:
    async with failing_database("refused", server_url) as url:
        app = create_app(impatient_settings(url))
        async with serve(app) as client:
            response = await client.get("/metrics")

    assert response.status_code == 200
    found = samples(response.text)
    assert value(found, "database_up") == 0
    assert math.isnan(value(found, "schema_migrations_pending"))
