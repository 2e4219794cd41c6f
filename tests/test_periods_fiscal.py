"""Fiscal periods, rolling windows and `as_of` on `/v1/coverage`."""

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.test_coverage import EARLY, add_responses, add_revenue, answer, coverage, set_tenant

# 23:30 on 31 March 2026 in New York (EDT, UTC-4) is 03:30 on 1 April in UTC.
NEW_YORK_LATE_MARCH = "2026-03-31T23:30:00-04:00"


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def local_midnight(day: str) -> datetime:
    """Midnight of `day` in Europe/Berlin."""
    return datetime.fromisoformat(day).replace(tzinfo=ZoneInfo("Europe/Berlin"))


def covered_accounts(report: dict[str, Any]) -> int:
    covered: int = report["accounts"]["covered"]
    return covered


class TestTimezoneEdge:
    @pytest.mark.parametrize(
        ("timezone", "fiscal_start", "covering", "missing"),
        [
            pytest.param("UTC", 1, "2026-Q2", "2026-Q1", id="utc-calendar"),
            pytest.param("America/New_York", 1, "2026-Q1", "2026-Q2", id="new-york-calendar"),
            pytest.param("UTC", 4, "FY2027-Q1", "FY2026-Q4", id="utc-fiscal-april"),
            pytest.param(
                "America/New_York", 4, "FY2026-Q4", "FY2027-Q1", id="new-york-fiscal-april"
            ),
        ],
    )
    async def test_late_march_response(
        self,
        api: httpx.AsyncClient,
        timezone: str,
        fiscal_start: int,
        covering: str,
        missing: str,
    ) -> None:
        await set_tenant(api, timezone=timezone, fiscal_year_start_month=fiscal_start)
        await add_revenue(api, ("A", "100.00", EARLY))
        await add_responses(api, answer("r1", "A", 9, NEW_YORK_LATE_MARCH))

        covered = await coverage(api, period=covering)
        uncovered = await coverage(api, period=missing)

        assert covered_accounts(covered) == 1
        assert covered["buckets"]["safe"]["revenue"] == "100.00"
        assert covered_accounts(uncovered) == 0


class TestFiscalLabels:
    @pytest.mark.parametrize(
        ("fiscal_start", "period", "start", "end"),
        [
            pytest.param(4, "FY2027-Q1", "2026-04-01", "2026-07-01", id="april-q1"),
            pytest.param(4, "FY2027-Q4", "2027-01-01", "2027-04-01", id="april-q4"),
            pytest.param(4, "FY2027", "2026-04-01", "2027-04-01", id="april-year"),
            pytest.param(1, "FY2026", "2026-01-01", "2027-01-01", id="january-year"),
            pytest.param(1, "FY2026-Q3", "2026-07-01", "2026-10-01", id="january-q3"),
            pytest.param(10, "FY2026-Q1", "2025-10-01", "2026-01-01", id="october-q1"),
            pytest.param(10, "FY2026", "2025-10-01", "2026-10-01", id="october-year"),
            pytest.param(2, "FY2026-Q4", "2025-11-01", "2026-02-01", id="february-q4"),
        ],
    )
    async def test_edges_at_local_midnight(
        self, api: httpx.AsyncClient, fiscal_start: int, period: str, start: str, end: str
    ) -> None:
        await set_tenant(api, timezone="Europe/Berlin", fiscal_year_start_month=fiscal_start)

        report = await coverage(api, period=period)

        assert report["period"]["label"] == period
        assert moment(report["period"]["start"]) == local_midnight(start)
        assert moment(report["period"]["end"]) == local_midnight(end)

    async def test_calendar_labels_unchanged(self, api: httpx.AsyncClient) -> None:
        await set_tenant(api, fiscal_year_start_month=4)

        report = await coverage(api, period="2026-Q1")

        assert moment(report["period"]["start"]) == moment("2026-01-01T00:00:00+00:00")
        assert moment(report["period"]["end"]) == moment("2026-04-01T00:00:00+00:00")

    async def test_setting_default_and_update(self, api: httpx.AsyncClient) -> None:
        before = (await api.get("/v1/tenant")).json()
        await set_tenant(api, fiscal_year_start_month=7)
        after = (await api.get("/v1/tenant")).json()

        assert before["fiscal_year_start_month"] == 1
        assert after["fiscal_year_start_month"] == 7

    @pytest.mark.parametrize("month", [0, 13, "April"])
    async def test_invalid_start_month(self, api: httpx.AsyncClient, month: object) -> None:
        response = await api.patch("/v1/tenant", json={"fiscal_year_start_month": month})

        assert response.status_code == 422

    @pytest.mark.parametrize("period", ["FY26", "FY2026-Q5", "FY1969", "fy2026"])
    async def test_invalid_label(self, api: httpx.AsyncClient, period: str) -> None:
        response = await api.get("/v1/coverage", params={"period": period})

        assert response.status_code == 422
        assert response.json()["errors"][0]["location"] == "query.period"


