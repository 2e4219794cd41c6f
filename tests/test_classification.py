"""`GET /v1/accounts/{external_id}/classification`: an account's bucket and its reasons."""

from typing import Any

import httpx
import pytest

from tests.test_coverage import EARLY, add_responses, add_revenue, answer, set_tenant
from tests.test_rollup import link_contact, load_worked_example


async def classify(api: httpx.AsyncClient, account: str, **params: str) -> dict[str, Any]:
    response = await api.get(
        f"/v1/accounts/{account}/classification", params={"period": "2026-Q1", **params}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def counted_ids(classification: dict[str, Any]) -> list[str]:
    return [item["response_id"] for item in classification["responses"] if item["counted"]]


class TestWorkedExample:
    @pytest.mark.parametrize(
        ("rollup", "bucket", "value", "counted"),
        [
            pytest.param("latest", "safe", 10.0, ["a-user2"], id="latest"),
            pytest.param("average", "passive", 7.67, ["a-cfo", "a-user1", "a-user2"], id="average"),
            pytest.param("lowest", "at_risk", 4.0, ["a-cfo", "a-user1", "a-user2"], id="lowest"),
            pytest.param(
                "account_nps", "safe", 33.33, ["a-cfo", "a-user1", "a-user2"], id="account-nps"
            ),
            pytest.param("decision_maker", "at_risk", 4.0, ["a-cfo"], id="decision-maker"),
        ],
    )
    async def test_account_a(
        self,
        api: httpx.AsyncClient,
        rollup: str,
        bucket: str,
        value: float,
        counted: list[str],
    ) -> None:
        await load_worked_example(api)

        result = await classify(api, "A", rollup=rollup)

        assert result["account_external_id"] == "A"
        assert result["rollup"] == rollup
        assert result["bucket"] == bucket
        assert result["value"] == value
        assert result["revenue"] == "1000000.00"
        assert result["currency"] == "USD"
        assert result["period"]["label"] == "2026-Q1"
        assert counted_ids(result) == counted

    async def test_response_details(self, api: httpx.AsyncClient) -> None:
        await load_worked_example(api)

        result = await classify(api, "A", rollup="decision_maker")

        assert result["responses"] == [
            {
                "source": "native",
                "response_id": "a-cfo",
                "email": "cfo@a.example",
                "role": "decision_maker",
                "score": 4,
                "submitted_at": "2026-02-01T12:00:00Z",
                "counted": True,
            },
            {
                "source": "native",
                "response_id": "a-user1",
                "email": "user1@a.example",
                "role": "user",
                "score": 9,
                "submitted_at": "2026-02-02T12:00:00Z",
                "counted": False,
            },
            {
                "source": "native",
                "response_id": "a-user2",
                "email": "user2@a.example",
                "role": "user",
                "score": 10,
                "submitted_at": "2026-02-03T12:00:00Z",
                "counted": False,
            },
        ]

    async def test_silent_account_unaccounted(self, api: httpx.AsyncClient) -> None:
        await load_worked_example(api)

        result = await classify(api, "D")

        assert result["bucket"] == "unaccounted"
        assert result["revenue"] == "750000.00"
        assert result["value"] is None
        assert result["responses"] == []

    async def test_tenant_default_rule(self, api: httpx.AsyncClient) -> None:
        await load_worked_example(api)
        await set_tenant(api, default_rollup="average")

        result = await classify(api, "A")

        assert result["rollup"] == "average"
        assert result["bucket"] == "passive"


class TestAccountState:
    async def test_churned_not_in_base(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("A", "100.00", EARLY), ("A", "0.00", "2026-02-01T00:00:00Z"))
        await add_responses(api, answer("r1", "A", 9))

        result = await classify(api, "A")

        assert result["bucket"] == "not_in_base"
        assert result["revenue"] == "0.00"
        assert counted_ids(result) == ["r1"]

    async def test_no_revenue_record(self, api: httpx.AsyncClient) -> None:
        response = await api.put("/v1/accounts/A", json={"name": "Acme"})
        assert response.status_code == 201, response.text

        result = await classify(api, "A")

        assert result["bucket"] == "not_in_base"
        assert result["revenue"] is None

    async def test_null_score_listed_not_counted(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("A", "100.00", EARLY))
        await add_responses(
            api,
            answer("scored", "A", 8, "2026-02-01T12:00:00Z"),
            answer("skipped", "A", None, "2026-02-02T12:00:00Z"),
        )

        result = await classify(api, "A")

        assert [item["response_id"] for item in result["responses"]] == ["scored", "skipped"]
        assert counted_ids(result) == ["scored"]
        assert result["bucket"] == "passive"

    async def test_other_period_responses_left_out(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("A", "100.00", EARLY))
        await add_responses(
            api,
            answer("q4", "A", 2, "2025-12-15T12:00:00Z"),
            answer("q1", "A", 10, "2026-02-01T12:00:00Z"),
        )

        result = await classify(api, "A")

        assert [item["response_id"] for item in result["responses"]] == ["q1"]
        assert result["bucket"] == "safe"

    async def test_role_shown_for_contact(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("A", "100.00", EARLY))
        await link_contact(api, "pat@a.example", "A", "influencer")
        await add_responses(api, answer("r1", "A", 7, email="Pat@A.example"))

        result = await classify(api, "A")

        assert result["responses"][0]["role"] == "influencer"
        assert result["responses"][0]["email"] == "Pat@A.example"


class TestErrors:
    async def test_unknown_account(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/v1/accounts/nope/classification", params={"period": "2026-Q1"})

        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"

    async def test_other_tenant_account(
        self, api: httpx.AsyncClient, other_api: httpx.AsyncClient
    ) -> None:
        await add_revenue(api, ("A", "100.00", EARLY))

        response = await other_api.get(
            "/v1/accounts/A/classification", params={"period": "2026-Q1"}
        )

        assert response.status_code == 404

    async def test_unknown_rule(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("A", "100.00", EARLY))

        response = await api.get(
            "/v1/accounts/A/classification", params={"period": "2026-Q1", "rollup": "max"}
        )

        assert response.status_code == 422

    async def test_invalid_period(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("A", "100.00", EARLY))

        response = await api.get("/v1/accounts/A/classification", params={"period": "Q1"})

        assert response.status_code == 422
