"""alembic-pgsafe squash: the fixture project's five revisions squashed up to their head and up
to a middle revision, each in a copy of the project (a git repository of its own), checked on
real databases.

A new database built by the squashed chain dumps as one built by the old chain; a database at
or past the baseline's revision runs nothing of it; one behind it is refused in one line;
``alembic-pgsafe lint``, offline SQL (``--sql``) and ``alembic check`` pass on the squashed copy.
"""

import importlib.util
import itertools
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import URL, text

from alembic_pgsafe.squash import (
    SquashError,
    behind_baseline,
    choose_pg_dump,
    plan_squash,
    squashed_files,
)
from tests.conftest import (
    PROJECT,
    TOOLKIT,
    CreateDatabase,
    as_admin,
    command_environment,
    connect,
    migrate,
    revisions,
    run_alembic,
    run_blocking,
)
from tests.project_copy import copy_project

pytestmark = pytest.mark.slow  # two squashes, the history migrated on a dozen databases
MIDDLE = 2  # 0003, whose trigger fills users.slug, which 0004, left after the baseline, requires
BEHIND = 1  # 0002
RUNNING = re.compile(r"Running upgrade (\w*) -> (\w+)")


# --- a copy of the project, squashed ---------------------------------------------------------


def git(root: Path, *arguments: str) -> str:
    identity = ("-c", "user.name=Test", "-c", "user.email=test@example.com")
    done = subprocess.run(
        ["git", *identity, *arguments], cwd=root, capture_output=True, text=True, check=True
    )
    return done.stdout


def project_copy(root: Path) -> Path:
    """alembic.ini, the migrations and the linters' settings in ``root``, committed."""
    root.mkdir(parents=True)
    copy_project(root)
    git(root, "init", "--quiet")
    git(root, "add", "--all")
    git(root, "commit", "--quiet", "--message", "the fixture project")
    return root


def toolkit(
    *arguments: str, database_url: URL | None, cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TOOLKIT, *arguments],
        cwd=cwd,
        env=command_environment(database_url),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@dataclass(frozen=True)
