"""An app per test whose sessions share one transaction, rolled back after the test."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import URL
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from {{ cookiecutter.project_slug }}.db.session import get_session
from {{ cookiecutter.project_slug }}.main import create_app
from {{ cookiecutter.project_slug }}.settings import Settings


def settings_for(url: URL) -> Settings:
    return Settings(database_url=url.render_as_string(hide_password=False))


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[AsyncClient]:
    """A client of ``app`` with its start-up and shut-down run, as uvicorn would."""
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


@pytest.fixture(scope="session")
async def engine(migrated_database: URL) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(migrated_database)
    yield engine
    await engine.dispose()


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection inside a transaction that is rolled back: nothing a test writes remains."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        yield connection
        await transaction.rollback()


@pytest.fixture
async def client(connection: AsyncConnection, migrated_database: URL) -> AsyncIterator[AsyncClient]:
    # Each commit of the app becomes a savepoint release inside the test's transaction.
    factory = async_sessionmaker(
        bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )

    async def session_in_test_transaction() -> AsyncIterator[AsyncSession]:
        async with factory() as session:
            yield session

    app = create_app(settings_for(migrated_database))
    app.dependency_overrides[get_session] = session_in_test_transaction
    async with serve(app) as client:
        yield client
