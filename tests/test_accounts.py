"""Accounts, their effective-dated revenue, and batches of revenue updates."""

from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.helpers import assert_problem, coverage_q1

JSON_HEADERS = {"Content-Type": "application/json"}


def revenue_update(
    account: str, amount: Any, effective_at: str = "2026-01-01T00:00:00Z", **extra: Any
) -> dict[str, Any]:
    return {
        "account_external_id": account,
        "amount": amount,
        "currency": "USD",
        "effective_at": effective_at,
        **extra,
    }


async def post_updates(api: httpx.AsyncClient, *updates: dict[str, Any]) -> httpx.Response:
    return await api.post("/v1/revenue-updates", json={"updates": list(updates)})


def history_of(account: dict[str, Any]) -> set[tuple[datetime, str]]:
    return {
        (datetime.fromisoformat(record["effective_at"]), record["amount"])
        for record in account["revenue_history"]
    }


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


class TestPutAccount:
    async def test_create_returns_201(self, api: httpx.AsyncClient) -> None:
        body = {
            "name": "Acme",
            "region": "EMEA",
            "industry": "Manufacturing",
            "owner": "sam@example.com",
            "attributes": {"tier": "gold", "seats": 120, "flags": {"beta": True}},
        }

        response = await api.put("/v1/accounts/ACME-001", json=body)

        assert response.status_code == 201, response.text
        account = response.json()
        assert account["external_id"] == "ACME-001"
        assert account["name"] == "Acme"
        assert account["region"] == "EMEA"
        assert account["industry"] == "Manufacturing"
        assert account["owner"] == "sam@example.com"
        assert account["attributes"] == {"tier": "gold", "seats": 120, "flags": {"beta": True}}
        assert account["revenue"] is None
        assert account["revenue_history"] == []

    async def test_update_returns_200(self, api: httpx.AsyncClient) -> None:
        await api.put("/v1/accounts/ACME-001", json={"name": "Acme", "region": "EMEA"})

        response = await api.put(
            "/v1/accounts/ACME-001", json={"name": "Acme Corp", "attributes": {"tier": "silver"}}
        )

        assert response.status_code == 200, response.text
        account = (await api.get("/v1/accounts/ACME-001")).json()
        assert account["name"] == "Acme Corp"
        assert account["attributes"] == {"tier": "silver"}
        # PUT replaces the descriptive fields as a whole.
        assert account["region"] is None

    async def test_create_with_revenue(self, api: httpx.AsyncClient) -> None:
        body = {
            "name": "Acme",
            "revenue": {
                "amount": "250000",
                "currency": "USD",
                "effective_at": "2026-01-01T00:00:00Z",
            },
        }

        response = await api.put("/v1/accounts/ACME-001", json=body)

        assert response.status_code == 201, response.text
        revenue = response.json()["revenue"]
        assert revenue["amount"] == "250000.00"
        assert revenue["currency"] == "USD"
        assert moment(revenue["effective_at"]) == moment("2026-01-01T00:00:00Z")

    async def test_update_adds_revenue_record(self, api: httpx.AsyncClient) -> None:
        first = {"amount": "100.00", "currency": "USD", "effective_at": "2025-01-01T00:00:00Z"}
        second = {"amount": "200.00", "currency": "USD", "effective_at": "2025-06-01T00:00:00Z"}
        await api.put("/v1/accounts/ACME-001", json={"revenue": first})

        response = await api.put("/v1/accounts/ACME-001", json={"revenue": second})

        assert response.status_code == 200, response.text
        account = (await api.get("/v1/accounts/ACME-001")).json()
        assert account["revenue"]["amount"] == "200.00"
        assert history_of(account) == {
            (moment("2025-01-01T00:00:00Z"), "100.00"),
            (moment("2025-06-01T00:00:00Z"), "200.00"),
        }

    async def test_replayed_put_keeps_one_record(self, api: httpx.AsyncClient) -> None:
        body = {
            "revenue": {
                "amount": "100.00",
                "currency": "USD",
                "effective_at": "2025-01-01T00:00:00Z",
            }
        }
        await api.put("/v1/accounts/ACME-001", json=body)

        response = await api.put("/v1/accounts/ACME-001", json=body)

        assert response.status_code == 200, response.text
        assert len(response.json()["revenue_history"]) == 1

    async def test_bad_revenue_writes_nothing(self, api: httpx.AsyncClient) -> None:
        body = {
            "name": "Acme",
            "revenue": {"amount": "-5", "currency": "USD", "effective_at": "2025-01-01T00:00:00Z"},
        }

        response = await api.put("/v1/accounts/ACME-001", json=body)

        assert_problem(response, 422)
        assert_problem(await api.get("/v1/accounts/ACME-001"), 404)

    async def test_other_currency_stored(self, api: httpx.AsyncClient) -> None:
        body = {
            "revenue": {"amount": "5.00", "currency": "EUR", "effective_at": "2025-01-01T00:00:00Z"}
        }

        response = await api.put("/v1/accounts/ACME-001", json=body)

        assert response.status_code == 201, response.text
        revenue = (await api.get("/v1/accounts/ACME-001")).json()["revenue"]
        assert revenue["amount"] == "5.00"
        assert revenue["currency"] == "EUR"

    async def test_exact_json_number_stored(self, api: httpx.AsyncClient) -> None:
        body = (
            '{"name": "Big", "revenue": {"amount": 90071992547409.93, "currency": "USD", '
            '"effective_at": "2026-01-01T00:00:00Z"}}'
        )

        response = await api.put("/v1/accounts/BIG", content=body, headers=JSON_HEADERS)

        assert response.status_code == 201, response.text
        account = (await api.get("/v1/accounts/BIG")).json()
        assert account["revenue"]["amount"] == "90071992547409.93"


