"""GET /v1/coverage/segments: coverage per revenue tier, region, industry, owner or attribute."""

from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.helpers import assert_problem
from tests.report_data import (
    QUARTERS,
    build_book,
    get_json,
    load_book,
    report_statements,
    tenant_client,
    without_segment,
)
from tests.test_cases import (
    CASES,
    assert_buckets_add_up,
    assert_figures,
    load_input,
    period_params,
    read_json,
)

SEGMENTS_URL = "/v1/coverage/segments"
EARLY = "2025-12-01T00:00:00Z"
Q1 = {"period": "2026-Q1"}


async def put_account(
    api: httpx.AsyncClient,
    external_id: str,
    amount: str | None = "1000.00",
    *,
    effective_at: str = EARLY,
    **fields: Any,
) -> None:
    body: dict[str, Any] = {"name": external_id, **fields}
    if amount is not None:
        body["revenue"] = {"amount": amount, "currency": "USD", "effective_at": effective_at}
    response = await api.put(f"/v1/accounts/{external_id}", json=body)
    assert response.status_code in (200, 201), response.text


async def answer(api: httpx.AsyncClient, response_id: str, account: str | None, score: int) -> None:
    body = {
        "responses": [
            {
                "source": "test",
                "response_id": response_id,
                "account_external_id": account,
                "email": f"{response_id}@x.test",
                "score": score,
                "submitted_at": "2026-02-10T12:00:00Z",
            }
        ]
    }
    response = await api.post("/v1/responses", json=body)
    assert response.status_code == 200, response.text


async def segments(api: httpx.AsyncClient, by: str, **params: str) -> dict[str, Any]:
    report: dict[str, Any] = await get_json(api, SEGMENTS_URL, {"by": by, **Q1, **params})
    return report


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {segment["segment"]: segment for segment in report["segments"]}


class TestAgreement:
    @pytest.mark.parametrize("rollup", ["latest", "average"])
    async def test_regions_match_segment_tenants(
        self, app: FastAPI, api: httpx.AsyncClient, rollup: str
    ) -> None:
        book = build_book()
        await load_book(api, book)
        parts = {
            "EMEA": book.restricted(lambda body: body.get("region") == "EMEA"),
            "AMER": book.restricted(lambda body: body.get("region") == "AMER"),
            "APAC": book.restricted(lambda body: body.get("region") == "APAC"),
            "LATAM": book.restricted(lambda body: body.get("region") == "LATAM"),
            "unassigned": book.restricted(lambda body: not (body.get("region") or "").strip()),
        }

        covered = 0
        for segment, part in parts.items():
            async with tenant_client(app, segment) as alone:
                await load_book(alone, part)
                for quarter in QUARTERS:
                    params = {"period": quarter, "rollup": rollup}
                    expected = await get_json(alone, "/v1/coverage", params)
                    report = await get_json(api, SEGMENTS_URL, {"by": "region", **params})
                    found = by_name(report)[segment]
                    assert without_segment(found) == expected, f"{segment} {quarter}"
                    covered += found["accounts"]["covered"]

        assert covered > 0

    async def test_tiers_match_revenue_at_period_end(self, api: httpx.AsyncClient) -> None:
        book = build_book()
        await load_book(api, book)
        tiers = {"under-25M": (0, 25_000_000), "25M-250M": (25_000_000, 250_000_000)}
        tiers["250M-and-over"] = (250_000_000, 10**16)

        for quarter in QUARTERS:
            report = await get_json(api, SEGMENTS_URL, {"by": "tier", "period": quarter})
            whole = await get_json(api, "/v1/coverage", {"period": quarter})
            found = by_name(report)
            assert set(found) == {*tiers, "unassigned"}
            assert found["unassigned"]["total_revenue"] == "0.00"
            total = sum(Decimal(segment["total_revenue"]) for segment in report["segments"])
            assert total == Decimal(whole["total_revenue"])
            accounts = sum(segment["accounts"]["total"] for segment in report["segments"])
            assert accounts == whole["accounts"]["total"]

    async def test_one_statement_for_all_segments(
        self, app: FastAPI, api: httpx.AsyncClient
    ) -> None:
        for number in range(6):
            await put_account(api, f"B{number}", region=f"R{number}")

        with report_statements(app) as statements:
            report = await segments(api, "region")

        assert len(report["segments"]) == 7
        assert len(statements) == 1


SEGMENT_CASES = [case for case in CASES if case["expected"].get("segments")]


@pytest.mark.parametrize("case", SEGMENT_CASES, ids=lambda case: str(case["id"]))
async def test_case_segment_figures(api: httpx.AsyncClient, case: dict[str, Any]) -> None:
    query = case["input"]["query"]
    await load_input(api, case["input"], timezone=query["timezone"], currency="USD")
    for row in case["input"]["accounts"]:
        response = await api.put(
            f"/v1/accounts/{row['external_id']}", json={"attributes": {"segment": row["segment"]}}
        )
        assert response.status_code == 200, response.text

    response = await api.get(
        SEGMENTS_URL, params={"by": "attribute:segment", **period_params(query)}
    )

    assert response.status_code == 200, response.text
    found = by_name(read_json(response))
    for segment, expected in case["expected"]["segments"].items():
        assert_buckets_add_up(found[segment])
        assert_figures(found[segment], expected)


