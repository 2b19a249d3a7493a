"""OpenTelemetry traces: each request a span, the SQL it ran spans beneath it (SQLAlchemy's
statements and asyncpg's round trips), exported by OTLP.

Configured only by the standard variables, as every OpenTelemetry SDK is:
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; default
``http://localhost:4318``, OTLP over HTTP), ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_SERVICE_NAME``
(default: ``{{ cookiecutter.project_slug }}``), ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER``/``OTEL_TRACES_SAMPLER_ARG``, ``OTEL_TRACES_EXPORTER`` (``otlp``,
``console`` or ``none``), ``OTEL_SDK_DISABLED=true`` to turn it off, and
``OTEL_PYTHON_FASTAPI_EXCLUDED_URLS`` (say ``health,metrics``) for routes not worth a trace.
"""

import os

from fastapi import FastAPI
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from sqlalchemy.ext.asyncio import AsyncEngine

DEFAULT_SERVICE_NAME = "{{ cookiecutter.project_slug }}"


def tracer_provider_from_environment() -> TracerProvider:
    """The provider the ``OTEL_*`` variables describe."""
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)
    exporter: SpanExporter | None
    match os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower():
        case "none":
            exporter = None
        case "console":
            exporter = ConsoleSpanExporter()
        case _:
            exporter = OTLPSpanExporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def trace_requests(app: FastAPI, provider: TracerProvider) -> None:
    """A span for every request ``app`` serves."""
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)


def trace_sql(engine: AsyncEngine, provider: TracerProvider) -> None:
    """A span for every statement ``engine`` runs, and for asyncpg's calls beneath it.

    Both instrumentations are one per process: the app's last start-up (one, in a service;
    one per test app in its tests) decides where their spans go."""
    statements = SQLAlchemyInstrumentor()
    if statements.is_instrumented_by_opentelemetry:
        statements.uninstrument()
    # Its package declares SQLAlchemy < 2.1, which it predates; the engine events it uses are
    # unchanged in 2.1, and tests/api/test_tracing.py sees the statements' spans.
    statements.instrument(engine=engine.sync_engine, tracer_provider=provider, skip_dep_check=True)
    calls = AsyncPGInstrumentor()  # type: ignore[no-untyped-call]
    if calls.is_instrumented_by_opentelemetry:
        calls.uninstrument()
    calls.instrument(tracer_provider=provider)