class TestGetAccount:
    async def test_unknown_is_404(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/v1/accounts/NOPE")

        problem = assert_problem(response, 404)
        assert "NOPE" in problem["detail"]

    async def test_current_revenue_ignores_future(self, api: httpx.AsyncClient) -> None:
        await post_updates(
            api,
            revenue_update("ACME-001", "999.00", "2099-01-01T00:00:00Z"),
            revenue_update("ACME-001", "100.00", "2020-01-01T00:00:00Z"),
        )

        response = await api.get("/v1/accounts/ACME-001")

        account = response.json()
        assert account["revenue"]["amount"] == "100.00"
        assert moment(account["revenue"]["effective_at"]) == moment("2020-01-01T00:00:00Z")
        assert history_of(account) == {
            (moment("2020-01-01T00:00:00Z"), "100.00"),
            (moment("2099-01-01T00:00:00Z"), "999.00"),
        }

    async def test_only_future_revenue_is_none(self, api: httpx.AsyncClient) -> None:
        await post_updates(api, revenue_update("ACME-001", "999.00", "2099-01-01T00:00:00Z"))

        response = await api.get("/v1/accounts/ACME-001")

        account = response.json()
        assert account["revenue"] is None
        assert len(account["revenue_history"]) == 1


class TestListAccounts:
    async def test_empty_list(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/v1/accounts")

        assert response.status_code == 200, response.text
        assert response.json() == {"items": [], "next_cursor": None}

    async def test_pages_cover_every_account(self, api: httpx.AsyncClient) -> None:
        ids = [f"A-{number:02d}" for number in range(5)]
        await post_updates(api, *(revenue_update(external_id, "10.00") for external_id in ids))

        first = (await api.get("/v1/accounts", params={"limit": 2})).json()
        second = (
            await api.get("/v1/accounts", params={"limit": 2, "cursor": first["next_cursor"]})
        ).json()
        third = (
            await api.get("/v1/accounts", params={"limit": 2, "cursor": second["next_cursor"]})
        ).json()

        assert len(first["items"]) == 2
        assert len(second["items"]) == 2
        assert len(third["items"]) == 1
        assert first["next_cursor"] is not None
        assert second["next_cursor"] is not None
        assert third["next_cursor"] is None
        seen = [item["external_id"] for page in (first, second, third) for item in page["items"]]
        assert sorted(seen) == ids

    async def test_items_carry_current_revenue(self, api: httpx.AsyncClient) -> None:
        await post_updates(api, revenue_update("ACME-001", "12.5"))

        response = await api.get("/v1/accounts")

        [item] = response.json()["items"]
        assert item["external_id"] == "ACME-001"
        assert item["revenue"]["amount"] == "12.50"

    async def test_default_limit_is_100(self, api: httpx.AsyncClient) -> None:
        await post_updates(api, *(revenue_update(f"A-{number:03d}", 1) for number in range(101)))

        first = (await api.get("/v1/accounts")).json()
        second = (await api.get("/v1/accounts", params={"cursor": first["next_cursor"]})).json()

        assert len(first["items"]) == 100
        assert first["next_cursor"] is not None
        assert len(second["items"]) == 1
        assert second["next_cursor"] is None

    async def test_limit_1000_accepted(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/v1/accounts", params={"limit": 1000})

        assert response.status_code == 200, response.text

    @pytest.mark.parametrize("limit", ["0", "1001", "-1", "abc", "1.5"])
    async def test_bad_limit_rejected(self, api: httpx.AsyncClient, limit: str) -> None:
        response = await api.get("/v1/accounts", params={"limit": limit})

        problem = assert_problem(response, 422)
        locations = [error["location"] for error in problem["errors"]]
        assert locations == ["query.limit"]

    @pytest.mark.parametrize("cursor", ["garbage", "eyJhZnRlciI6IDF9", "!!!", "e30"])
    async def test_bad_cursor_rejected(self, api: httpx.AsyncClient, cursor: str) -> None:
        # eyJhZnRlciI6IDF9 decodes to {"after": 1}, a cursor of a list sorted by number.
        response = await api.get("/v1/accounts", params={"cursor": cursor})

        problem = assert_problem(response, 422)
        locations = [error["location"] for error in problem["errors"]]
        assert locations == ["query.cursor"]


class TestRevenueUpdates:
    async def test_counts_created(self, api: httpx.AsyncClient) -> None:
        updates = [revenue_update(f"A-{number}", "10.00") for number in range(3)]

        response = await post_updates(api, *updates)

        assert response.status_code == 200, response.text
        result = response.json()
        assert result["created"] == 3
        assert result["updated"] == 0
        assert result["unchanged"] == 0

    async def test_date_without_time_explained(self, api: httpx.AsyncClient) -> None:
        response = await post_updates(api, revenue_update("A-1", "10.00", "2026-01-01"))

        problem = assert_problem(response, 422)
        assert "'2026-01-01' is a date without a time" in problem["detail"]
        assert "2026-01-01T00:00:00Z" in problem["detail"]

    async def test_replay_is_noop(self, api: httpx.AsyncClient) -> None:
        updates = [revenue_update(f"A-{number}", "10.00") for number in range(3)]
        await post_updates(api, *updates)

        response = await post_updates(api, *updates)

        result = response.json()
        assert result["created"] == 0
        assert result["updated"] == 0
        assert result["unchanged"] == 3
        account = (await api.get("/v1/accounts/A-0")).json()
        assert len(account["revenue_history"]) == 1

    async def test_counts_updated(self, api: httpx.AsyncClient) -> None:
        await post_updates(api, revenue_update("A-0", "10.00"), revenue_update("A-1", "10.00"))

        response = await post_updates(
            api,
            revenue_update("A-0", "10.00"),
            revenue_update("A-1", "20.00"),
            revenue_update("A-1", "30.00", "2026-02-01T00:00:00Z"),
        )

        result = response.json()
        assert result["created"] == 1
        assert result["updated"] == 1
        assert result["unchanged"] == 1
        account = (await api.get("/v1/accounts/A-1")).json()
        assert history_of(account) == {
            (moment("2026-01-01T00:00:00Z"), "20.00"),
            (moment("2026-02-01T00:00:00Z"), "30.00"),
        }

    async def test_same_amount_other_spelling_unchanged(self, api: httpx.AsyncClient) -> None:
        await post_updates(api, revenue_update("A-0", "10"))

        response = await post_updates(api, revenue_update("A-0", "10.00"))

        assert response.json()["unchanged"] == 1

    async def test_unknown_account_created(self, api: httpx.AsyncClient) -> None:
        response = await post_updates(
            api, revenue_update("NEW-1", "10.00", account_name="New Customer")
        )

        assert response.status_code == 200, response.text
        account = (await api.get("/v1/accounts/NEW-1")).json()
        assert account["name"] == "New Customer"
        assert account["revenue"]["amount"] == "10.00"

    async def test_latest_effective_wins(self, api: httpx.AsyncClient) -> None:
        await post_updates(api, revenue_update("A-0", "300.00", "2026-03-01T00:00:00Z"))

        await post_updates(api, revenue_update("A-0", "100.00", "2026-01-01T00:00:00Z"))

        account = (await api.get("/v1/accounts/A-0")).json()
        assert account["revenue"]["amount"] == "300.00"
        assert history_of(account) == {
            (moment("2026-01-01T00:00:00Z"), "100.00"),
            (moment("2026-03-01T00:00:00Z"), "300.00"),
        }

    async def test_out_of_order_at_period_end(self, api: httpx.AsyncClient) -> None:
        # Arrival order: April, February, March. Q1 ends before the April record.
        await post_updates(api, revenue_update("A-0", "500.00", "2026-04-01T00:00:00Z"))
        await post_updates(api, revenue_update("A-0", "100.00", "2026-02-01T00:00:00Z"))
        await post_updates(api, revenue_update("A-0", "300.00", "2026-03-01T00:00:00Z"))

        coverage = await coverage_q1(api)

        assert coverage["total_revenue"] == "300.00"

    async def test_zero_amount_churns(self, api: httpx.AsyncClient) -> None:
        await post_updates(api, revenue_update("A-0", "100.00", "2025-12-01T00:00:00Z"))

        response = await post_updates(api, revenue_update("A-0", 0, "2026-02-01T00:00:00Z"))

        assert response.status_code == 200, response.text
        account = (await api.get("/v1/accounts/A-0")).json()
        assert account["revenue"]["amount"] == "0.00"
        coverage = await coverage_q1(api)
        assert coverage["total_revenue"] == "0.00"
        assert coverage["accounts"]["total"] == 0

    async def test_bad_item_writes_nothing(self, api: httpx.AsyncClient) -> None:
        await post_updates(api, revenue_update("OLD", "100.00", "2025-01-01T00:00:00Z"))

        response = await post_updates(
            api,
            revenue_update("OLD", "200.00", "2026-01-01T00:00:00Z"),
            revenue_update("NEW-1", "10.00"),
            revenue_update("NEW-2", "-1"),
        )

        problem = assert_problem(response, 422)
        locations = [error["location"] for error in problem["errors"]]
        assert all(location.startswith("body.updates[2]") for location in locations)
        assert_problem(await api.get("/v1/accounts/NEW-1"), 404)
        assert_problem(await api.get("/v1/accounts/NEW-2"), 404)
        old = (await api.get("/v1/accounts/OLD")).json()
        assert history_of(old) == {(moment("2025-01-01T00:00:00Z"), "100.00")}

    async def test_other_currencies_stored(self, api: httpx.AsyncClient) -> None:
        response = await post_updates(
            api,
            revenue_update("NEW-1", "10.00"),
            {**revenue_update("NEW-2", "10.00"), "currency": "EUR"},
            {**revenue_update("NEW-3", "1500"), "currency": "JPY"},
        )

        assert response.status_code == 200, response.text
        eur = (await api.get("/v1/accounts/NEW-2")).json()["revenue"]
        jpy = (await api.get("/v1/accounts/NEW-3")).json()["revenue"]
        assert (eur["amount"], eur["currency"]) == ("10.00", "EUR")
        assert (jpy["amount"], jpy["currency"]) == ("1500", "JPY")

    async def test_minor_unit_of_own_currency(self, api: httpx.AsyncClient) -> None:
        response = await post_updates(
            api,
            revenue_update("NEW-1", "10.00"),
            {**revenue_update("NEW-2", "10.50"), "currency": "JPY"},
        )

        problem = assert_problem(response, 422)
        locations = [error["location"] for error in problem["errors"]]
        assert locations == ["body.updates[1].amount"]
        assert "JPY" in problem["errors"][0]["message"]
        assert_problem(await api.get("/v1/accounts/NEW-1"), 404)

    @pytest.mark.parametrize(
        "amount",
        [
            -1,
            "-0.01",
            "NaN",
            "Infinity",
            "-Infinity",
            "1000000000000000",
            1000000000000000,
            "1e15",
            "1.001",
            "0.001",
            True,
            False,
            "abc",
            "",
            None,
            [],
            {},
            "1_000",
            " 100 ",
            "\uff11\uff10\uff10",
            "\u0661\u0662\u0663",
            "0e-17000",
            "0E+999999999999",
            "1." + "0" * 17000,
        ],
    )
    async def test_bad_amount_rejected(self, api: httpx.AsyncClient, amount: object) -> None:
        response = await post_updates(api, revenue_update("NEW-1", amount))

        problem = assert_problem(response, 422)
        locations = [error["location"] for error in problem["errors"]]
        assert all(location.startswith("body.updates[0]") for location in locations)
        assert_problem(await api.get("/v1/accounts/NEW-1"), 404)

    @pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e15", "1E+16", "1.001"])
    async def test_bad_amount_literal_rejected(self, api: httpx.AsyncClient, literal: str) -> None:
        body = (
            '{"updates": [{"account_external_id": "NEW-1", "amount": ' + literal + ", "
            '"currency": "USD", "effective_at": "2026-01-01T00:00:00Z"}]}'
        )

        response = await api.post("/v1/revenue-updates", content=body, headers=JSON_HEADERS)

        assert_problem(response, 422)
        assert_problem(await api.get("/v1/accounts/NEW-1"), 404)

    @pytest.mark.parametrize(
        ("amount", "stored"),
        [
            ("999999999999999.99", "999999999999999.99"),
            (0, "0.00"),
            (17, "17.00"),
            ("17.1", "17.10"),
            ("0.01", "0.01"),
            ("+100", "100.00"),
            (".5", "0.50"),
            ("100.", "100.00"),
            ("1.000000", "1.00"),
        ],
    )
    async def test_edge_amount_accepted(
        self, api: httpx.AsyncClient, amount: object, stored: str
    ) -> None:
        response = await post_updates(api, revenue_update("NEW-1", amount))

        assert response.status_code == 200, response.text
        account = (await api.get("/v1/accounts/NEW-1")).json()
        assert account["revenue"]["amount"] == stored

    @pytest.mark.parametrize("currency", ["ZZZ", "usd", "", "DOLLAR"])
    async def test_invalid_currency_rejected(self, api: httpx.AsyncClient, currency: str) -> None:
        response = await post_updates(
            api, {**revenue_update("NEW-1", "1.00"), "currency": currency}
        )

        assert_problem(response, 422)
        assert_problem(await api.get("/v1/accounts/NEW-1"), 404)

    async def test_batch_of_10000_accepted(self, api: httpx.AsyncClient) -> None:
        updates = [revenue_update(f"A-{number:05d}", 1) for number in range(10_000)]

        response = await post_updates(api, *updates)

        assert response.status_code == 200, response.text
        assert response.json()["created"] == 10_000

    async def test_batch_of_10001_rejected(self, api: httpx.AsyncClient) -> None:
        updates = [revenue_update(f"A-{number:05d}", 1) for number in range(10_001)]

        response = await post_updates(api, *updates)

        problem = assert_problem(response, 422)
        locations = [error["location"] for error in problem["errors"]]
        assert locations == ["body.updates"]
        assert_problem(await api.get("/v1/accounts/A-00000"), 404)

    async def test_exact_json_numbers_stored(self, api: httpx.AsyncClient) -> None:
        # Raw JSON number literals. A binary float reads 90071992547409.93 as
        # 90071992547409.9375 and 17.08 as 17.0799999999999982946974341757595539093017578125.
        body = (
            '{"updates": ['
            '{"account_external_id": "BIG", "amount": 90071992547409.93, '
            '"currency": "USD", "effective_at": "2026-01-01T00:00:00Z"}, '
            '{"account_external_id": "SMALL", "amount": 17.08, '
            '"currency": "USD", "effective_at": "2026-01-01T00:00:00Z"}]}'
        )

        response = await api.post("/v1/revenue-updates", content=body, headers=JSON_HEADERS)

        assert response.status_code == 200, response.text
        big = (await api.get("/v1/accounts/BIG")).json()
        small = (await api.get("/v1/accounts/SMALL")).json()
        assert big["revenue"]["amount"] == "90071992547409.93"
        assert small["revenue"]["amount"] == "17.08"
        coverage = await coverage_q1(api)
        assert coverage["total_revenue"] == "90071992547427.01"
