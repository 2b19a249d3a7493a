"""What each later lesson promises, checked on a real database at its revision."""

import re
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from alembic import command
from alembic_pgsafe.trace import trace_revisions
from sqlalchemy import URL, Executable, Row, column, insert, table, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from {{ cookiecutter.project_slug }}.settings import PROJECT_ROOT

from tests.conftest import alembic_config, migrate, revision_at, run_blocking
from tests.migrations.conftest import run_alembic, run_backfills

pytestmark = pytest.mark.slow  # each lesson migrated on a database of its own: make test-all
PHONE, EXPAND_RENAME, CONTRACT_RENAME, REVIEWER, TRIM = 5, 6, 7, 8, 9  # places in the chain
STATUS, SCHEDULE_CREATED_ON, REQUIRE_CREATED_ON = 10, 11, 12
users = table(
    "users",
    column("id"),
    column("email"),
    column("full_name"),
    column("slug"),
    column("phone"),
    column("phone_number"),
)


def sql(
    url: URL, statement: str | Executable, parameters: Mapping[str, Any] | None = None
) -> list[Row[Any]]:
    async def run() -> list[Row[Any]]:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                query = text(statement) if isinstance(statement, str) else statement
                result = await connection.execute(query, parameters)
                return list(result.all()) if result.returns_rows else []
        finally:
            await engine.dispose()

    return run_blocking(run())


def add_user(url: URL, email: str, **phones: str) -> int:
    values = {"email": email, "full_name": "Test User", "slug": f"test-{email}", **phones}
    return int(sql(url, insert(users).values(values).returning(users.c.id))[0].id)


def phones(url: URL) -> dict[int, tuple[str | None, str | None]]:
    return {row.id: (row.phone, row.phone_number) for row in sql(url, "SELECT * FROM users")}


def test_rename_expand_copies_and_keeps_both_columns_in_step(
    create_database: Callable[[], URL],
) -> None:
    url = create_database()
    migrate(url, revision_at(PHONE))
    before = add_user(url, "old@example.com", phone="+100")

    migrate(url, revision_at(EXPAND_RENAME))
    old_release = add_user(url, "a@example.com", phone="+111")  # writes the old column only
    new_release = add_user(url, "b@example.com", phone_number="+222")  # the new one only
    sql(url, "UPDATE users SET phone_number = '+333' WHERE id = :id", {"id": old_release})

    assert phones(url) == {
        before: ("+100", "+100"),
        old_release: ("+333", "+333"),
        new_release: ("+222", "+222"),
    }


def test_rename_contract_drops_the_old_column_and_downgrade_restores_it(
    create_database: Callable[[], URL],
) -> None:
    url = create_database()
    migrate(url, revision_at(CONTRACT_RENAME))
    user = sql(
        url,
        "INSERT INTO users (email, full_name, slug, phone_number)"
        " VALUES ('c@example.com', 'C', 'c', '+444') RETURNING id",
    )[0].id
    columns = "SELECT column_name FROM information_schema.columns WHERE table_name = 'users'"
    assert "phone" not in {row.column_name for row in sql(url, columns)}

    downgrade = alembic_config(create_async_engine(url, poolclass=NullPool))
    command.downgrade(downgrade, revision_at(EXPAND_RENAME))

    assert phones(url) == {user: ("+444", "+444")}


def test_reviewer_foreign_key_ends_validated_with_set_null(
    create_database: Callable[[], URL],
) -> None:
    url = create_database()
    migrate(url, revision_at(REVIEWER))

    rows = sql(
        url,
        "SELECT convalidated, confdeltype::text FROM pg_constraint"
        " WHERE conname = 'fk_posts_reviewer_id_users'",
    )

    assert [(row.convalidated, row.confdeltype) for row in rows] == [(True, "n")]


def test_titles_are_trimmed_in_batches(create_database: Callable[[], URL]) -> None:
    url = create_database()
    migrate(url, revision_at(REVIEWER))
    author_row = (
        "INSERT INTO users (email, full_name, slug) VALUES ('d@x.org', 'D', 'd') RETURNING id"
    )
    author = sql(url, author_row)[0].id
    for title in ("  Hello  ", "Clean", "\tTabbed"):
        sql(
            url,
            "INSERT INTO posts (author_id, title, body) VALUES (:author, :title, 'x')",
            {"author": author, "title": title},
        )

    migrate(url, revision_at(TRIM))

    titles = [row.title for row in sql(url, "SELECT title FROM posts ORDER BY id")]
    assert titles == ["Hello", "Clean", "\tTabbed"]  # btrim trims spaces only, as written