class Squashed:
    root: Path
    target: str
    """The revision squashed up to: the baseline's id."""
    old_chain: list[str]

    @property
    def alembic_ini(self) -> Path:
        return self.root / "alembic.ini"

    @property
    def versions(self) -> Path:
        return self.root / "migrations" / "versions"

    def alembic(self, *arguments: str, url: URL | None) -> subprocess.CompletedProcess[str]:
        return run_alembic(
            *arguments, database_url=url, cwd=self.root, alembic_ini=self.alembic_ini
        )

    def baseline(self) -> ModuleType:
        [path] = self.versions.glob("*_baseline.py")
        spec = importlib.util.spec_from_file_location(f"baseline_{uuid.uuid4().hex}", path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


def squash_copy(root: Path, index: int, database_url: URL) -> Squashed:
    chain = revisions()
    project_copy(root)
    done = toolkit(
        "squash",
        "--to",
        chain[index],
        "--config",
        str(root / "alembic.ini"),
        database_url=database_url,
        cwd=root,
    )
    assert done.returncode == 0, done.stderr
    return Squashed(root, chain[index], chain)


@pytest.fixture(scope="module")
def empty_database(create_database: CreateDatabase) -> URL:
    """DATABASE_URL for the squash: its scratch databases are made on this one's server."""
    return create_database()


@pytest.fixture(scope="module")
def squashed_head(tmp_path_factory: pytest.TempPathFactory, empty_database: URL) -> Squashed:
    return squash_copy(tmp_path_factory.mktemp("squash") / "head", -1, empty_database)


@pytest.fixture(scope="module")
def squashed_middle(tmp_path_factory: pytest.TempPathFactory, empty_database: URL) -> Squashed:
    return squash_copy(tmp_path_factory.mktemp("squash") / "middle", MIDDLE, empty_database)


@pytest.fixture(params=["head", "middle"])
def squashed(request: pytest.FixtureRequest) -> Squashed:
    fixture: Squashed = request.getfixturevalue(f"squashed_{request.param}")
    return fixture


# --- databases built by the old chain, cloned ----------------------------------------------------


OldChainAt = Callable[..., URL]


@pytest.fixture(scope="module")
def old_chain_at(server_url: URL, create_database: CreateDatabase) -> Iterator[OldChainAt]:
    """A database at the index-th revision of the old chain: migrated there once, then copied
    (CREATE DATABASE ... TEMPLATE) for each test that changes it, or read as it is."""
    templates: dict[int, URL] = {}
    clones: list[str] = []

    def at(index: int, *, copy: bool = True) -> URL:
        index %= len(revisions())
        if index not in templates:
            templates[index] = create_database()
            migrate(templates[index], revisions()[index])
        if not copy:
            return templates[index]
        name = f"test_squash_{uuid.uuid4().hex[:12]}"
        template = templates[index].database or ""
        clone = "CREATE DATABASE {database} TEMPLATE {template}"
        run_blocking(as_admin(server_url, clone, database=name, template=template))
        clones.append(name)
        return server_url.set(database=name)

    yield at
    for name in clones:
        drop = "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
        run_blocking(as_admin(server_url, drop, database=name))


def query(url: URL, sql: str) -> list[tuple[object, ...]]:
    async def read() -> list[tuple[object, ...]]:
        async with connect(url) as connection:
            return [tuple(row) for row in await connection.execute(text(sql))]

    return run_blocking(read())


def version(url: URL) -> list[str]:
    async def read() -> list[str]:
        async with connect(url) as connection:
            result = await connection.execute(text("SELECT version_num FROM alembic_version"))
            return sorted(row[0] for row in result)

    return run_blocking(read())


# --- schemas compared ----------------------------------------------------------------------------


def _pg_tools(url: URL) -> tuple[str, str]:
    async def major() -> int:
        async with connect(url) as connection:
            number = await connection.execute(text("SHOW server_version_num"))
            return int(number.scalar_one()) // 10000

    pg_dump, _ = choose_pg_dump(run_blocking(major()))
    return pg_dump, str(Path(pg_dump).with_name("psql"))


def _libpq(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


NOISE = re.compile(
    r"^(--.*|\\(restrict|unrestrict) .*|SET .*|SELECT pg_catalog\.set_config\(.*"
    r"|ALTER TABLE ONLY \S+ ALTER COLUMN \S+ SET \(pg_attver=\d+\);|\s*)$"
)
"""pg_dump's comments, psql meta-commands, session settings, blank lines, and a patched
server's per-column stamps (Debian's 15.20 sets pg_attver on every column)."""


def _dump(url: URL) -> str:
    pg_dump, _ = _pg_tools(url)
    options = ["--schema-only", "--no-owner", "--no-privileges"]
    done = subprocess.run(
        [pg_dump, *options, f"--dbname={_libpq(url)}"], capture_output=True, text=True, check=True
    )
    return done.stdout


def schema(url: URL) -> str:
    """``pg_dump --schema-only`` of ``url``, without comments, settings and noise."""
    return "\n".join(line for line in _dump(url).splitlines() if not NOISE.match(line))


@pytest.fixture(scope="module")
def read_back(create_database: CreateDatabase) -> Callable[[URL], str]:
    """The schema of a database as PostgreSQL reads its dump back: restored (psql) into an
    empty database and dumped again, so that an expression it prints in a form it reads back
    as another (the ``IN`` list of a CHECK) is compared in one form."""
    again = create_database()

    def read(url: URL) -> str:
        _, psql = _pg_tools(url)
        reset = "DROP SCHEMA public CASCADE; CREATE SCHEMA public;\n"
        subprocess.run(
            [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", f"--dbname={_libpq(again)}"],
            input=reset + _dump(url),
            capture_output=True,
            text=True,
            check=True,
        )
        return schema(again)

    return read


# --- the tests ----------------------------------------------------------------------------------


def test_the_squashed_revisions_are_replaced_by_a_baseline_with_the_last_ones_id(
    squashed: Squashed,
) -> None:
    upto = squashed.old_chain.index(squashed.target)
    baseline = squashed.baseline()
    script = ScriptDirectory.from_config(Config(squashed.alembic_ini))
    script_before = ScriptDirectory.from_config(Config(PROJECT / "alembic.ini"))
    chain = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    staged = git(squashed.root, "status", "--porcelain").splitlines()

    assert (baseline.revision, baseline.down_revision) == (squashed.target, None)
    assert baseline.squashes == tuple(squashed.old_chain[: upto + 1])
    assert chain == [squashed.target, *squashed.old_chain[upto + 1 :]]
    assert sorted(line[:2] for line in staged) == ["A ", *["D "] * (upto + 1)]
    assert set(squashed_files(script)) == {
        Path(str(script_before.get_revision(rev).path)).name
        for rev in squashed.old_chain[: upto + 1]
    }


def test_a_new_database_built_by_the_squashed_chain_is_the_one_the_old_chain_builds(
    squashed: Squashed,
    create_database: CreateDatabase,
    old_chain_at: OldChainAt,
    read_back: Callable[[URL], str],
) -> None:
    new = create_database()
    built = squashed.alembic("upgrade", "head", url=new)
    check = squashed.alembic("check", url=new)

    assert built.returncode == 0, built.stderr
    assert version(new) == [squashed.old_chain[-1]]
    assert read_back(new) == read_back(old_chain_at(-1, copy=False))
    assert check.returncode == 0, check.stderr  # make check: the models and the database agree


def test_the_squashed_chain_downgrades_to_an_empty_database_and_upgrades_again(
    squashed_middle: Squashed, create_database: CreateDatabase
) -> None:
    url = create_database()
    assert squashed_middle.alembic("upgrade", "head", url=url).returncode == 0
    built = schema(url)

    # The revision after the baseline, then the baseline's own downgrade.
    down = squashed_middle.alembic("downgrade", "base", url=url)
    emptied = schema(url)
    up = squashed_middle.alembic("upgrade", "head", url=url)

    assert down.returncode == 0, down.stderr
    created = [line for line in emptied.splitlines() if line.startswith("CREATE")]
    assert created == ["CREATE TABLE public.alembic_version ("]  # Alembic's own, left empty
    assert up.returncode == 0, up.stderr
    assert schema(url) == built


def test_a_database_at_the_baseline_or_past_it_runs_none_of_it(
    squashed: Squashed, old_chain_at: OldChainAt
) -> None:
    at = old_chain_at(squashed.old_chain.index(squashed.target))
    past = old_chain_at(-1)
    past_schema = schema(past)

    from_at = squashed.alembic("upgrade", "head", url=at)
    from_past = squashed.alembic("upgrade", "head", url=past)

    assert from_at.returncode == 0, from_at.stderr
    assert from_past.returncode == 0, from_past.stderr
    after = squashed.old_chain[squashed.old_chain.index(squashed.target) :]
    assert RUNNING.findall(from_at.stderr) == list(itertools.pairwise(after))
    assert RUNNING.findall(from_past.stderr) == []
    assert version(at) == version(past) == [squashed.old_chain[-1]]
    assert schema(past) == past_schema


def test_a_database_behind_the_baseline_is_refused_in_one_line(
    squashed: Squashed, old_chain_at: OldChainAt
) -> None:
    behind = old_chain_at(BEHIND)
    git(squashed.root, "commit", "--quiet", "--message", "squash")
    squash_commit = git(squashed.root, "rev-parse", "--short", "HEAD").strip()

    refused = squashed.alembic("upgrade", "head", url=behind)
    last = refused.stderr.strip().splitlines()[-1]

    git(squashed.root, "reset", "--quiet", "--soft", "HEAD^")  # the squash staged again
    assert refused.returncode == 1
    assert last.startswith(f"FAILED: This database is at {squashed.old_chain[BEHIND]}, a revision")
    assert f"the baseline {squashed.target} (" in last
    assert f"git checkout {squash_commit}^ && alembic upgrade head && git checkout -" in last
    assert "Can't locate revision" not in refused.stderr
    assert version(behind) == [squashed.old_chain[BEHIND]]


def test_make_lint_make_sql_and_ruff_pass_after_the_squash(squashed: Squashed) -> None:
    lint = toolkit("lint", str(squashed.alembic_ini), database_url=None, cwd=squashed.root)
    sql = squashed.alembic("upgrade", "head", "--sql", url=None)
    ruff = [sys.executable, "-m", "ruff"]
    checked = subprocess.run(
        [*ruff, "check", "migrations"],
        cwd=squashed.root,
        capture_output=True,
        text=True,
        check=False,
    )
    formatted = subprocess.run(
        [*ruff, "format", "--check", "migrations"],
        cwd=squashed.root,
        capture_output=True,
        text=True,
        check=False,
    )

    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert sql.returncode == 0, sql.stderr
    assert "CREATE TABLE public.users" in sql.stdout  # the baseline's, as pg_dump wrote it
    assert "-- squawk-ignore ban-alter-identity" in sql.stdout
    assert checked.returncode == 0, checked.stdout
    assert formatted.returncode == 0, formatted.stdout


def test_squashing_again_replaces_what_the_first_baseline_replaced(
    squashed_middle: Squashed,
) -> None:
    script = ScriptDirectory.from_config(Config(squashed_middle.alembic_ini))
    plan = plan_squash(script, "head")
    message = behind_baseline(script, [squashed_middle.old_chain[BEHIND]])

    assert plan.squashes == tuple(squashed_middle.old_chain)
    assert message is not None
    assert f"baseline {squashed_middle.target} (" in message
    assert behind_baseline(script, [squashed_middle.target]) is None
    assert behind_baseline(script, []) is None


def test_squash_refuses_a_revision_not_on_the_chain_or_a_history_that_branches(
    tmp_path: Path, empty_database: URL
) -> None:
    root = project_copy(tmp_path / "project")
    chain = revisions()
    branch = root / "migrations" / "versions" / "0099_a_branch.py"
    branch.write_text(
        f'"""A second branch."""\n\nrevision = "0099abcdef00"\ndown_revision = "{chain[1]}"\n'
        "\n\ndef upgrade() -> None:\n    pass\n\n\ndef downgrade() -> None:\n    pass\n"
    )
    arguments = ("--config", str(root / "alembic.ini"))
    url = empty_database

    unknown = toolkit("squash", "--to", "nosuch", *arguments, database_url=url, cwd=root)
    branched = toolkit("squash", "--to", chain[3], *arguments, database_url=url, cwd=root)

    assert unknown.returncode == 1
    assert unknown.stderr.startswith("squash: no revision 'nosuch' to squash up to")
    assert branched.returncode == 1
    assert branched.stderr.startswith(f"squash: the history up to {chain[3]} is not one line")
    assert f"0099abcdef00 (0099_a_branch.py) branches off {chain[1]}" in branched.stderr
    for refused in (unknown, branched):
        assert len(refused.stderr.strip().splitlines()) == 1
    assert len(list(branch.parent.glob("*.py"))) == len(chain) + 1  # nothing deleted


def test_squash_refuses_while_its_own_database_is_behind(
    tmp_path: Path, old_chain_at: OldChainAt
) -> None:
    root = project_copy(tmp_path / "project")
    target = revisions()[-1]
    behind = old_chain_at(BEHIND, copy=False)

    refused = toolkit(
        "squash",
        "--to",
        target,
        "--config",
        str(root / "alembic.ini"),
        database_url=behind,
        cwd=root,
    )

    assert refused.returncode == 1
    assert f"is at {revisions()[BEHIND]}, below {target}" in refused.stderr
    assert "Migrate it first ('alembic upgrade head'); nothing was changed" in refused.stderr
    assert git(root, "status", "--porcelain") == ""


def test_plan_squash_names_what_it_cannot_find() -> None:
    script = ScriptDirectory.from_config(Config(PROJECT / "alembic.ini"))

    with pytest.raises(SquashError, match="nothing to squash: no revision comes before"):
        plan_squash(script, revisions()[0])


AWKWARD = '''"""Rows, a function and SQL that is awkward to write back into Python.

Revision ID: feedc0de0006
"""

from alembic import op

from alembic_pgsafe import literal_sql

revision = "feedc0de0006"
down_revision = "{parent}"


def upgrade() -> None:
    op.execute(
        literal_sql(
            "CREATE TABLE plans (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
            " name text NOT NULL CHECK (name LIKE '%:%'), note text DEFAULT E'a\\\\tb\\\\\\\\c')"
        )
    )
    op.execute(literal_sql("INSERT INTO plans (name) VALUES ('basic: 50%'), ('pro: \\"x\\"')"))
    # A SQL function's body is checked when it is created; pg_dump writes it before the table.
    body = "SELECT count(*)   \\n FROM plans"  # a line that ends in blanks
    op.execute(f"CREATE FUNCTION plan_count() RETURNS bigint LANGUAGE sql AS '{body}'")


def downgrade() -> None:
    op.execute("DROP FUNCTION plan_count()")
    op.execute("DROP TABLE plans")
'''


def test_rows_functions_and_sql_awkward_in_python_squash_too(
    tmp_path: Path,
    empty_database: URL,
    create_database: CreateDatabase,
    read_back: Callable[[URL], str],
) -> None:
    root = project_copy(tmp_path / "project")
    awkward = AWKWARD.replace("{parent}", revisions()[-1])
    (root / "migrations" / "versions" / "0006_awkward.py").write_text(awkward)
    config = ("--config", str(root / "alembic.ini"))
    old = create_database()
    built_old = run_alembic(
        "upgrade", "head", database_url=old, cwd=root, alembic_ini=root / "alembic.ini"
    )
    assert built_old.returncode == 0, built_old.stderr

    done = toolkit("squash", "--to", "feedc0de0006", *config, database_url=empty_database, cwd=root)
    new = create_database()
    built_new = run_alembic(
        "upgrade", "head", database_url=new, cwd=root, alembic_ini=root / "alembic.ini"
    )

    assert done.returncode == 0, done.stderr
    assert built_new.returncode == 0, built_new.stderr
    assert read_back(new) == read_back(old)
    rows = "SELECT id, name, note, plan_count(), nextval('plans_id_seq') FROM plans ORDER BY id"
    assert (
        query(new, rows)
        == query(old, rows)
        == [
            (1, "basic: 50%", "a\tb\\c", 2, 3),
            (2, 'pro: "x"', "a\tb\\c", 2, 4),
        ]
    )
