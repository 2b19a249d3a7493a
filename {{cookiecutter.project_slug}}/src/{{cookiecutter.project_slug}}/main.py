"""The FastAPI application: ``uvicorn {{ cookiecutter.project_slug }}.main:app``."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from {{ cookiecutter.project_slug }}.api import register_routes
from {{ cookiecutter.project_slug }}.api.errors import register_error_handlers
from {{ cookiecutter.project_slug }}.db.session import create_engine, create_session_factory
from {{ cookiecutter.project_slug }}.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; settings are read from the environment at start-up unless given."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings or get_settings()
        engine = create_engine(app.state.settings)
        app.state.session_factory = create_session_factory(engine)
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(
        title="{{ cookiecutter.project_name }}",
        lifespan=lifespan,
    )
    register_error_handlers(app)
    register_routes(app)
    return app


app = create_app()
