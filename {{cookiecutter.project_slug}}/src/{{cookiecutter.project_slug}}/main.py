"""The FastAPI application: ``uvicorn {{ cookiecutter.project_slug }}.main:app``."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
{%- if cookiecutter.tracing == "otlp" %}
from opentelemetry.sdk.trace import TracerProvider
{%- endif %}

from {{ cookiecutter.project_slug }}.api import register_routes
from {{ cookiecutter.project_slug }}.api.errors import register_error_handlers
from {{ cookiecutter.project_slug }}.db.session import create_engine, create_session_factory
from {{ cookiecutter.project_slug }}.observability.logs import add_request_ids, setup_logging
{%- if cookiecutter.metrics == "yes" %}
from {{ cookiecutter.project_slug }}.observability.metrics import add_metrics
{%- endif %}
{%- if cookiecutter.tracing == "otlp" %}
from {{ cookiecutter.project_slug }}.observability.tracing import (
    trace_requests,
    trace_sql,
    tracer_provider_from_environment,
)
{%- endif %}
from {{ cookiecutter.project_slug }}.settings import Settings, get_settings


def create_app(
    settings: Settings | None = None,
{%- if cookiecutter.tracing == "otlp" %}
    *,
    tracer_provider: TracerProvider | None = None,
{%- endif %}
) -> FastAPI:
    """Build the app; settings are read from the environment at start-up unless given
{%- if cookiecutter.tracing == "otlp" %}
    (traces go where the ``OTEL_*`` variables say unless ``tracer_provider`` is given)
{%- endif %}."""
    setup_logging()
{%- if cookiecutter.tracing == "otlp" %}
    provider = tracer_provider or tracer_provider_from_environment()
{%- endif %}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings or get_settings()
        app.state.engine = engine = create_engine(app.state.settings)
{%- if cookiecutter.tracing == "otlp" %}
        trace_sql(engine, provider)
{%- endif %}
        app.state.session_factory = create_session_factory(engine)
        try:
            yield
        finally:
            await engine.dispose()
{%- if cookiecutter.tracing == "otlp" %}
            if tracer_provider is None:
                provider.shutdown()  # what the last requests' spans still wait for is sent
{%- endif %}

    app = FastAPI(
        title="{{ cookiecutter.project_name }}",
        lifespan=lifespan,
    )
    register_error_handlers(app)
    register_routes(app)
{%- if cookiecutter.metrics == "yes" %}
    add_metrics(app)
{%- endif %}
{%- if cookiecutter.tracing == "otlp" %}
    trace_requests(app, provider)
{%- endif %}
    add_request_ids(app)  # the outermost middleware: every log line of a request has its id
    return app


app = create_app()
