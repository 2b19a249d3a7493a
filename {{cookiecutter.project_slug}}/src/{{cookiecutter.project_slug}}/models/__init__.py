"""All models; importing this package registers every table on ``Base.metadata``."""

from {{ cookiecutter.project_slug }}.db.base import Base
from {{ cookiecutter.project_slug }}.models.post import Post
from {{ cookiecutter.project_slug }}.models.user import User, slug_base

__all__ = ["Base", "Post", "User", "slug_base"]
