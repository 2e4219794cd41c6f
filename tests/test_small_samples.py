"""Small samples and concentration in coverage reports.

`min_responses` nulls NPS figures on small samples, with the reason in `nps.null_reasons`,
and `accounts_for_half_revenue` shows how few accounts carry half of each bucket.
"""

from typing import Any

import httpx
import pytest

from tests.helpers import assert_problem
from tests.report_data import get_json

EARLY = "2025-12-01T00:00:00Z"
Q1 = {"period": "2026-Q1"}
NO_DATA = {"respondent": "no_data", "account": "no_data", "revenue_weighted": "no_data"}


async def add_accounts(api: httpx.AsyncClient, accounts: dict[str, str], **fields: Any) -> None:
    for external_id, amount in accounts.items():
        body = {
            "name": external_id,
            **fields,
            "revenue": {"amount": amount, "currency": "USD", "effective_at": EARLY},
        }
        response = await api.put(f"/v1/accounts/{external_id}", json=body)
        assert response.status_code == 201, response.text


async def add_answers(api: httpx.AsyncClient, *answers: tuple[str, str | None, int]) -> None:
    """Post (email, account, score) responses submitted in 2026-Q1."""
    responses = [
        {
            "source": "test",
            "response_id": f"r{number}",
            "account_external_id": account,
            "email": email,
            "score": score,
            "submitted_at": f"2026-02-{number + 1:02d}T12:00:00Z",
        }
        for number, (email, account, score) in enumerate(answers)
    ]
    response = await api.post("/v1/responses", json={"responses": responses})
    assert response.status_code == 200, response.text


async def set_min_responses(api: httpx.AsyncClient, value: int) -> None:
    response = await api.patch("/v1/tenant", json={"min_responses": value})
    assert response.status_code == 200, response.text
    assert response.json()["min_responses"] == value


async def coverage(api: httpx.AsyncClient) -> dict[str, Any]:
    report: dict[str, Any] = await get_json(api, "/v1/coverage", Q1)
    return report


class TestMinResponses:
    async def test_default_is_one(self, api: httpx.AsyncClient) -> None:
        await add_accounts(api, {"A": "100.00"})
        await add_answers(api, ("a@x.test", "A", 9))

        settings = await api.get("/v1/tenant")
        report = await coverage(api)

        assert settings.json()["min_responses"] == 1
        assert report["nps"] == {
            "respondent": 100.0,
            "account": 100.0,
            "revenue_weighted": 100.0,
            "null_reasons": {},
        }

    async def test_small_sample_null(self, api: httpx.AsyncClient) -> None:
        await add_accounts(api, {"A": "100.00", "B": "100.00"})
        await add_answers(api, ("a@x.test", "A", 10), ("b@x.test", "B", 10))
        await set_min_responses(api, 3)

        report = await coverage(api)

        assert report["nps"]["respondent"] is None
        assert report["nps"]["account"] is None
        assert report["nps"]["revenue_weighted"] is None
        assert report["nps"]["null_reasons"] == {
            "respondent": "insufficient_sample",
            "account": "insufficient_sample",
            "revenue_weighted": "insufficient_sample",
        }
        assert report["coverage"] == 1.0

    async def test_sample_at_minimum_counts(self, api: httpx.AsyncClient) -> None:
        await add_accounts(api, {"A": "100.00", "B": "100.00"})
        await add_answers(api, ("a@x.test", "A", 10), ("b@x.test", "B", 0), ("c@x.test", None, 10))
        await set_min_responses(api, 3)

        report = await coverage(api)

        assert report["nps"]["respondent"] == 33.33
        assert report["nps"]["account"] is None
        assert report["nps"]["revenue_weighted"] is None
        assert report["nps"]["null_reasons"] == {
            "account": "insufficient_sample",
            "revenue_weighted": "insufficient_sample",
        }

    async def test_respondents_not_responses(self, api: httpx.AsyncClient) -> None:
        await add_accounts(api, {"A": "100.00"})
        await add_answers(api, ("a@x.test", "A", 10), ("A@x.test", "A", 9))
        await set_min_responses(api, 2)

        report = await coverage(api)

        assert report["responses"]["scored"] == 2
        assert report["nps"]["respondent"] is None
        assert report["nps"]["null_reasons"]["respondent"] == "insufficient_sample"

    async def test_no_data_reason(self, api: httpx.AsyncClient) -> None:
        await set_min_responses(api, 5)

        report = await coverage(api)

        assert report["nps"]["null_reasons"] == NO_DATA

    async def test_segments_and_trend_apply_minimum(self, api: httpx.AsyncClient) -> None:
        await add_accounts(api, {"A": "100.00", "B": "100.00"}, region="EMEA")
        await add_accounts(api, {"C": "100.00"}, region="AMER")
        await add_answers(api, ("a@x.test", "A", 10), ("b@x.test", "B", 0), ("c@x.test", "C", 9))
        await set_min_responses(api, 2)

        report = await get_json(api, "/v1/coverage/segments", {"by": "region", **Q1})
        trend = await get_json(api, "/v1/coverage/trend", {"from": "2026-Q1", "to": "2026-Q1"})

        found = {segment["segment"]: segment for segment in report["segments"]}
        assert found["EMEA"]["nps"]["respondent"] == 0.0
        assert found["AMER"]["nps"]["respondent"] is None
        assert found["AMER"]["nps"]["null_reasons"]["respondent"] == "insufficient_sample"
        assert found["unassigned"]["nps"]["null_reasons"] == NO_DATA
        assert trend["periods"][0]["nps"]["respondent"] == 33.33

    @pytest.mark.parametrize("value", [0, -1, 1_000_001, "many"])
    async def test_invalid_min_responses_rejected(
        self, api: httpx.AsyncClient, value: object
    ) -> None:
        response = await api.patch("/v1/tenant", json={"min_responses": value})

        assert_problem(response, 422)


