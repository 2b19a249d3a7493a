from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    String,
    Text,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from {{ cookiecutter.project_slug }}.db.base import Base


class Post(Base):
    __tablename__ = "posts"
    # make revision writes a change here as add_check_constraint (validated without blocking).
    __table_args__ = (CheckConstraint("status IN ('draft', 'published')", name="status_known"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # Indexed: PostgreSQL does not index foreign keys itself, and the cascade on user deletion
    # (and listing a user's posts) would otherwise scan the whole table.
    author_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    reviewer_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), server_default="draft")
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # The day created_at falls on in UTC, set by the database on insert (a trigger: 0012).
    created_on: Mapped[date] = mapped_column(Date)
