"""Example resource: create, get and list posts."""

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from {{ cookiecutter.project_slug }}.api.schemas import BIGINT_MAX, Id, PostCreate, PostRead
from {{ cookiecutter.project_slug }}.db.session import get_session
from {{ cookiecutter.project_slug }}.models import Post

router = APIRouter(prefix="/posts", tags=["posts"])
Session = Annotated[AsyncSession, Depends(get_session)]


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_post(payload: PostCreate, session: Session) -> PostRead:
    post = Post(**payload.model_dump())
    session.add(post)
    try:
        await session.commit()
    except IntegrityError as exc:
        # The only constraint a valid payload can break is the author foreign key.
        await session.rollback()
        raise HTTPException(status.HTTP_404_NOT_FOUND, "author not found") from exc
    await session.refresh(post)
    return PostRead.model_validate(post)


@router.get("/{post_id}")
async def get_post(post_id: Annotated[Id, Path()], session: Session) -> PostRead:
    post = await session.get(Post, post_id)
    if post is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "post not found")
    return PostRead.model_validate(post)


@router.get("")
async def list_posts(
    session: Session,
    author_id: Annotated[Id | None, Query()] = None,
    after_id: Annotated[int, Query(ge=0, le=BIGINT_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> list[PostRead]:
    """Newest ids last; filter by ``author_id``; page with ``after_id``."""
    query = select(Post).where(Post.id > after_id).order_by(Post.id).limit(limit)
    if author_id is not None:
        query = query.where(Post.author_id == author_id)
    rows = await session.scalars(query)
    return [PostRead.model_validate(post) for post in rows]
