"""Traces: a request is a span, and the SQL it ran (SQLAlchemy's statement, asyncpg's round
trips) are spans inside it, in the SDK's in-memory exporter."""

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import URL

from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.observability.tracing import (
    DEFAULT_SERVICE_NAME,
    tracer_provider_from_environment,
)

from tests.api.conftest import serve, settings_for


def tree(spans: list[ReadableSpan]) -> list[str]:
    """The spans as an indented tree, parents first."""
    children: dict[int | None, list[ReadableSpan]] = {}
    ids = {span.context.span_id for span in spans if span.context is not None}
    for span in sorted(spans, key=lambda span: span.start_time or 0):
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent if parent in ids else None, []).append(span)

    def lines(parent: int | None, depth: int) -> list[str]:
        out = []
        for span in children.get(parent, []):
            assert span.context is not None
            out.append(f"{'  ' * depth}{span.name} ({span.kind.name.lower()})")
            out += lines(span.context.span_id, depth + 1)
        return out

    return lines(None, 0)


async def test_a_request_and_its_sql_are_one_trace(migrated_database: URL) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(settings_for(migrated_database), tracer_provider=provider)
    async with serve(app) as client:
        exporter.clear()  # start-up's own statements
        response = await client.get("/health")

    assert response.status_code == 200
    spans = list(exporter.get_finished_spans())
    server = [span for span in spans if span.kind is SpanKind.SERVER]
    assert [span.name for span in server] == ["GET /health"]
    trace_id = server[0].context.trace_id
    sql = [span for span in spans if span.attributes and "db.statement" in span.attributes]
    statements = " ".join(str(span.attributes["db.statement"]) for span in sql if span.attributes)
    assert "alembic_version" in statements
    scopes = {span.instrumentation_scope.name for span in sql if span.instrumentation_scope}
    assert scopes >= {
        "opentelemetry.instrumentation.sqlalchemy",
        "opentelemetry.instrumentation.asyncpg",
    }
    assert all(span.context.trace_id == trace_id for span in spans)
    shown = tree(spans)
    assert shown[0] == "GET /health (server)"
    assert all(line.startswith("  ") for line in shown[1:])  # everything inside the request
    print("\n".join(shown))  # the closing note's span tree: pytest -s shows it


def test_the_provider_is_configured_by_the_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    named_by_default = tracer_provider_from_environment()
    monkeypatch.setenv("OTEL_SERVICE_NAME", "orders-eu")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging")
    named = tracer_provider_from_environment()

    assert named_by_default.resource.attributes["service.name"] == DEFAULT_SERVICE_NAME
    assert named.resource.attributes["service.name"] == "orders-eu"
    assert named.resource.attributes["deployment.environment"] == "staging"