def test_batch_size_of_the_run_reaches_every_backfill(create_database: Callable[[], URL]) -> None:
    url = create_database()
    migrate(url, revision_at(REVIEWER))
    sql(url, "INSERT INTO users (email, full_name, slug) VALUES ('e@x.org', 'E', 'e')")
    sql(
        url,
        "INSERT INTO posts (author_id, title, body)"
        " SELECT (SELECT min(id) FROM users), ' title ' || g, 'x' FROM generate_series(1, 12) g",
    )

    result = run_alembic("-x", "batch_size=5", "upgrade", revision_at(TRIM), database_url=url)

    assert result.returncode == 0, result.stderr
    assert "posts.title: 12 rows to fill, batches of 5" in result.stderr
    assert re.search(r"posts\.title: 12 rows in [\d.]+ s \(3 batches\)", result.stderr)  # 5+5+2


def test_created_on_is_backfilled_after_the_deploy_and_required_before_not_null(
    create_database: Callable[[], URL],
) -> None:
    url = create_database()
    migrate(url, revision_at(STATUS))
    sql(url, "INSERT INTO users (email, full_name, slug) VALUES ('f@x.org', 'F', 'f')")
    sql(
        url,
        "INSERT INTO posts (author_id, title, body, created_at) SELECT (SELECT min(id) FROM users),"
        " 'p' || g, 'x', timestamptz '2026-03-01 22:00:00+00' + g * interval '1 hour'"
        " FROM generate_series(1, 400) AS g",
    )
    not_yet = "SELECT count(*) AS n FROM posts WHERE created_on IS NULL"
    current = "SELECT version_num FROM alembic_version"

    deploy = run_alembic("upgrade", revision_at(SCHEDULE_CREATED_ON), database_url=url)

    assert deploy.returncode == 0, deploy.stderr
    assert "posts.created_on: scheduled; run 'make backfill' once this deploy is done" in (
        deploy.stderr
    )
    assert sql(url, not_yet)[0].n == 400  # the deploy filled nothing
    # A post of either release inserted from now on gets its day from the trigger.
    sql(url, "INSERT INTO posts (author_id, title, body) SELECT min(id), 'new', 'x' FROM users")
    assert sql(url, not_yet)[0].n == 400

    early = run_alembic("upgrade", "head", database_url=url)

    assert early.returncode != 0
    assert (
        "FAILED: backfill 'posts.created_on' is not finished (pending, not started). This revision"
        " relies on its data: run 'make backfill' against this database"
    ) in early.stdout
    assert sql(url, current)[0].version_num == revision_at(SCHEDULE_CREATED_ON)

    backfill = run_backfills("run", database_url=url)
    status = run_backfills("status", database_url=url)

    assert backfill.returncode == 0, backfill.stdout + backfill.stderr
    assert "posts.created_on: finished, 400 rows filled" in backfill.stdout
    assert status.stdout.startswith("posts.created_on: finished, 400 rows, at ")
    wrong_day = (
        "SELECT count(*) AS n FROM posts WHERE created_on <> (created_at AT TIME ZONE 'UTC')::date"
    )
    assert sql(url, wrong_day)[0].n == 0
    days = "SELECT count(DISTINCT created_on) AS n FROM posts WHERE title <> 'new'"
    assert sql(url, days)[0].n == 18  # 1 to 18 March, UTC

    later = run_alembic("upgrade", "head", database_url=url)

    assert later.returncode == 0, later.stderr
    not_null = "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'posts'::regclass"
    assert sql(url, f"{not_null} AND attname = 'created_on'")[0].attnotnull is True


TRACED = (
    "0004_users_slug_unique_not_null.py",
    "0009_add_posts_reviewer.py",
    "0007_expand_users_phone_number.py",
    "0008_contract_users_phone.py",
)


def trace_columns(markdown: str) -> list[list[str]]:
    """Each row of a trace table, without the milliseconds and a backfill's batch count."""
    rows = []
    for line in markdown.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        cells[0] = re.sub(r" \(x\d+\)`$", "`", cells[0])
        rows.append(cells[:3] + cells[4:])
    return rows


def test_the_playbook_shows_the_lessons_as_make_trace_traces_them(
    create_database: Callable[[], URL],
) -> None:
    playbook = (PROJECT_ROOT / "MIGRATIONS.md").read_text(encoding="utf-8")
    shown = {
        name: trace_columns(playbook.split(f"\n#### {name}\n", 1)[1].split("\n#", 1)[0])
        for name in TRACED
    }

    traces = trace_revisions(create_database(), str(PROJECT_ROOT / "alembic.ini"), rows=10_000)

    traced = {trace.file: trace_columns(trace.markdown()) for trace in traces}
    assert {name: traced[name] for name in TRACED} == shown
    assert all(trace.failures == [] for trace in traces), [t.failures for t in traces]
