"""The safety net of every migration, proved against real PostgreSQL and the real command line.

Deploy lock, lock timeouts with retries, concurrent index builds that fail and heal, sessions
idle in a transaction, timeouts in offline SQL. No timing is asserted, only outcomes.
"""

import asyncio
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
from sqlalchemy import URL, text

from {{ cookiecutter.project_slug }}.models import slug_base

from tests.conftest import connect, migrate, revision_at, revisions
from tests.migrations.conftest import alembic_command, run_alembic

NAMES = ["Ada Lovelace", "Grace Hopper", "Alan Turing"]


async def scalar(url: URL, sql: str) -> object:
    async with connect(url) as connection:
        return (await connection.execute(text(sql))).scalar()


async def alembic(*args: str, url: URL) -> tuple[int, str]:
    """Run alembic in a subprocess without blocking the event loop; return (code, stderr)."""
    command, env = alembic_command(*args, database_url=url)
    process = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=300)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


@pytest.fixture
def users_before_slug_index(create_database: Callable[[], URL]) -> URL:
    """A database at revision 3 (slugs backfilled, not yet indexed) holding three users."""
    url = create_database()
    migrate(url, revision_at(0))
    rows = [{"email": f"u{i}@example.com", "full_name": name} for i, name in enumerate(NAMES)]
    asyncio.run(
        _execute(url, "INSERT INTO users (email, full_name) VALUES (:email, :full_name)", rows)
    )
    migrate(url, revision_at(2))
    return url


async def _execute(
    url: URL, sql: str, parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None
) -> None:
    async with connect(url) as connection:
        await connection.execute(text(sql), parameters)
        await connection.commit()


async def index_state(url: URL, name: str) -> bool | None:
    """True/False for a valid/invalid index of that name, None when there is none."""
    async with connect(url) as connection:
        result = await connection.execute(
            text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"),
            {"name": name},
        )
        valid = result.scalar()
    return None if valid is None else bool(valid)


def test_eight_concurrent_deploys_all_succeed_and_migrate_once(
    create_database: Callable[[], URL],
) -> None:
    url = create_database()
    command, env = alembic_command("upgrade", "head", database_url=url)
    processes = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(8)
    ]
    results = [(process.communicate(timeout=300), process.returncode) for process in processes]

    failures = "\n\n".join(err[-3000:] for (_, err), code in results if code != 0)
    assert [code for _, code in results] == [0] * 8, failures
    applied = [re.findall(r"Running upgrade \S* -> (\w+)", err) for (_, err), _ in results]
    assert sorted(revision for ran in applied for revision in ran) == sorted(
        revisions()
    )  # each revision ran exactly once
    assert asyncio.run(scalar(url, "SELECT version_num FROM alembic_version")) == revisions()[-1]


async def test_ddl_behind_a_held_lock_gives_up_naming_the_holder(
    create_database: Callable[[], URL],
) -> None:
    url = create_database()
    before, phone = revision_at(4), revision_at(5)
    await asyncio.to_thread(migrate, url, before)
    async with connect(url) as holder:
        await holder.execute(text("LOCK TABLE users IN SHARE MODE"))
        holder_pid = (await holder.execute(text("SELECT pg_backend_pid()"))).scalar_one()

        code, stderr = await alembic(
            "-x", "lock_timeout=100ms", "-x", "lock_attempts=3", "upgrade", phone, url=url
        )

    assert code != 0
    assert len(re.findall(r"lock on users not granted \(attempt \d/3\)", stderr)) == 3
    assert "could not lock users after 3 attempts (lock_timeout 100ms each)" in stderr
    assert f"pid {holder_pid} (idle in transaction, ShareLock)" in stderr
    assert await scalar(url, "SELECT version_num FROM alembic_version") == before
    assert await scalar(url, "SELECT to_regclass('users') IS NOT NULL") is True
    columns = "SELECT count(*) FROM information_schema.columns WHERE column_name = 'phone'"
    assert await scalar(url, columns) == 0

    # With the lock released, the same deploy goes through.
    assert (await alembic("upgrade", phone, url=url))[0] == 0


