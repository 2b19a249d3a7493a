"""HTTP routes, one module per resource."""

from fastapi import FastAPI

from {{ cookiecutter.project_slug }}.api import health{% if cookiecutter.include_example_api == "yes" %}, posts, users{% endif %}


def register_routes(app: FastAPI) -> None:
    app.include_router(health.router)
{%- if cookiecutter.include_example_api == "yes" %}
    app.include_router(users.router)
    app.include_router(posts.router)
{%- endif %}
