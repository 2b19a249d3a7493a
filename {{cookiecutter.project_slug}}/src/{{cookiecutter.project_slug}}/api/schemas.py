"""Request and response bodies of the example API.

Bounds live here so that bad input is a 422 before it reaches PostgreSQL: ids fit in BIGINT,
text has a maximum length and no NUL character (PostgreSQL refuses NUL in text).
"""

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field

BIGINT_MAX = 2**63 - 1
Id = Annotated[int, Field(ge=1, le=BIGINT_MAX)]
_NO_NUL = r"^[^\x00]*$"


def text(max_length: int) -> Any:
    return Field(min_length=1, max_length=max_length, pattern=_NO_NUL)


class UserCreate(BaseModel):
    email: Annotated[EmailStr, Field(max_length=320)]
    full_name: Annotated[str, text(200)]


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    full_name: str
    slug: str
    created_at: datetime


class PostCreate(BaseModel):
    author_id: Id
    title: Annotated[str, text(200)]
    body: Annotated[str, text(100_000)]


class PostRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    author_id: int
    title: str
    body: str
    status: str
    created_at: datetime