class TestValues:
    async def test_value_without_revenue_makes_segment(self, api: httpx.AsyncClient) -> None:
        await put_account(api, "A", region="EMEA")
        await put_account(api, "B", None, region="APAC")
        await put_account(api, "C", "500.00", effective_at="2026-05-01T00:00:00Z", region="LATAM")
        await answer(api, "b1", "B", 9)

        found = by_name(await segments(api, "region"))

        assert set(found) == {"EMEA", "APAC", "LATAM", "unassigned"}
        for name in ("APAC", "LATAM"):
            assert found[name]["total_revenue"] == "0.00"
            assert found[name]["coverage"] is None
            assert found[name]["accounts"] == {"total": 0, "covered": 0}
        assert found["APAC"]["nps"]["respondent"] == 100.0
        assert found["APAC"]["responses"] == {"scored": 1, "unmatched": 0}

    async def test_unassigned_segment(self, api: httpx.AsyncClient) -> None:
        await put_account(api, "A", "300.00", region="EMEA")
        await put_account(api, "B", "200.00")
        await put_account(api, "C", "100.00", region="   ")
        await put_account(api, "D", "50.00", region="unassigned")
        await answer(api, "b1", "B", 3)

        report = await segments(api, "region")

        rows = [(row["segment"], row["unassigned"]) for row in report["segments"]]
        assert rows == [("EMEA", False), ("unassigned", True), ("unassigned", False)]
        unassigned = report["segments"][1]
        assert unassigned["total_revenue"] == "300.00"
        assert unassigned["buckets"]["at_risk"]["revenue"] == "200.00"
        assert unassigned["nps"]["respondent"] == -100.0

    async def test_unassigned_present_when_empty(self, api: httpx.AsyncClient) -> None:
        await put_account(api, "A", region="EMEA")

        found = by_name(await segments(api, "region"))

        assert found["unassigned"]["unassigned"] is True
        assert found["unassigned"]["total_revenue"] == "0.00"
        assert found["unassigned"]["coverage"] is None

    async def test_sorted_by_revenue(self, api: httpx.AsyncClient) -> None:
        await put_account(api, "A", "100.00", owner="kim")
        await put_account(api, "B", "900.00", owner="lee")
        await put_account(api, "C", "400.00", owner="ann")
        await put_account(api, "D", "400.00", owner="bob")

        report = await segments(api, "owner")

        names = [row["segment"] for row in report["segments"]]
        assert names == ["lee", "ann", "bob", "kim", "unassigned"]
        assert report["by"] == "owner"

    async def test_industry_segments(self, api: httpx.AsyncClient) -> None:
        await put_account(api, "A", "100.00", industry="retail")
        await put_account(api, "B", "300.00", industry="retail")
        await answer(api, "a1", "A", 10)

        found = by_name(await segments(api, "industry"))

        assert found["retail"]["total_revenue"] == "400.00"
        assert found["retail"]["coverage"] == 0.25

    async def test_unmatched_responses_in_no_segment(self, api: httpx.AsyncClient) -> None:
        await put_account(api, "A", region="EMEA")
        await answer(api, "g1", "GHOST", 0)
        await answer(api, "a1", "A", 10)

        report = await segments(api, "region")

        scored = sum(row["responses"]["scored"] for row in report["segments"])
        assert scored == 1
        assert by_name(report)["EMEA"]["nps"]["respondent"] == 100.0

    async def test_other_tenant_values_hidden(
        self, api: httpx.AsyncClient, other_api: httpx.AsyncClient
    ) -> None:
        await put_account(api, "A", region="EMEA")
        await put_account(other_api, "A", region="SECRET")
        await answer(other_api, "s1", "A", 0)

        found = by_name(await segments(api, "region"))

        assert set(found) == {"EMEA", "unassigned"}
        assert found["EMEA"]["responses"]["scored"] == 0


class TestTiers:
    async def test_tier_uses_period_end_revenue(self, api: httpx.AsyncClient) -> None:
        await put_account(api, "A", "20000000.00")
        await put_account(api, "A", "30000000.00", effective_at="2026-03-31T23:59:59Z")
        await put_account(api, "B", "250000000.00")
        await put_account(api, "C", "10.00")
        await put_account(api, "C", "0.00", effective_at="2026-02-01T00:00:00Z")

        q4 = by_name(await segments(api, "tier", period="2025-Q4"))
        q1 = by_name(await segments(api, "tier"))

        assert q4["under-25M"]["total_revenue"] == "20000010.00"
        assert q1["under-25M"]["total_revenue"] == "0.00"
        assert q1["25M-250M"]["total_revenue"] == "30000000.00"
        assert q1["250M-and-over"]["total_revenue"] == "250000000.00"
        assert q4["25M-250M"]["total_revenue"] == "0.00"

    async def test_account_without_revenue_unassigned(self, api: httpx.AsyncClient) -> None:
        await put_account(api, "A", "10.00")
        await put_account(api, "A", "0.00", effective_at="2026-02-01T00:00:00Z")
        await put_account(api, "B", None)
        await answer(api, "a1", "A", 10)
        await answer(api, "b1", "B", 0)

        found = by_name(await segments(api, "tier"))

        assert found["unassigned"]["total_revenue"] == "0.00"
        assert found["unassigned"]["responses"]["scored"] == 2
        assert found["unassigned"]["nps"]["respondent"] == 0.0
        assert found["under-25M"]["responses"]["scored"] == 0

    async def test_as_of_revenue_for_open_period(self, api: httpx.AsyncClient) -> None:
        await put_account(api, "A", "20000000.00")
        await put_account(api, "A", "30000000.00", effective_at="2026-03-01T00:00:00Z")

        early = by_name(await segments(api, "tier", as_of="2026-02-15T00:00:00Z"))

        assert early["under-25M"]["total_revenue"] == "20000000.00"
        assert early["25M-250M"]["total_revenue"] == "0.00"

    async def test_configured_tiers(self, api: httpx.AsyncClient) -> None:
        tiers = [
            {"label": "small", "min_revenue": "0"},
            {"label": "large", "min_revenue": "1000.50"},
        ]
        patched = await api.patch("/v1/tenant", json={"revenue_tiers": tiers})
        await put_account(api, "A", "1000.49")
        await put_account(api, "B", "1000.50")

        report = await segments(api, "tier")

        assert patched.status_code == 200, patched.text
        assert patched.json()["revenue_tiers"] == tiers
        found = by_name(report)
        assert set(found) == {"small", "large", "unassigned"}
        assert found["small"]["total_revenue"] == "1000.49"
        assert found["large"]["total_revenue"] == "1000.50"

    async def test_empty_tiers_in_band_order(self, api: httpx.AsyncClient) -> None:
        await put_account(api, "A", "1000.00")

        report = await segments(api, "tier")

        order = [item["segment"] for item in report["segments"]]
        assert order == ["under-25M", "25M-250M", "250M-and-over", "unassigned"]

    async def test_default_tiers_in_settings(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/v1/tenant")

        assert response.status_code == 200, response.text
        assert response.json()["revenue_tiers"] == [
            {"label": "under-25M", "min_revenue": "0"},
            {"label": "25M-250M", "min_revenue": "25000000"},
            {"label": "250M-and-over", "min_revenue": "250000000"},
        ]

    @pytest.mark.parametrize(
        "tiers",
        [
            [],
            [{"label": "a", "min_revenue": "10"}],
            [{"label": "a", "min_revenue": "0"}, {"label": "b", "min_revenue": "0"}],
            [{"label": "a", "min_revenue": "0"}, {"label": "a", "min_revenue": "5"}],
            [{"label": "", "min_revenue": "0"}],
            [{"label": "a", "min_revenue": "-1"}],
        ],
        ids=["empty", "not-from-zero", "not-rising", "duplicate-label", "blank-label", "negative"],
    )
    async def test_invalid_tiers_rejected(
        self, api: httpx.AsyncClient, tiers: list[dict[str, str]]
    ) -> None:
        response = await api.patch("/v1/tenant", json={"revenue_tiers": tiers})

        assert_problem(response, 422)
        settings = await api.get("/v1/tenant")
        assert len(settings.json()["revenue_tiers"]) == 3


class TestAttributes:
    async def test_attribute_values(self, api: httpx.AsyncClient) -> None:
        await put_account(api, "A", "100.00", attributes={"plan": "gold"})
        await put_account(api, "B", "200.00", attributes={"plan": 3})
        await put_account(api, "C", "400.00", attributes={"plan": None})
        await put_account(api, "D", "800.00", attributes={"other": "gold"})
        await put_account(api, "E", "50.00", attributes={"plan": "gold"})

        report = await segments(api, "attribute:plan")

        assert report["by"] == "attribute:plan"
        rows = [(row["segment"], row["total_revenue"]) for row in report["segments"]]
        assert rows == [("unassigned", "1200.00"), ("3", "200.00"), ("gold", "150.00")]

    @pytest.mark.parametrize("by", ["", "tiers", "attribute:", "attribute", "region:x", "plan"])
    async def test_invalid_by_rejected(self, api: httpx.AsyncClient, by: str) -> None:
        response = await api.get(SEGMENTS_URL, params={"by": by, **Q1})

        body = assert_problem(response, 422)
        assert "query.by" in response.text, body

    async def test_missing_by_rejected(self, api: httpx.AsyncClient) -> None:
        response = await api.get(SEGMENTS_URL, params=Q1)

        assert_problem(response, 422)

    async def test_invalid_period_rejected(self, api: httpx.AsyncClient) -> None:
        response = await api.get(SEGMENTS_URL, params={"by": "region", "period": "2026-Q5"})

        assert_problem(response, 422)