class TestPooled:
    async def test_whole_book_pools_segments(self, api: httpx.AsyncClient) -> None:
        await add_accounts(api, {"A": "100.00"}, region="EMEA")
        await add_accounts(api, {"B": "100.00", "C": "100.00", "D": "100.00"}, region="AMER")
        await add_answers(
            api,
            ("a@x.test", "A", 10),
            ("b@x.test", "B", 0),
            ("c@x.test", "C", 0),
            ("d@x.test", "D", 0),
        )

        report = await coverage(api)
        segments = await get_json(api, "/v1/coverage/segments", {"by": "region", **Q1})

        found = {segment["segment"]: segment for segment in segments["segments"]}
        assert found["EMEA"]["nps"]["respondent"] == 100.0
        assert found["AMER"]["nps"]["respondent"] == -100.0
        assert report["nps"]["respondent"] == -50.0
        assert report["nps"]["revenue_weighted"] == -50.0


class TestAccountsForHalfRevenue:
    @pytest.mark.parametrize(
        ("amounts", "expected"),
        [
            (["100.00", "30.00", "20.00", "10.00"], 1),
            (["50.00", "50.00"], 1),
            (["40.00", "30.00", "30.00"], 2),
            (["10.00", "10.00", "10.00", "10.00", "10.00"], 3),
            (["0.02", "0.01", "0.01", "0.01", "0.01"], 2),
        ],
        ids=["one-large", "exact-half", "two", "equal", "cents"],
    )
    async def test_safe_bucket(
        self, api: httpx.AsyncClient, amounts: list[str], expected: int
    ) -> None:
        accounts = {f"A{index}": amount for index, amount in enumerate(amounts)}
        await add_accounts(api, accounts)
        await add_answers(api, *((f"{key}@x.test", key, 10) for key in accounts))

        report = await coverage(api)

        assert report["accounts_for_half_revenue"] == {
            "at_risk": 0,
            "passive": 0,
            "safe": expected,
            "unaccounted": 0,
        }

    async def test_each_bucket(self, api: httpx.AsyncClient) -> None:
        await add_accounts(
            api,
            {
                "R1": "10.00",
                "R2": "10.00",
                "P1": "500.00",
                "U1": "1.00",
                "U2": "1.00",
                "U3": "1.00",
            },
        )
        await add_answers(
            api, ("r1@x.test", "R1", 0), ("r2@x.test", "R2", 3), ("p@x.test", "P1", 7)
        )

        report = await coverage(api)
        segments = await get_json(api, "/v1/coverage/segments", {"by": "region", **Q1})

        assert report["accounts_for_half_revenue"] == {
            "at_risk": 1,
            "passive": 1,
            "safe": 0,
            "unaccounted": 2,
        }
        unassigned = segments["segments"][0]
        assert unassigned["accounts_for_half_revenue"] == report["accounts_for_half_revenue"]
