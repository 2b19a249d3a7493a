"""With the database down, every route of the example API answers a 503 problem, each request
logged in one line."""

import pytest
from alembic_pgsafe.connect import where
from sqlalchemy import URL

from {{ cookiecutter.project_slug }}.main import create_app

from tests.api.conftest import serve
from tests.api.outage import (
    PASSWORD,
    assert_database_problem,
    assert_log_is_clean,
    database_log_lines,
    impatient_settings,
)
from tests.servers import free_port

ADA = {"email": "ada@example.com", "full_name": "Ada Lovelace"}
POST = {"author_id": 1, "title": "Hello", "body": "First post."}
REQUESTS = [
    ("GET", "/users", None),
    ("POST", "/users", ADA),
    ("GET", "/users/1", None),
    ("GET", "/posts", None),
    ("POST", "/posts", POST),
    ("GET", "/posts/1", None),
    ("GET", "/health", None),
]


async def test_every_route_answers_503_and_logs_one_line_per_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = URL.create(
        "postgresql+asyncpg", "app", PASSWORD, "127.0.0.1", free_port(), database="app"
    )
    async with serve(create_app(impatient_settings(down))) as client:
        for method, path, body in REQUESTS:
            caplog.clear()
            response = await client.request(method, path, json=body)

            assert_database_problem(response)
            assert_log_is_clean(caplog)
            [line] = database_log_lines(caplog)
            message = line.getMessage()
            assert message.startswith(f"{method} {path}: 503, cannot connect to {where(down)}: ")
            assert message.count("refused") == 1
