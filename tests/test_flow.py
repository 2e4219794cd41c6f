"""Bucket flow between two periods: sums by state equal both periods' coverage reports."""

from collections import defaultdict
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.report_data import QUARTERS, build_book, load_book
from tests.test_coverage import BUCKETS, EARLY, add_responses, add_revenue, answer, coverage
from tests.test_rollup import RULES, link_contact

Q2 = "2026-05-01T12:00:00Z"


async def flow(api: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    response = await api.get(
        "/v1/reports/flow", params={"from": "2026-Q1", "to": "2026-Q2", **params}
    )
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


async def load_two_quarters(api: httpx.AsyncClient) -> None:
    """A safe -> at_risk; B unaccounted -> safe; C enters the base in Q2 as passive; D
    churns after a safe Q1; E churned before Q1; F has two respondents in both quarters."""
    await add_revenue(
        api,
        ("A", "1000.00", EARLY),
        ("A", "1200.00", "2026-04-15T00:00:00Z"),
        ("B", "500.00", EARLY),
        ("C", "300.00", "2026-04-02T00:00:00Z"),
        ("D", "700.00", EARLY),
        ("D", "0.00", "2026-05-01T00:00:00Z"),
        ("E", "50.00", "2025-06-01T00:00:00Z"),
        ("E", "0.00", "2025-07-01T00:00:00Z"),
        ("F", "2000.00", EARLY),
    )
    await link_contact(api, "boss@f.example", "F", "decision_maker")
    await link_contact(api, "user@f.example", "F", "user")
    await add_responses(
        api,
        answer("a1", "A", 9),
        answer("a2", "A", 3, Q2),
        answer("b2", "B", 10, Q2),
        answer("c2", "C", 7, Q2),
        answer("d1", "D", 10),
        answer("e2", "E", 0, Q2),
        answer("f1-boss", "F", 5, "2026-02-01T00:00:00Z", email="boss@f.example"),
        answer("f1-user", "F", 10, "2026-02-02T00:00:00Z", email="user@f.example"),
        answer("f2-boss", "F", 8, "2026-05-01T00:00:00Z", email="boss@f.example"),
        answer("f2-user", "F", 9, "2026-05-02T00:00:00Z", email="user@f.example"),
    )


def sums_by(flows: list[dict[str, Any]], state: str, revenue: str) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for row in flows:
        totals[row[state]] += Decimal(row[revenue])
    return totals


def counts_by(flows: list[dict[str, Any]], state: str) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for row in flows:
        totals[row[state]] += row["accounts"]
    return totals


def assert_bridges(report: dict[str, Any], flows: list[dict[str, Any]], side: str) -> None:
    """Check that one side of the flows adds up to the coverage report's buckets."""
    state, revenue = f"{side}_state", f"revenue_{side}"
    revenue_sums = sums_by(flows, state, revenue)
    account_sums = counts_by(flows, state)
    for name in BUCKETS:
        assert revenue_sums[name] == Decimal(report["buckets"][name]["revenue"]), (side, name)
        assert account_sums[name] == report["buckets"][name]["accounts"], (side, name)
    assert revenue_sums["not_in_base"] == 0


class TestFlowRows:
    async def test_latest_rows(self, api: httpx.AsyncClient) -> None:
        await load_two_quarters(api)

        report = await flow(api, rollup="latest")

        assert report["rollup"] == "latest"
        assert report["currency"] == "USD"
        assert report["from"]["label"] == "2026-Q1"
        assert report["to"]["label"] == "2026-Q2"
        assert report["flows"] == [
            {
                "from_state": "safe",
                "to_state": "at_risk",
                "accounts": 1,
                "revenue_from": "1000.00",
                "revenue_to": "1200.00",
            },
            {
                "from_state": "safe",
                "to_state": "safe",
                "accounts": 1,
                "revenue_from": "2000.00",
                "revenue_to": "2000.00",
            },
            {
                "from_state": "safe",
                "to_state": "not_in_base",
                "accounts": 1,
                "revenue_from": "700.00",
                "revenue_to": "0.00",
            },
            {
                "from_state": "unaccounted",
                "to_state": "safe",
                "accounts": 1,
                "revenue_from": "500.00",
                "revenue_to": "500.00",
            },
            {
                "from_state": "not_in_base",
                "to_state": "passive",
                "accounts": 1,
                "revenue_from": "0.00",
                "revenue_to": "300.00",
            },
        ]

    async def test_rule_changes_states(self, api: httpx.AsyncClient) -> None:
        await load_two_quarters(api)

        report = await flow(api, rollup="decision_maker")

        pairs = {(row["from_state"], row["to_state"]): row["accounts"] for row in report["flows"]}
        # F's decision maker scores 5 in Q1 and 8 in Q2.
        assert pairs[("at_risk", "passive")] == 1
        assert ("safe", "safe") not in pairs

    async def test_same_period_stays(self, api: httpx.AsyncClient) -> None:
        await load_two_quarters(api)

        report = await flow(api, to="2026-Q1")

        assert all(row["from_state"] == row["to_state"] for row in report["flows"])
        assert all(row["revenue_from"] == row["revenue_to"] for row in report["flows"])

    async def test_empty_tenant(self, api: httpx.AsyncClient) -> None:
        report = await flow(api)

        assert report["flows"] == []


class TestFlowBridge:
    @pytest.mark.parametrize("rollup", RULES)
    async def test_sums_equal_coverage(self, api: httpx.AsyncClient, rollup: str) -> None:
        await load_two_quarters(api)

        report = await flow(api, rollup=rollup, as_of="2026-06-15T00:00:00Z")
        opening = await coverage(api, period="2026-Q1", rollup=rollup, as_of="2026-06-15T00:00:00Z")
        closing = await coverage(api, period="2026-Q2", rollup=rollup, as_of="2026-06-15T00:00:00Z")

        assert_bridges(opening, report["flows"], "from")
        assert_bridges(closing, report["flows"], "to")

    @pytest.mark.parametrize("rollup", ["latest", "average"])
    async def test_eight_quarters_bridge_coverage(
        self, api: httpx.AsyncClient, rollup: str
    ) -> None:
        await load_book(api, build_book())
        as_of = "2026-12-31T00:00:00Z"

        moved = 0
        for opening, closing in zip(QUARTERS, QUARTERS[1:], strict=False):
            report = await flow(api, rollup=rollup, as_of=as_of, **{"from": opening, "to": closing})
            params = {"rollup": rollup, "as_of": as_of}
            assert_bridges(await coverage(api, period=opening, **params), report["flows"], "from")
            assert_bridges(await coverage(api, period=closing, **params), report["flows"], "to")
            moved += sum(
                row["accounts"] for row in report["flows"] if row["from_state"] != row["to_state"]
            )

        assert moved > 0

    @pytest.mark.parametrize(
        ("opening", "closing"),
        [
            ("2026-01", "2026-06"),
            ("2025-Q4", "2026-Q2"),
            ("2026-01-01/2026-02-01T12:00:00Z", "last-30d"),
        ],
    )
    async def test_other_period_forms(
        self, api: httpx.AsyncClient, opening: str, closing: str
    ) -> None:
        await load_two_quarters(api)
        as_of = "2026-05-20T00:00:00Z"

        report = await flow(api, **{"from": opening, "to": closing}, rollup="average", as_of=as_of)
        start, _, end = opening.partition("/")
        opening_params = {"from": start, "to": end} if end else {"period": opening}
        opened = await coverage(api, **opening_params, rollup="average", as_of=as_of)
        closed = await coverage(api, period=closing, rollup="average", as_of=as_of)

        assert_bridges(opened, report["flows"], "from")
        assert_bridges(closed, report["flows"], "to")

    async def test_timezone_moves_response(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("A", "100.00", EARLY))
        await add_responses(api, answer("late", "A", 9, "2026-04-01T03:30:00Z"))

        utc = await flow(api)
        new_york = await flow(api, timezone="America/New_York")

        assert [(r["from_state"], r["to_state"]) for r in utc["flows"]] == [("unaccounted", "safe")]
        assert [(r["from_state"], r["to_state"]) for r in new_york["flows"]] == [
            ("safe", "unaccounted")
        ]


class TestFlowErrors:
    @pytest.mark.parametrize(
        ("params", "location"),
        [
            ({"from": "2026-Q5"}, "query.from"),
            ({"to": "nonsense"}, "query.to"),
            ({"to": "2026-03-01/2026-02-01"}, "query.to"),
            ({"timezone": "Mars/Base"}, "query.timezone"),
        ],
    )
    async def test_bad_period_rejected(
        self, api: httpx.AsyncClient, params: dict[str, str], location: str
    ) -> None:
        query = {"from": "2026-Q1", "to": "2026-Q2", **params}

        response = await api.get("/v1/reports/flow", params=query)

        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert [error["location"] for error in response.json()["errors"]] == [location]

    async def test_missing_period_rejected(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/v1/reports/flow", params={"from": "2026-Q1"})

        assert response.status_code == 422


class TestFlowTenants:
    async def test_other_tenant_never_counted(
        self, api: httpx.AsyncClient, other_api: httpx.AsyncClient
    ) -> None:
        await load_two_quarters(api)
        await add_revenue(other_api, ("A", "5.00", EARLY))

        theirs = await flow(other_api)

        assert theirs["flows"] == [
            {
                "from_state": "unaccounted",
                "to_state": "unaccounted",
                "accounts": 1,
                "revenue_from": "5.00",
                "revenue_to": "5.00",
            }
        ]
