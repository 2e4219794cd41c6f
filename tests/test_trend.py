"""GET /v1/coverage/trend: coverage for each quarter or month of a range, in one statement."""

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.helpers import assert_problem
from tests.report_data import QUARTERS, build_book, get_json, load_book, report_statements

TREND_URL = "/v1/coverage/trend"
AS_OF = "2026-08-15T12:00:00Z"


async def trend(api: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
    body = await get_json(api, TREND_URL, params)
    periods: list[dict[str, Any]] = body["periods"]
    return periods


class TestAgreement:
    @pytest.mark.parametrize("rollup", ["latest", "lowest", "account_nps", "decision_maker"])
    async def test_quarters_match_coverage(self, api: httpx.AsyncClient, rollup: str) -> None:
        await load_book(api, build_book())

        periods = await trend(api, to="2026-Q4", rollup=rollup, as_of=AS_OF, **{"from": "2025-Q1"})

        assert [period["period"]["label"] for period in periods] == QUARTERS
        for quarter, found in zip(QUARTERS, periods, strict=True):
            params = {"period": quarter, "rollup": rollup, "as_of": AS_OF}
            expected = await get_json(api, "/v1/coverage", params)
            assert found == expected, quarter
        assert sum(period["accounts"]["covered"] for period in periods) > 0

    async def test_months_match_coverage(self, api: httpx.AsyncClient) -> None:
        await load_book(api, build_book(seed=11))
        months = [f"2025-{month:02d}" for month in range(10, 13)] + ["2026-01", "2026-02"]

        periods = await trend(
            api,
            granularity="month",
            to="2026-02",
            timezone="America/New_York",
            **{"from": "2025-10"},
        )

        assert [period["period"]["label"] for period in periods] == months
        for month, found in zip(months, periods, strict=True):
            params = {"period": month, "timezone": "America/New_York"}
            expected = await get_json(api, "/v1/coverage", params)
            assert found == expected, month

    async def test_fiscal_quarters_match_coverage(self, api: httpx.AsyncClient) -> None:
        await load_book(api, build_book(seed=5))
        patched = await api.patch("/v1/tenant", json={"fiscal_year_start_month": 4})
        labels = ["FY2026-Q3", "FY2026-Q4", "FY2027-Q1", "FY2027-Q2"]

        periods = await trend(api, to="FY2027-Q2", **{"from": "FY2026-Q3"})

        assert patched.status_code == 200, patched.text
        assert [period["period"]["label"] for period in periods] == labels
        assert periods[0]["period"]["start"] == "2025-10-01T00:00:00Z"
        for label, found in zip(labels, periods, strict=True):
            expected = await get_json(api, "/v1/coverage", {"period": label})
            assert {**found, "period": None} == {**expected, "period": None}, label
            assert found["period"]["start"] == expected["period"]["start"]

    async def test_one_statement_for_all_periods(
        self, app: FastAPI, api: httpx.AsyncClient
    ) -> None:
        await load_book(api, build_book())

        with report_statements(app) as statements:
            periods = await trend(api, to="2026-Q4", **{"from": "2025-Q1"})

        assert len(periods) == 8
        assert len(statements) == 1

    async def test_single_period(self, api: httpx.AsyncClient) -> None:
        periods = await trend(api, to="2026-Q1", **{"from": "2026-Q1"})

        assert len(periods) == 1
        assert periods[0]["total_revenue"] == "0.00"
        assert periods[0]["coverage"] is None


class TestLimits:
    async def test_max_periods_accepted(self, api: httpx.AsyncClient) -> None:
        periods = await trend(api, granularity="month", to="2025-12", **{"from": "2016-01"})

        assert len(periods) == 120

    async def test_too_many_periods_rejected(self, api: httpx.AsyncClient) -> None:
        response = await api.get(
            TREND_URL, params={"granularity": "month", "from": "2015-12", "to": "2025-12"}
        )

        body = assert_problem(response, 422)
        assert "at most 120 periods" in body["detail"]

    @pytest.mark.parametrize(
        ("params", "location"),
        [
            ({"from": "2026-Q2", "to": "2026-Q1"}, "query.to"),
            ({"from": "2026-Q1", "to": "FY2026-Q2"}, "query.to"),
            ({"from": "2026-01", "to": "2026-Q2"}, "query.from"),
            ({"from": "2026-Q1", "to": "2026-03", "granularity": "month"}, "query.from"),
            ({"from": "1969-Q4", "to": "2026-Q1"}, "query.from"),
            ({"from": "2026-Q1", "to": "2026-Q2", "granularity": "year"}, "granularity"),
            ({"to": "2026-Q2"}, "from"),
        ],
        ids=[
            "reversed",
            "mixed-fiscal",
            "month-as-quarter",
            "quarter-as-month",
            "old",
            "year",
            "no-from",
        ],
    )
    async def test_invalid_range_rejected(
        self, api: httpx.AsyncClient, params: dict[str, str], location: str
    ) -> None:
        response = await api.get(TREND_URL, params=params)

        assert_problem(response, 422)
        assert location in response.text

    async def test_long_values_cut_in_problem(self, api: httpx.AsyncClient) -> None:
        params = {"from": "2026-Q1" * 1000, "to": "x" * 10_000, "as_of": "9" * 5000}

        response = await api.get(TREND_URL, params=params)

        body = assert_problem(response, 422)
        assert len(response.content) < 2000
        assert "'2026-Q12026-Q1" in body["detail"]
        assert "..." in body["detail"]

    async def test_every_invalid_parameter_listed(self, api: httpx.AsyncClient) -> None:
        params = {"from": "bad", "to": "bad2", "as_of": "soon", "timezone": "Mars/Base"}

        response = await api.get(TREND_URL, params=params)

        body = assert_problem(response, 422)
        locations = [error["location"] for error in body["errors"]]
        assert locations == ["query.timezone", "query.as_of", "query.from", "query.to"]

    async def test_both_bounds_invalid(self, api: httpx.AsyncClient) -> None:
        response = await api.get(TREND_URL, params={"from": "2026-13", "to": "Q2-2026"})

        body = assert_problem(response, 422)
        locations = [error["location"] for error in body["errors"]]
        assert locations == ["query.from", "query.to"]
        assert "'2026-13'" in body["detail"]
        assert "'Q2-2026'" in body["detail"]
