{%- if cookiecutter.starting_schema == "lessons" -%}
"""All models; importing this package registers every table on ``Base.metadata``."""

from {{ cookiecutter.project_slug }}.db.base import Base
from {{ cookiecutter.project_slug }}.models.post import Post
from {{ cookiecutter.project_slug }}.models.user import User, slug_base

__all__ = ["Base", "Post", "User", "slug_base"]
{%- else -%}
"""All models; importing this package registers every table on ``Base.metadata``.

Add each model in a module of its own here and import it below: Alembic's autogenerate and
``make check`` see only the tables registered on ``Base.metadata``.
"""

from {{ cookiecutter.project_slug }}.db.base import Base

__all__ = ["Base"]
{%- endif %}
