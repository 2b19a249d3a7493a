"""Logs a platform collects: with ``LOG_FORMAT=json`` one JSON object per line, and every line
of a request carries the request's id, which the response sends back."""

import json
import re
from typing import Any

import pytest
from sqlalchemy import URL

from {{ cookiecutter.project_slug }}.main import create_app

from tests.api.conftest import serve
from tests.api.outage import PASSWORD, failing_database, impatient_settings

GENERATED_ID = re.compile(r"[0-9a-f]{32}")


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def test_a_request_id_is_taken_from_the_header_or_made_and_sent_back(
    migrated_database: URL,
) -> None:
    app = create_app(impatient_settings(migrated_database))
    async with serve(app) as client:
        given = await client.get("/health", headers={"X-Request-ID": "lb-7f3a:42"})
        made = await client.get("/health")
        unsafe = await client.get("/health", headers={"X-Request-ID": "a b\tc"})

    assert given.headers["x-request-id"] == "lb-7f3a:42"
    assert GENERATED_ID.fullmatch(made.headers["x-request-id"])
    assert GENERATED_ID.fullmatch(unsafe.headers["x-request-id"])  # replaced, not logged


async def test_a_failed_request_is_one_json_line_with_its_request_id(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], server_url: URL
) -> None:
    monkeypatch.setenv("LOG_FORMAT", "json")
    async with failing_database("refused", server_url) as url:
        app = create_app(impatient_settings(url))
        capsys.readouterr()
        async with serve(app) as client:
            response = await client.get("/health", headers={"X-Request-ID": "req-503"})
    lines = json_lines(capsys.readouterr().err)

    assert response.status_code == 503
    failed = [line for line in lines if line.get("event") == "request.database_unavailable"]
    assert len(failed) == 1, lines
    line = failed[0]
    assert list(line)[:4] == ["time", "level", "logger", "message"]
    assert line["level"] == "WARNING"
    assert line["request_id"] == "req-503"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/health", 503)
    assert line["database_cause"] == "refused"
    assert PASSWORD not in json.dumps(lines)
    print(json.dumps(line))  # the closing note's example: pytest -s shows it


async def test_text_logs_are_the_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], server_url: URL
) -> None:
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    async with failing_database("refused", server_url) as url:
        app = create_app(impatient_settings(url))
        capsys.readouterr()
        async with serve(app) as client:
            await client.get("/health")
    err = capsys.readouterr().err

    assert "WARNI [{{ cookiecutter.project_slug }}.api] GET /health: 503, cannot connect" in err
    assert not err.lstrip().startswith("{")