class TestRollingWindow:
    async def test_window_ends_at_as_of(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("A", "100.00", EARLY), ("B", "100.00", EARLY))
        await add_responses(
            api,
            answer("inside", "A", 9, "2026-01-15T12:00:00Z"),
            answer("before", "B", 9, "2026-01-15T11:59:59Z"),
            answer("after", "B", 9, "2026-04-15T12:00:00Z"),
        )

        report = await coverage(api, period="last-90d", as_of="2026-04-15T12:00:00Z")

        assert report["period"]["label"] == "last-90d"
        assert moment(report["period"]["start"]) == moment("2026-01-15T12:00:00Z")
        assert moment(report["period"]["end"]) == moment("2026-04-15T12:00:00Z")
        assert report["buckets"]["safe"]["accounts"] == 1
        assert report["responses"]["scored"] == 1

    async def test_any_number_of_days(self, api: httpx.AsyncClient) -> None:
        report = await coverage(api, period="last-7d", as_of="2026-03-10T00:00:00Z")

        assert moment(report["period"]["start"]) == moment("2026-03-03T00:00:00Z")

    async def test_keeps_local_time_over_dst(self, api: httpx.AsyncClient) -> None:
        await set_tenant(api, timezone="America/New_York")

        # New York moves to daylight saving time on 8 March 2026.
        report = await coverage(api, period="last-30d", as_of="2026-03-20T09:00:00-04:00")

        assert moment(report["period"]["start"]) == moment("2026-02-18T09:00:00-05:00")
        assert moment(report["period"]["end"]) == moment("2026-03-20T09:00:00-04:00")

    async def test_default_as_of_is_now(self, api: httpx.AsyncClient) -> None:
        before = datetime.now().astimezone()
        report = await coverage(api, period="last-1d")
        after = datetime.now().astimezone()

        end = moment(report["period"]["end"])
        assert before <= end <= after

    @pytest.mark.parametrize("period", ["last-0d", "last-3661d", "last-90", "last--5d"])
    async def test_invalid_window(self, api: httpx.AsyncClient, period: str) -> None:
        response = await api.get("/v1/coverage", params={"period": period})

        assert response.status_code == 422
        assert response.json()["errors"][0]["location"] == "query.period"


class TestAsOf:
    async def load_growing_account(self, api: httpx.AsyncClient) -> None:
        await add_revenue(
            api,
            ("A", "100.00", "2026-01-01T00:00:00Z"),
            ("A", "500.00", "2026-02-20T00:00:00Z"),
            ("A", "900.00", "2026-04-01T00:00:00Z"),
        )

    @pytest.mark.parametrize(
        ("as_of", "total"),
        [
            pytest.param("2026-02-15T00:00:00Z", "100.00", id="before-increase"),
            pytest.param("2026-02-20T00:00:00Z", "500.00", id="at-increase"),
            pytest.param("2026-03-31T23:59:59Z", "500.00", id="last-second"),
            pytest.param("2026-04-01T00:00:00Z", "500.00", id="period-over"),
            pytest.param("2026-06-01T00:00:00Z", "500.00", id="long-after"),
        ],
    )
    async def test_unfinished_period_revenue(
        self, api: httpx.AsyncClient, as_of: str, total: str
    ) -> None:
        await self.load_growing_account(api)

        report = await coverage(api, period="2026-Q1", as_of=as_of)

        assert report["total_revenue"] == total

    async def test_finished_period_without_as_of(self, api: httpx.AsyncClient) -> None:
        await self.load_growing_account(api)

        report = await coverage(api, period="2026-Q1")

        assert report["total_revenue"] == "500.00"

    async def test_future_revenue_not_counted(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("A", "100.00", EARLY), ("A", "0.00", "2099-01-01T00:00:00Z"))

        report = await coverage(api, period="2099-Q1", as_of="2098-12-31T00:00:00Z")

        # The churn record takes effect after `as_of`, so A still has revenue.
        assert report["total_revenue"] == "100.00"

    async def test_default_period_contains_as_of(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/v1/coverage", params={"as_of": "2026-05-10T08:00:00Z"})

        assert response.status_code == 200
        assert response.json()["period"]["label"] == "2026-Q2"

    async def test_local_as_of_without_offset(self, api: httpx.AsyncClient) -> None:
        await set_tenant(api, timezone="America/New_York")

        report = await coverage(api, period="last-1d", as_of="2026-03-20T09:00:00")

        assert moment(report["period"]["end"]) == moment("2026-03-20T09:00:00-04:00")

    @pytest.mark.parametrize("as_of", ["yesterday", "2026-13-01T00:00:00Z"])
    async def test_invalid_as_of(self, api: httpx.AsyncClient, as_of: str) -> None:
        response = await api.get("/v1/coverage", params={"period": "2026-Q1", "as_of": as_of})

        assert response.status_code == 422
        assert response.json()["errors"][0]["location"] == "query.as_of"

    async def test_as_of_plus_sent_unencoded(self, api: httpx.AsyncClient) -> None:
        # A bare + in a query string decodes to a space.
        response = await api.get("/v1/coverage?period=2026-Q1&as_of=2026-03-20T09:00:00+02:00")

        assert response.status_code == 422
        assert "%2B" in response.json()["detail"]
