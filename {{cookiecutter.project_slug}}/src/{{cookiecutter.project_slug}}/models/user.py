import re
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Identity, String, func
from sqlalchemy.orm import Mapped, mapped_column

from {{ cookiecutter.project_slug }}.db.base import Base

_NOT_SLUG_CHARS = re.compile(r"[^a-z0-9]+")


def slug_base(full_name: str) -> str:
    """The readable part of a user's slug; mirrors the SQL in the slug backfill migration."""
    return _NOT_SLUG_CHARS.sub("-", full_name.lower()).strip("-") or "user"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    # "<slug_base>-<id>": unique by construction, stable once set.
    slug: Mapped[str] = mapped_column(String(240), unique=True, index=True)
    phone_number: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )
