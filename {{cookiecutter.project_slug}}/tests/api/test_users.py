from typing import Any

import pytest
from httpx import AsyncClient

ADA = {"email": "ada@example.com", "full_name": "Ada Lovelace"}


async def create_user(client: AsyncClient, **overrides: str) -> dict[str, Any]:
    response = await client.post("/users", json=ADA | overrides)
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()
    return user


async def test_create_then_get_user(client: AsyncClient) -> None:
    created = await create_user(client)

    assert created["email"] == ADA["email"]
    assert created["slug"] == f"ada-lovelace-{created['id']}"
    response = await client.get(f"/users/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created


async def test_duplicate_email_is_409(client: AsyncClient) -> None:
    await create_user(client)

    response = await client.post("/users", json=ADA | {"full_name": "Someone Else"})

    assert response.status_code == 409
    assert response.json() == {"detail": "a user with this email exists"}


async def test_same_name_gives_distinct_slugs(client: AsyncClient) -> None:
    first = await create_user(client)
    second = await create_user(client, email="ada2@example.com")

    assert first["slug"] != second["slug"]


async def test_missing_user_is_404(client: AsyncClient) -> None:
    response = await client.get("/users/987654321")

    assert response.status_code == 404


async def test_list_users_pages_by_id(client: AsyncClient) -> None:
    ids = [(await create_user(client, email=f"u{i}@example.com"))["id"] for i in range(3)]

    first_page = (await client.get("/users", params={"limit": 2})).json()
    after = first_page[-1]["id"]
    second_page = (await client.get("/users", params={"limit": 2, "after_id": after})).json()

    assert [user["id"] for user in first_page + second_page] == ids


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"email": "not-an-email", "full_name": "Ada"}, id="bad-email"),
        pytest.param({"email": "a@example.com", "full_name": ""}, id="empty-name"),
        pytest.param({"email": "a@example.com", "full_name": "x" * 201}, id="long-name"),
        pytest.param({"email": "a@example.com", "full_name": "Ada\x00"}, id="nul-in-name"),
        pytest.param({"email": "a@example.com"}, id="missing-name"),
    ],
)
async def test_invalid_user_is_422(client: AsyncClient, body: dict[str, str]) -> None:
    response = await client.post("/users", json=body)

    assert response.status_code == 422
    assert "input" not in response.json()["detail"][0]


async def test_lone_surrogate_is_422_not_500(client: AsyncClient) -> None:
    raw = b'{"email": "a@example.com", "full_name": "\\ud800"}'

    response = await client.post(
        "/users", content=raw, headers={"content-type": "application/json"}
    )

    assert response.status_code == 422


@pytest.mark.parametrize("user_id", ["0", "-1", str(2**63), "abc"])
async def test_out_of_range_id_is_422(client: AsyncClient, user_id: str) -> None:
    response = await client.get(f"/users/{user_id}")

    assert response.status_code == 422
