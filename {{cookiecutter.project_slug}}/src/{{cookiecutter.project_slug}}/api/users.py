"""Example resource: create, get and list users."""

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from {{ cookiecutter.project_slug }}.api.schemas import BIGINT_MAX, Id, UserCreate, UserRead
from {{ cookiecutter.project_slug }}.db.session import get_session
from {{ cookiecutter.project_slug }}.models import User, slug_base

router = APIRouter(prefix="/users", tags=["users"])
Session = Annotated[AsyncSession, Depends(get_session)]


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_user(payload: UserCreate, session: Session) -> UserRead:
    # Take the id first so the slug can embed it: unique by construction, same rule as the
    # backfill migration used for existing rows.
    next_id = select(func.nextval(func.pg_get_serial_sequence("users", "id")))
    user_id: int = (await session.execute(next_id)).scalar_one()
    user = User(
        id=user_id,
        email=payload.email,
        full_name=payload.full_name,
        slug=f"{slug_base(payload.full_name)}-{user_id}",
    )
    session.add(user)
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, "a user with this email exists") from exc
    await session.refresh(user)
    return UserRead.model_validate(user)


@router.get("/{user_id}")
async def get_user(user_id: Annotated[Id, Path()], session: Session) -> UserRead:
    user = await session.get(User, user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "user not found")
    return UserRead.model_validate(user)


@router.get("")
async def list_users(
    session: Session,
    after_id: Annotated[int, Query(ge=0, le=BIGINT_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> list[UserRead]:
    """Keyset pagination: pass the last id you saw as ``after_id`` to get the next page."""
    rows = await session.scalars(
        select(User).where(User.id > after_id).order_by(User.id).limit(limit)
    )
    return [UserRead.model_validate(user) for user in rows]