async def test_failed_concurrent_index_is_left_invalid_and_healed_by_the_next_run(
    users_before_slug_index: URL,
) -> None:
    url = users_before_slug_index
    before, unique_slug = revision_at(2), revision_at(3)
    await _execute(url, "UPDATE users SET slug = 'duplicate' WHERE id IN (1, 2)")

    code, stderr = await alembic("upgrade", unique_slug, url=url)

    assert code != 0
    assert "building ix_users_slug concurrently failed" in stderr
    assert await index_state(url, "ix_users_slug") is False  # INVALID, as PostgreSQL leaves it
    assert await scalar(url, "SELECT version_num FROM alembic_version") == before

    for user_id in (1, 2):
        fixed = {"slug": f"{slug_base(NAMES[user_id - 1])}-{user_id}", "id": user_id}
        await _execute(url, "UPDATE users SET slug = :slug WHERE id = :id", fixed)
    code, stderr = await alembic("upgrade", unique_slug, url=url)

    assert code == 0, stderr
    assert "index ix_users_slug is INVALID (a failed earlier build): rebuilding it" in stderr
    assert await index_state(url, "ix_users_slug") is True
    assert await scalar(url, "SELECT version_num FROM alembic_version") == unique_slug


async def test_session_idle_in_transaction_makes_the_index_build_fail_fast(
    users_before_slug_index: URL,
) -> None:
    url = users_before_slug_index
    async with connect(url, isolation_level="REPEATABLE READ") as idle:
        await idle.execute(text("SELECT count(*) FROM users"))  # holds a snapshot, then idles
        idle_pid = (await idle.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        await asyncio.sleep(1.5)  # idle for over a second: not merely between two statements

        code, stderr = await alembic("upgrade", revision_at(3), url=url)

    assert code != 0
    assert "CREATE INDEX CONCURRENTLY would wait for sessions idle in a transaction" in stderr
    assert f"pid {idle_pid}: " in stderr
    assert await index_state(url, "ix_users_slug") is None
    assert await scalar(url, "SELECT version_num FROM alembic_version") == revision_at(2)


async def test_migration_that_failed_half_way_is_simply_run_again(
    create_database: Callable[[], URL],
) -> None:
    url = create_database()
    before, reviewer = revision_at(7), revision_at(8)
    await asyncio.to_thread(migrate, url, before)
    async with connect(url, isolation_level="REPEATABLE READ") as idle:
        await idle.execute(text("SELECT 1"))  # a snapshot, and no lock on posts
        await asyncio.sleep(1.5)

        code, stderr = await alembic("upgrade", reviewer, url=url)

    # The index build refused to start, after the new column had been committed.
    assert code != 0
    assert "not building ix_posts_reviewer_id" in stderr
    assert await scalar(url, "SELECT version_num FROM alembic_version") == before
    column = "SELECT count(*) FROM information_schema.columns WHERE column_name = 'reviewer_id'"
    assert await scalar(url, column) == 1

    code, stderr = await alembic("upgrade", reviewer, url=url)

    assert code == 0, stderr
    assert await scalar(url, "SELECT version_num FROM alembic_version") == reviewer
    assert await index_state(url, "ix_posts_reviewer_id") is True
    validated = (
        "SELECT convalidated FROM pg_constraint WHERE conname = 'fk_posts_reviewer_id_users'"
    )
    assert await scalar(url, validated) is True


async def test_valid_index_with_another_definition_is_refused(users_before_slug_index: URL) -> None:
    url = users_before_slug_index
    await _execute(url, "CREATE INDEX ix_users_slug ON users (full_name)")

    code, stderr = await alembic("upgrade", revision_at(3), url=url)

    assert code != 0
    assert "index ix_users_slug exists with another definition" in stderr
    assert "CREATE INDEX ix_users_slug ON public.users USING btree (full_name)" in stderr


def test_offline_sql_starts_with_the_timeouts() -> None:
    default = run_alembic("upgrade", "head", "--sql", database_url=None)
    custom = run_alembic(
        "-x",
        "lock_timeout=2s",
        "-x",
        "statement_timeout=1h",
        "upgrade",
        "head",
        "--sql",
        database_url=None,
    )

    assert default.returncode == 0, default.stderr
    assert "SET lock_timeout = '5s';" in default.stdout
    assert "SET statement_timeout = '10min';" in default.stdout
    assert "SET lock_timeout = '2s';" in custom.stdout
    assert "SET statement_timeout = '1h';" in custom.stdout


def test_a_bad_migration_setting_is_refused_before_anything_runs() -> None:
    result = run_alembic("-x", "lock_timeout=soon", "upgrade", "head", "--sql", database_url=None)

    assert result.returncode != 0
    assert "Invalid migration setting" in result.stderr
    assert "expected a PostgreSQL duration" in result.stderr


def test_a_misspelled_setting_is_refused_with_the_known_ones() -> None:
    result = run_alembic("-x", "lock_timout=1s", "upgrade", "head", "--sql", database_url=None)

    assert result.returncode != 0
    assert "Unknown -x setting(s): lock_timout." in result.stderr
    assert "Known: lock_timeout, statement_timeout," in result.stderr
    assert "batch_size" in result.stderr
