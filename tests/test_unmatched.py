"""Matching responses to accounts: the account id, contact and email domain rules, late
matching, ambiguity, manual assignment and the unmatched list."""

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event

from tests.factories import coverage, get_response, post_responses, put_account, put_contact


async def test_account_id_matches(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme")

    await post_responses(api, {"response_id": "r1", "account_external_id": "acme", "score": 9})
    stored = await get_response(api, "r1")

    assert stored["account_external_id"] == "acme"
    assert stored["matched_by"] == "account_external_id"


async def test_unknown_account_matched_when_created(api: httpx.AsyncClient) -> None:
    await post_responses(api, {"response_id": "r1", "account_external_id": "acme", "score": 9})
    before = await coverage(api)
    unmatched = await api.get("/v1/responses/unmatched")

    await put_account(api, "acme")
    after = await coverage(api)
    stored = await get_response(api, "r1")

    assert [item["response_id"] for item in unmatched.json()["items"]] == ["r1"]
    assert unmatched.json()["items"][0]["reason"] == "unknown_account"
    assert unmatched.json()["items"][0]["sent_account_external_id"] == "acme"
    assert before["responses"]["unmatched"] == 1
    assert after["responses"]["unmatched"] == 0
    assert after["covered_revenue"] == "1000.00"
    assert stored["matched_by"] == "account_external_id"


async def test_revenue_update_creating_account_matches(api: httpx.AsyncClient) -> None:
    await post_responses(api, {"response_id": "r1", "account_external_id": "acme", "score": 9})

    update = {
        "account_external_id": "acme",
        "amount": "500.00",
        "currency": "USD",
        "effective_at": "2026-01-01T00:00:00Z",
    }
    response = await api.post("/v1/revenue-updates", json={"updates": [update]})
    stored = await get_response(api, "r1")

    assert response.status_code == 200, response.text
    assert stored["account_external_id"] == "acme"


async def test_contact_matches(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme")
    await put_contact(api, "jane@acme.com", "acme")

    await post_responses(api, {"response_id": "r1", "email": " Jane@ACME.com ", "score": 3})
    stored = await get_response(api, "r1")

    assert stored["account_external_id"] == "acme"
    assert stored["matched_by"] == "contact"


async def test_contact_added_later_matches(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme", amount="800.00")
    await put_account(api, "globex", amount="200.00")
    await post_responses(api, {"response_id": "r1", "email": "jane@gmail.com", "score": 3})
    before = await coverage(api)

    await put_contact(api, "jane@gmail.com", "acme")
    after = await coverage(api)

    assert before["covered_revenue"] == "0.00"
    assert before["responses"]["unmatched"] == 1
    assert after["covered_revenue"] == "800.00"
    assert after["coverage"] == 0.8
    assert after["buckets"]["at_risk"]["revenue"] == "800.00"
    assert after["responses"]["unmatched"] == 0


async def test_domain_matches(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme", domains=["acme.com"])

    await post_responses(api, {"response_id": "r1", "email": "jane@Acme.COM", "score": 10})
    stored = await get_response(api, "r1")

    assert stored["account_external_id"] == "acme"
    assert stored["matched_by"] == "email_domain"


async def test_domain_added_later_matches(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme")
    await post_responses(api, {"response_id": "r1", "email": "jane@acme.com", "score": 10})
    before = await coverage(api)

    account = await put_account(api, "acme", domains=["ACME.com."])
    after = await coverage(api)

    assert account["domains"] == ["acme.com"]
    assert before["covered_revenue"] == "0.00"
    assert after["covered_revenue"] == "1000.00"
    assert after["buckets"]["safe"]["accounts"] == 1


async def test_domain_on_new_account_matches(api: httpx.AsyncClient) -> None:
    await post_responses(api, {"response_id": "r1", "email": "jane@acme.com", "score": 10})

    await put_account(api, "acme", domains=["acme.com"])
    stored = await get_response(api, "r1")

    assert stored["account_external_id"] == "acme"


async def test_domain_does_not_match_subdomain(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme", domains=["acme.com"])

    await post_responses(api, {"response_id": "r1", "email": "jane@eu.acme.com", "score": 10})
    stored = await get_response(api, "r1")

    assert stored["account_external_id"] is None


async def test_account_id_wins_over_contact_and_domain(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme", domains=["acme.com"])
    await put_account(api, "globex")
    await put_contact(api, "jane@acme.com", "acme")

    await post_responses(
        api, {"response_id": "r1", "account_external_id": "globex", "email": "jane@acme.com"}
    )
    stored = await get_response(api, "r1")

    assert stored["account_external_id"] == "globex"
    assert stored["matched_by"] == "account_external_id"


async def test_contact_wins_over_domain(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme", domains=["acme.com"])
    await put_account(api, "globex")
    await post_responses(api, {"response_id": "r1", "email": "jane@acme.com", "score": 8})

    await put_contact(api, "jane@acme.com", "globex")
    stored = await get_response(api, "r1")

    assert stored["account_external_id"] == "globex"
    assert stored["matched_by"] == "contact"


async def test_account_created_later_wins_over_contact(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme")
    await put_contact(api, "jane@acme.com", "acme")
    await post_responses(
        api, {"response_id": "r1", "account_external_id": "acme-eu", "email": "jane@acme.com"}
    )
    before = await get_response(api, "r1")

    await put_account(api, "acme-eu")
    after = await get_response(api, "r1")

    assert before["account_external_id"] == "acme"
    assert after["account_external_id"] == "acme-eu"


async def test_shared_domain_stays_unmatched(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme", domains=["acme.com"])
    await put_account(api, "acme-eu", domains=["acme.com"])

    await post_responses(api, {"response_id": "r1", "email": "jane@acme.com", "score": 9})
    stored = await get_response(api, "r1")
    report = await coverage(api)
    unmatched = await api.get("/v1/responses/unmatched")

    assert stored["account_external_id"] is None
    assert report["covered_revenue"] == "0.00"
    assert report["responses"]["unmatched"] == 1
    assert unmatched.json()["items"][0]["reason"] == "ambiguous_domain"


async def test_domain_becoming_shared_unmatches(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme", domains=["acme.com"])
    await post_responses(api, {"response_id": "r1", "email": "jane@acme.com", "score": 9})
    before = await get_response(api, "r1")

    await put_account(api, "acme-eu", domains=["acme.com"])
    after = await get_response(api, "r1")

    assert before["account_external_id"] == "acme"
    assert after["account_external_id"] is None


async def test_contact_of_two_accounts_unmatches(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme")
    await put_account(api, "globex")
    await put_contact(api, "jane@acme.com", "acme")
    await post_responses(api, {"response_id": "r1", "email": "jane@acme.com", "score": 9})
    before = await coverage(api)

    await put_contact(api, "jane@acme.com", "globex")
    after = await coverage(api)
    stored = await get_response(api, "r1")
    unmatched = await api.get("/v1/responses/unmatched")

    assert before["covered_revenue"] == "1000.00"
    assert after["covered_revenue"] == "0.00"
    assert stored["account_external_id"] is None
    assert unmatched.json()["items"][0]["reason"] == "ambiguous_contact"


async def test_ambiguous_contact_skips_domain(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme", domains=["acme.com"])
    await put_account(api, "globex")
    await put_contact(api, "jane@acme.com", "acme")
    await put_contact(api, "jane@acme.com", "globex")

    await post_responses(api, {"response_id": "r1", "email": "jane@acme.com", "score": 9})
    stored = await get_response(api, "r1")

    assert stored["account_external_id"] is None


async def test_unlinking_contact_rematches(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme")
    await put_account(api, "globex")
    await put_contact(api, "jane@acme.com", "acme")
    await put_contact(api, "jane@acme.com", "globex")
    await post_responses(api, {"response_id": "r1", "email": "jane@acme.com", "score": 9})

    await api.delete("/v1/contacts/jane@acme.com/accounts/globex")
    one_left = await get_response(api, "r1")
    await api.delete("/v1/contacts/jane@acme.com/accounts/acme")
    none_left = await get_response(api, "r1")

    assert one_left["account_external_id"] == "acme"
    assert none_left["account_external_id"] is None


async def test_removing_domain_unmatches(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme", domains=["acme.com", "acme.io"])
    await post_responses(api, {"response_id": "r1", "email": "jane@acme.io", "score": 9})

    account = await put_account(api, "acme", domains=["acme.com"])
    stored = await get_response(api, "r1")

    assert account["domains"] == ["acme.com"]
    assert stored["account_external_id"] is None


async def test_put_without_domains_clears_them(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme", domains=["acme.com"])

    account = await put_account(api, "acme")
    read = await api.get("/v1/accounts/acme")
    listed = await api.get("/v1/accounts")

    assert account["domains"] == []
    assert read.json()["domains"] == []
    assert listed.json()["items"][0]["domains"] == []


async def test_account_read_lists_domains(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme", domains=["acme.io", "Acme.com", "acme.io"])

    read = await api.get("/v1/accounts/acme")
    listed = await api.get("/v1/accounts")

    assert read.json()["domains"] == ["acme.com", "acme.io"]
    assert listed.json()["items"][0]["domains"] == ["acme.com", "acme.io"]


@pytest.mark.parametrize(
    "domain",
    ["acme", "jane@acme.com", "-acme.com", "acme..com", "10.0.0.1", "ex ample.com", "bücher.de"],
)
async def test_invalid_domain_422(api: httpx.AsyncClient, domain: str) -> None:
    body = {"domains": ["acme.com", domain]}

    response = await api.put("/v1/accounts/acme", json=body)

    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["location"] == "body.domains[1]"


async def test_manual_assignment_wins_and_stays(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme", domains=["acme.com"])
    await put_account(api, "globex")
    await post_responses(api, {"response_id": "r1", "email": "jane@acme.com", "score": 9})

    assigned = await api.post(
        "/v1/responses/test/r1/assign", json={"account_external_id": "globex"}
    )
    await put_contact(api, "jane@acme.com", "acme")
    await put_account(api, "acme", domains=["acme.com", "acme.io"])
    await post_responses(
        api, {"response_id": "r1", "account_external_id": "acme", "email": "jane@acme.com"}
    )
    stored = await get_response(api, "r1")

    assert assigned.status_code == 200, assigned.text
    assert assigned.json()["account_external_id"] == "globex"
    assert assigned.json()["matched_by"] == "manual"
    assert stored["score"] is None
    assert stored["account_external_id"] == "globex"
    assert stored["matched_by"] == "manual"


async def test_manual_assignment_counts_in_coverage(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme")
    await post_responses(api, {"response_id": "r1", "email": "jane@gmail.com", "score": 2})

    await api.post("/v1/responses/test/r1/assign", json={"account_external_id": "acme"})
    report = await coverage(api)

    assert report["covered_revenue"] == "1000.00"
    assert report["buckets"]["at_risk"]["accounts"] == 1


async def test_assign_null_returns_to_rules(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme", domains=["acme.com"])
    await put_account(api, "globex")
    await post_responses(api, {"response_id": "r1", "email": "jane@acme.com", "score": 9})
    await api.post("/v1/responses/test/r1/assign", json={"account_external_id": "globex"})

    cleared = await api.post("/v1/responses/test/r1/assign", json={"account_external_id": None})

    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["account_external_id"] == "acme"
    assert cleared.json()["matched_by"] == "email_domain"


async def test_assign_unknown_account_404(api: httpx.AsyncClient) -> None:
    await post_responses(api, {"response_id": "r1", "score": 9})

    response = await api.post("/v1/responses/test/r1/assign", json={"account_external_id": "x"})

    assert response.status_code == 404
    assert response.json()["type"] == "urn:revcov:problem:account-not-found"


async def test_assign_unknown_response_404(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme")

    response = await api.post(
        "/v1/responses/test/missing/assign", json={"account_external_id": "acme"}
    )

    assert response.status_code == 404
    assert response.json()["type"] == "urn:revcov:problem:response-not-found"


async def test_assign_requires_account_field(api: httpx.AsyncClient) -> None:
    await post_responses(api, {"response_id": "r1", "score": 9})

    response = await api.post("/v1/responses/test/r1/assign", json={})

    assert response.status_code == 422


async def test_unmatched_list_reasons_and_pages(api: httpx.AsyncClient) -> None:
    await put_account(api, "acme", domains=["shared.com"])
    await put_account(api, "globex", domains=["shared.com"])
    await put_contact(api, "two@acme.com", "acme")
    await put_contact(api, "two@acme.com", "globex")
    await post_responses(
        api,
        {"response_id": "r1", "account_external_id": "initech"},
        {"response_id": "r2", "email": "two@acme.com"},
        {"response_id": "r3", "email": "jane@shared.com"},
        {"response_id": "r4", "email": "jane@gmail.com", "comment": "great"},
        {"response_id": "r5", "account_external_id": "acme"},
    )

    first = await api.get("/v1/responses/unmatched", params={"limit": 3})
    second = await api.get(
        "/v1/responses/unmatched", params={"limit": 3, "cursor": first.json()["next_cursor"]}
    )
    items = first.json()["items"] + second.json()["items"]

    assert first.status_code == 200, first.text
    assert [item["response_id"] for item in items] == ["r1", "r2", "r3", "r4"]
    assert [item["reason"] for item in items] == [
        "unknown_account",
        "ambiguous_contact",
        "ambiguous_domain",
        "no_match",
    ]
    assert items[3]["comment"] == "great"
    assert second.json()["next_cursor"] is None


async def test_other_tenant_gets_404(api: httpx.AsyncClient, other_api: httpx.AsyncClient) -> None:
    await put_account(api, "acme")
    await put_account(other_api, "acme")
    await post_responses(api, {"response_id": "r1", "email": "jane@gmail.com", "score": 9})

    assign = await other_api.post(
        "/v1/responses/test/r1/assign", json={"account_external_id": "acme"}
    )
    unmatched = await other_api.get("/v1/responses/unmatched")
    stored = await get_response(api, "r1")

    assert assign.status_code == 404
    assert unmatched.json()["items"] == []
    assert stored["account_external_id"] is None


async def test_rules_stay_within_tenant(
    api: httpx.AsyncClient, other_api: httpx.AsyncClient
) -> None:
    await put_account(other_api, "acme", domains=["acme.com"])
    await put_contact(other_api, "jane@acme.com", "acme")

    await post_responses(
        api,
        {"response_id": "r1", "account_external_id": "acme"},
        {"response_id": "r2", "email": "jane@acme.com"},
        {"response_id": "r3", "email": "joe@acme.com"},
    )
    unmatched = await api.get("/v1/responses/unmatched")

    assert len(unmatched.json()["items"]) == 3


@pytest.fixture
def statements(app: FastAPI) -> Iterator[list[str]]:
    """Collect the SQL statements the app runs until the test ends, except the background
    fetcher's polls of webhook deliveries."""
    executed: list[str] = []

    def record(*args: Any) -> None:
        if "webhook_deliveries" not in args[2]:
            executed.append(args[2])

    engine = app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    yield executed
    event.remove(engine, "before_cursor_execute", record)


async def test_large_batch_resolves_in_bulk(api: httpx.AsyncClient, statements: list[str]) -> None:
    await put_account(api, "acme", domains=["acme.com"])
    await put_account(api, "globex")
    await put_contact(api, "boss@globex.com", "globex")
    batch = [
        {"response_id": f"r{number}", "email": f"person{number}@acme.com", "score": 7}
        for number in range(9_999)
    ]
    batch.append({"response_id": "boss", "email": "boss@globex.com", "score": 9})
    statements.clear()

    result = await post_responses(api, *batch)
    # The statistics upkeep around a large write (app.db.statistics) is a fixed number of
    # statements, not counted here.
    upkeep = ("DISCARD PLANS", "ANALYZE", "SET LOCAL statement_timeout")
    written = sum(
        1
        for statement in statements
        if not statement.startswith(upkeep) and "pg_stat_user_tables" not in statement
    )
    report = await coverage(api)
    boss = await get_response(api, "boss")

    assert result["created"] == 10_000
    assert written <= 8, statements
    assert report["responses"]["unmatched"] == 0
    assert report["accounts"]["covered"] == 2
    assert boss["matched_by"] == "contact"
