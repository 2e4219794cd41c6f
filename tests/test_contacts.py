"""The contacts API: links from a person's email to accounts."""

import httpx

from tests.factories import put_account, put_contact


async def test_put_creates_link(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme")

    response = await put_contact(api, "Jane.Doe@Acme.com", "acme", "decision_maker")

    assert response.status_code == 201, response.text
    assert response.json()["email"] == "jane.doe@acme.com"
    assert [link["account_external_id"] for link in response.json()["accounts"]] == ["acme"]
    assert response.json()["accounts"][0]["role"] == "decision_maker"


async def test_put_same_account_sets_role(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme")
    await put_contact(api, "jane@acme.com", "acme", "user")

    response = await put_contact(api, "JANE@acme.com", "acme", "influencer")

    assert response.status_code == 200, response.text
    assert len(response.json()["accounts"]) == 1
    assert response.json()["accounts"][0]["role"] == "influencer"


async def test_put_other_account_adds_link(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme")
    await put_account(api, "globex")
    await put_contact(api, "jane@acme.com", "acme", "user")

    response = await put_contact(api, "jane@acme.com", "globex")

    assert response.status_code == 201, response.text
    links = response.json()["accounts"]
    assert [link["account_external_id"] for link in links] == ["acme", "globex"]
    assert [link["role"] for link in links] == ["user", None]


async def test_get_ignores_letter_case(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme")
    await put_contact(api, "jane@acme.com", "acme")

    response = await api.get("/v1/contacts/JANE@ACME.COM")

    assert response.status_code == 200, response.text
    assert response.json()["email"] == "jane@acme.com"


async def test_get_unknown_contact_404(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/contacts/nobody@acme.com")

    assert response.status_code == 404
    assert response.json()["type"] == "urn:revcov:problem:contact-not-found"


async def test_list_pages_by_email(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme")
    await put_account(api, "globex")
    for email in ("carol@acme.com", "alice@acme.com", "bob@acme.com"):
        await put_contact(api, email, "acme")
    await put_contact(api, "alice@acme.com", "globex")

    first = await api.get("/v1/contacts", params={"limit": 2})
    second = await api.get(
        "/v1/contacts", params={"limit": 2, "cursor": first.json()["next_cursor"]}
    )

    assert first.status_code == 200, first.text
    assert [item["email"] for item in first.json()["items"]] == ["alice@acme.com", "bob@acme.com"]
    assert len(first.json()["items"][0]["accounts"]) == 2
    assert first.json()["next_cursor"] is not None
    assert [item["email"] for item in second.json()["items"]] == ["carol@acme.com"]
    assert second.json()["next_cursor"] is None


async def test_list_limit_out_of_range_422(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/contacts", params={"limit": 1001})

    assert response.status_code == 422


async def test_delete_removes_one_link(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme")
    await put_account(api, "globex")
    await put_contact(api, "jane@acme.com", "acme")
    await put_contact(api, "jane@acme.com", "globex")

    deleted = await api.delete("/v1/contacts/Jane@acme.com/accounts/acme")
    remaining = await api.get("/v1/contacts/jane@acme.com")

    assert deleted.status_code == 204
    assert "content-type" not in deleted.headers
    assert [link["account_external_id"] for link in remaining.json()["accounts"]] == ["globex"]


async def test_delete_last_link_removes_contact(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme")
    await put_contact(api, "jane@acme.com", "acme")

    deleted = await api.delete("/v1/contacts/jane@acme.com/accounts/acme")
    read = await api.get("/v1/contacts/jane@acme.com")

    assert deleted.status_code == 204
    assert read.status_code == 404


async def test_delete_missing_link_404(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme")
    await put_account(api, "globex")
    await put_contact(api, "jane@acme.com", "acme")

    response = await api.delete("/v1/contacts/jane@acme.com/accounts/globex")

    assert response.status_code == 404


async def test_put_unknown_account_404(api: httpx.AsyncClient) -> None:
    response = await put_contact(api, "jane@acme.com", "no-such-account")

    assert response.status_code == 404
    assert response.json()["type"] == "urn:revcov:problem:account-not-found"


async def test_invalid_email_422(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme")

    no_at = await put_contact(api, "jane.acme.com", "acme")
    no_domain = await put_contact(api, "jane@", "acme")
    spaces = await api.get("/v1/contacts/jane doe@acme.com")

    assert no_at.status_code == 422
    assert no_at.json()["errors"][0]["location"] == "path.email"
    assert no_domain.status_code == 422
    assert spaces.status_code == 422


async def test_invalid_role_422(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme")

    response = await put_contact(api, "jane@acme.com", "acme", "ceo")

    assert response.status_code == 422
    assert response.json()["errors"][0]["location"] == "body.role"


async def test_other_tenant_gets_404(api: httpx.AsyncClient, other_api: httpx.AsyncClient) -> None:
    await put_account(api, "acme")
    await put_contact(api, "jane@acme.com", "acme")

    read = await other_api.get("/v1/contacts/jane@acme.com")
    unlink = await other_api.delete("/v1/contacts/jane@acme.com/accounts/acme")
    link = await put_contact(other_api, "jane@acme.com", "acme")
    listed = await other_api.get("/v1/contacts")
    still_there = await api.get("/v1/contacts/jane@acme.com")

    assert read.status_code == 404
    assert unlink.status_code == 404
    assert link.status_code == 404
    assert listed.json()["items"] == []
    assert still_there.status_code == 200
