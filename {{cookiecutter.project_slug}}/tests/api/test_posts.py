from typing import Any

from httpx import AsyncClient
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from {{ cookiecutter.project_slug }}.models import Post, User


async def create_author(client: AsyncClient) -> int:
    response = await client.post(
        "/users", json={"email": "grace@example.com", "full_name": "Grace Hopper"}
    )
    assert response.status_code == 201
    author_id: int = response.json()["id"]
    return author_id


async def create_post(client: AsyncClient, author_id: int, title: str = "Hello") -> dict[str, Any]:
    response = await client.post(
        "/posts", json={"author_id": author_id, "title": title, "body": "First post."}
    )
    assert response.status_code == 201, response.text
    post: dict[str, Any] = response.json()
    return post


async def test_create_then_get_post(client: AsyncClient) -> None:
    author_id = await create_author(client)
    created = await create_post(client, author_id)

    response = await client.get(f"/posts/{created['id']}")

    assert response.status_code == 200
    assert response.json() == created
    assert created["author_id"] == author_id
    assert created["status"] == "draft"  # the column's server default


async def test_post_by_unknown_author_is_404(client: AsyncClient) -> None:
    response = await client.post(
        "/posts", json={"author_id": 987654321, "title": "Orphan", "body": "No author."}
    )

    assert response.status_code == 404
    assert response.json() == {"detail": "author not found"}


async def test_list_posts_filters_by_author(client: AsyncClient) -> None:
    author_id = await create_author(client)
    mine = [(await create_post(client, author_id, title=f"t{i}"))["id"] for i in range(2)]
    other = await client.post("/users", json={"email": "o@example.com", "full_name": "Other"})
    await create_post(client, other.json()["id"])

    response = await client.get("/posts", params={"author_id": author_id})

    assert [post["id"] for post in response.json()] == mine


async def test_missing_post_is_404_and_bad_payload_is_422(client: AsyncClient) -> None:
    assert (await client.get("/posts/987654321")).status_code == 404
    bad = await client.post("/posts", json={"author_id": 1, "title": "", "body": "x"})
    assert bad.status_code == 422


async def test_deleting_an_author_deletes_their_posts(
    client: AsyncClient, connection: AsyncConnection
) -> None:
    author_id = await create_author(client)
    await create_post(client, author_id)

    await connection.execute(delete(User).where(User.id == author_id))

    remaining = select(func.count()).select_from(Post).where(Post.author_id == author_id)
    assert (await connection.execute(remaining)).scalar_one() == 0
