"""Coverage reports worked out by hand: revenue base, buckets, periods and NPS figures.

Ratios are compared within rounding: shares and coverage to 4 decimal places, NPS to 2.
"""

from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

BUCKETS = ("at_risk", "passive", "safe", "unaccounted")
EARLY = "2025-12-01T00:00:00Z"
# Sentinels: GENERATED_EMAIL gives each response an email of its own, and ABSENT leaves
# the key out.
GENERATED_EMAIL = object()
ABSENT = object()


def ratio(value: float) -> Any:
    return pytest.approx(value, abs=5e-5)


def nps(value: float) -> Any:
    return pytest.approx(value, abs=5e-3)


def answer(
    response_id: str,
    account: str | None,
    score: object,
    submitted_at: str = "2026-02-01T12:00:00Z",
    *,
    email: object = GENERATED_EMAIL,
    **extra: Any,
) -> dict[str, Any]:
    """A native response; by default the email is unique to the response."""
    item: dict[str, Any] = {
        "source": "native",
        "response_id": response_id,
        "account_external_id": account,
        "email": f"{response_id}@example.com" if email is GENERATED_EMAIL else email,
        "submitted_at": submitted_at,
        **extra,
    }
    if score is not ABSENT:
        item["score"] = score
    return item


async def add_revenue(api: httpx.AsyncClient, *rows: tuple[str, str, str]) -> None:
    """Post one revenue update per (account, amount, effective_at) row, in row order."""
    for account, amount, effective_at in rows:
        update = {
            "account_external_id": account,
            "amount": amount,
            "currency": "USD",
            "effective_at": effective_at,
        }
        response = await api.post("/v1/revenue-updates", json={"updates": [update]})
        assert response.status_code == 200, response.text


async def add_responses(api: httpx.AsyncClient, *items: dict[str, Any]) -> None:
    """Post the responses one request each, so the list order is the arrival order."""
    for item in items:
        response = await api.post("/v1/responses", json={"responses": [item]})
        assert response.status_code == 200, response.text


async def set_tenant(api: httpx.AsyncClient, **settings: Any) -> None:
    response = await api.patch("/v1/tenant", json=settings)
    assert response.status_code == 200, response.text


async def coverage(api: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    response = await api.get("/v1/coverage", params=params or {"period": "2026-Q1"})
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    assert_buckets_add_up(report)
    return report


def assert_buckets_add_up(report: dict[str, Any]) -> None:
    """Check that the four buckets add up to the totals, in revenue and in accounts."""
    buckets = report["buckets"]
    bucket_revenue = sum(Decimal(buckets[name]["revenue"]) for name in BUCKETS)
    bucket_accounts = sum(buckets[name]["accounts"] for name in BUCKETS)
    unaccounted = buckets["unaccounted"]
    assert bucket_revenue == Decimal(report["total_revenue"])
    assert bucket_accounts == report["accounts"]["total"]
    covered = Decimal(report["total_revenue"]) - Decimal(unaccounted["revenue"])
    assert Decimal(report["covered_revenue"]) == covered
    assert report["accounts"]["covered"] == report["accounts"]["total"] - unaccounted["accounts"]


def bucket_revenue(report: dict[str, Any]) -> dict[str, str]:
    return {name: report["buckets"][name]["revenue"] for name in BUCKETS}


def bucket_accounts(report: dict[str, Any]) -> dict[str, int]:
    return {name: report["buckets"][name]["accounts"] for name in BUCKETS}


class TestShape:
    async def test_exact_keys(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("A", "100.00", EARLY))
        await add_responses(api, answer("r1", "A", 9))

        report = await coverage(api)

        assert set(report) == {
            "period",
            "currency",
            "rollup",
            "level",
            "target",
            "total_revenue",
            "covered_revenue",
            "coverage",
            "meets_target",
            "buckets",
            "accounts",
            "responses",
            "nps",
            "accounts_for_half_revenue",
        }
        assert set(report["period"]) == {"label", "start", "end", "timezone"}
        assert set(report["buckets"]) == set(BUCKETS)
        for name in BUCKETS:
            assert set(report["buckets"][name]) == {"revenue", "accounts", "share"}
        assert set(report["accounts"]) == {"total", "covered"}
        assert set(report["responses"]) == {"scored", "unmatched"}
        assert set(report["nps"]) == {"respondent", "account", "revenue_weighted", "null_reasons"}

    async def test_spec_example(self, api: httpx.AsyncClient) -> None:
        await add_revenue(
            api,
            ("A", "250000.00", EARLY),
            ("B", "1000000.00", EARLY),
            ("C", "50000.00", EARLY),
        )
        await add_responses(api, answer("r1", "A", 10))

        report = await coverage(api)

        assert report["period"]["label"] == "2026-Q1"
        assert datetime.fromisoformat(report["period"]["start"]) == datetime.fromisoformat(
            "2026-01-01T00:00:00Z"
        )
        assert datetime.fromisoformat(report["period"]["end"]) == datetime.fromisoformat(
            "2026-04-01T00:00:00Z"
        )
        assert report["period"]["timezone"] == "UTC"
        assert report["currency"] == "USD"
        assert report["rollup"] == "latest"
        assert report["target"] == 0.8
        assert report["total_revenue"] == "1300000.00"
        assert report["covered_revenue"] == "250000.00"
        assert report["coverage"] == ratio(0.1923)
        assert report["meets_target"] is False
        assert report["buckets"]["at_risk"] == {"revenue": "0.00", "accounts": 0, "share": 0.0}
        assert report["buckets"]["passive"] == {"revenue": "0.00", "accounts": 0, "share": 0.0}
        assert report["buckets"]["safe"]["revenue"] == "250000.00"
        assert report["buckets"]["safe"]["accounts"] == 1
        assert report["buckets"]["safe"]["share"] == ratio(0.1923)
        assert report["buckets"]["unaccounted"]["revenue"] == "1050000.00"
        assert report["buckets"]["unaccounted"]["accounts"] == 2
        assert report["buckets"]["unaccounted"]["share"] == ratio(0.8077)
        assert report["accounts"] == {"total": 3, "covered": 1}
        assert report["responses"] == {"scored": 1, "unmatched": 0}
        assert report["nps"]["respondent"] == nps(100.0)
        assert report["nps"]["account"] == nps(100.0)
        assert report["nps"]["revenue_weighted"] == nps(100.0)

    async def test_currency_is_reporting_currency(self, api: httpx.AsyncClient) -> None:
        await set_tenant(api, reporting_currency="EUR")

        report = await coverage(api)

        assert report["currency"] == "EUR"

    async def test_money_is_exact(self, api: httpx.AsyncClient) -> None:
        # 0.1 + 0.2 in binary floats is 0.30000000000000004.
        await add_revenue(api, ("A", "0.10", EARLY), ("B", "0.20", EARLY))
        await add_responses(api, answer("r1", "A", 9), answer("r2", "B", 9))

        report = await coverage(api)

        assert report["total_revenue"] == "0.30"
        assert report["buckets"]["safe"]["revenue"] == "0.30"


class TestBuckets:
    async def test_score_edges(self, api: httpx.AsyncClient) -> None:
        scores = {"S0": 0, "S6": 6, "S7": 7, "S8": 8, "S9": 9, "S10": 10}
        await add_revenue(api, *((account, "100.00", EARLY) for account in scores))
        await add_responses(
            api, *(answer(f"r-{account}", account, score) for account, score in scores.items())
        )

        report = await coverage(api)

        assert bucket_accounts(report) == {"at_risk": 2, "passive": 2, "safe": 2, "unaccounted": 0}
        assert report["coverage"] == ratio(1.0)

    async def test_weighted_figures(self, api: httpx.AsyncClient) -> None:
        # Safe are A 700 and D 1, at risk B 200, passive C 100 and unaccounted E 1000.
        await add_revenue(
            api,
            ("A", "700.00", EARLY),
            ("B", "200.00", EARLY),
            ("C", "100.00", EARLY),
            ("D", "1.00", EARLY),
            ("E", "1000.00", EARLY),
        )
        await add_responses(
            api,
            answer("ra", "A", 10),
            answer("rb", "B", 4),
            answer("rc", "C", 8),
            answer("rd", "D", 9),
        )

        report = await coverage(api)

        assert bucket_revenue(report) == {
            "at_risk": "200.00",
            "passive": "100.00",
            "safe": "701.00",
            "unaccounted": "1000.00",
        }
        assert report["total_revenue"] == "2001.00"
        assert report["covered_revenue"] == "1001.00"
        assert report["coverage"] == ratio(1001 / 2001)
        assert report["buckets"]["safe"]["share"] == ratio(701 / 2001)
        assert report["buckets"]["at_risk"]["share"] == ratio(200 / 2001)
        assert report["buckets"]["passive"]["share"] == ratio(100 / 2001)
        assert report["buckets"]["unaccounted"]["share"] == ratio(1000 / 2001)
        assert report["accounts"] == {"total": 5, "covered": 4}
        # Accounts: 2 promoters, 1 detractor, 1 passive.
        assert report["nps"]["account"] == nps(25.0)
        assert report["nps"]["revenue_weighted"] == nps(100 * (701 - 200) / 1001)
        # Respondents: 2 promoters, 1 detractor, 1 passive.
        assert report["nps"]["respondent"] == nps(25.0)

    async def test_latest_by_submitted_at(self, api: httpx.AsyncClient) -> None:
        # The March response arrives first, and the February one arrives later but is older.
        await add_revenue(api, ("A", "100.00", EARLY))
        await add_responses(
            api,
            answer("march", "A", 3, "2026-03-01T12:00:00Z"),
            answer("february", "A", 10, "2026-02-01T12:00:00Z"),
        )

        report = await coverage(api)

        assert bucket_accounts(report)["at_risk"] == 1
        assert bucket_accounts(report)["safe"] == 0
        assert report["responses"]["scored"] == 2

    async def test_earlier_period_answer_ignored(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("A", "100.00", EARLY))
        await add_responses(api, answer("q4", "A", 9, "2025-12-15T12:00:00Z"))

        report = await coverage(api)

        assert bucket_accounts(report)["unaccounted"] == 1
        assert report["responses"]["scored"] == 0
        assert report["coverage"] == ratio(0.0)


class TestNullScores:
    async def test_null_never_counts(self, api: httpx.AsyncClient) -> None:
        # B has only a null score and C has no score key, so neither is at risk or covered.
        await add_revenue(
            api, ("A", "300000.00", EARLY), ("B", "200000.00", EARLY), ("C", "500000.00", EARLY)
        )
        await add_responses(
            api,
            answer("ra", "A", 10, "2026-02-01T10:00:00Z"),
            answer("rb", "B", None, "2026-03-10T10:00:00Z"),
            answer("rc", "C", ABSENT, "2026-03-11T10:00:00Z"),
        )

        report = await coverage(api)

        assert bucket_revenue(report) == {
            "at_risk": "0.00",
            "passive": "0.00",
            "safe": "300000.00",
            "unaccounted": "700000.00",
        }
        assert report["responses"]["scored"] == 1
        assert report["nps"]["respondent"] == nps(100.0)
        assert report["coverage"] == ratio(0.3)

    async def test_null_keeps_earlier_answer(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("B", "200000.00", EARLY))
        await add_responses(
            api,
            answer("r0", "B", 9, "2026-01-10T10:00:00Z", email="bob@example.com"),
            answer("r2", "B", None, "2026-03-10T10:00:00Z", email="bob@example.com"),
        )

        report = await coverage(api)

        assert bucket_revenue(report)["safe"] == "200000.00"
        assert bucket_accounts(report)["unaccounted"] == 0
        assert report["nps"]["respondent"] == nps(100.0)

    async def test_zero_is_a_score(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("A", "250000.00", EARLY), ("C", "500000.00", EARLY))
        await add_responses(api, answer("ra", "A", 0), answer("rc", "C", "0"))

        report = await coverage(api)

        assert bucket_revenue(report)["at_risk"] == "750000.00"
        assert report["nps"]["respondent"] == nps(-100.0)
        assert report["coverage"] == ratio(1.0)


class TestDuplicates:
    async def test_duplicate_counted_once(self, api: httpx.AsyncClient) -> None:
        # Counted twice, the detractor would give NPS (1 - 2) / 3 = -33.33.
        await add_revenue(api, ("A", "100000.00", EARLY), ("B", "100000.00", EARLY))
        detractor = answer("r1", "A", 3, email="al@a.example")
        await add_responses(api, detractor, detractor, answer("r2", "B", 9))

        report = await coverage(api)

        assert report["responses"]["scored"] == 2
        assert report["nps"]["respondent"] == nps(0.0)
        assert report["accounts"]["covered"] == 2

    async def test_duplicate_in_one_batch(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("A", "100000.00", EARLY))
        detractor = answer("r1", "A", 3)

        response = await api.post("/v1/responses", json={"responses": [detractor, detractor]})

        assert response.status_code == 200, response.text
        report = await coverage(api)
        assert report["responses"]["scored"] == 1


class TestUnmatched:
    async def test_unmatched_counts_for_respondents_only(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("A", "100.00", EARLY))
        await add_responses(api, answer("ra", "A", 9), answer("rg", "GHOST", 0))

        report = await coverage(api)

        assert report["responses"] == {"scored": 2, "unmatched": 1}
        assert report["accounts"] == {"total": 1, "covered": 1}
        assert report["total_revenue"] == "100.00"
        assert report["nps"]["respondent"] == nps(0.0)
        assert report["nps"]["account"] == nps(100.0)

    async def test_unmatched_without_account_id(self, api: httpx.AsyncClient) -> None:
        await add_responses(api, answer("r1", None, 9))

        report = await coverage(api)

        assert report["responses"] == {"scored": 1, "unmatched": 1}


class TestRevenueBase:
    async def test_zero_revenue_outside_base(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("A", "1000.00", EARLY), ("Z", "0", EARLY))
        await add_responses(api, answer("rz", "Z", 2))

        report = await coverage(api)

        assert report["accounts"] == {"total": 1, "covered": 0}
        assert report["total_revenue"] == "1000.00"
        assert bucket_accounts(report)["at_risk"] == 0
        assert report["responses"] == {"scored": 1, "unmatched": 0}
        assert report["nps"]["account"] is None
        assert report["nps"]["revenue_weighted"] is None

    async def test_churn_during_period(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("Y", "500.00", EARLY), ("Y", "0", "2026-03-01T00:00:00Z"))
        await add_responses(api, answer("ry", "Y", 9, "2026-02-01T12:00:00Z"))

        q1 = await coverage(api, period="2026-Q1")
        q4 = await coverage(api, period="2025-Q4")

        assert q1["accounts"]["total"] == 0
        assert q1["total_revenue"] == "0.00"
        assert q4["accounts"]["total"] == 1
        assert q4["total_revenue"] == "500.00"

    async def test_revenue_after_end_outside_base(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("A", "100.00", "2026-04-01T00:00:00Z"))
        await add_responses(api, answer("ra", "A", 9))

        report = await coverage(api)

        assert report["accounts"]["total"] == 0
        assert report["responses"] == {"scored": 1, "unmatched": 0}

    async def test_account_without_revenue_outside_base(self, api: httpx.AsyncClient) -> None:
        response = await api.put("/v1/accounts/A", json={"name": "No revenue yet"})
        assert response.status_code == 201, response.text
        await add_responses(api, answer("ra", "A", 9))

        report = await coverage(api)

        assert report["accounts"]["total"] == 0

    async def test_out_of_order_updates(self, api: httpx.AsyncClient) -> None:
        # The 2026-03-20 update arrives before the 2026-03-05 one.
        await add_revenue(
            api,
            ("A", "400000.00", "2025-11-01T00:00:00Z"),
            ("B", "100000.00", "2026-01-01T00:00:00Z"),
            ("A", "900000.00", "2026-03-20T00:00:00Z"),
            ("A", "600000.00", "2026-03-05T00:00:00Z"),
        )
        await add_responses(api, answer("ra", "A", 10, "2026-03-25T16:00:00Z"))

        quarter = await coverage(api, period="2026-Q1")
        to_march_10 = await coverage(api, **{"from": "2026-01-01", "to": "2026-03-10"})

        assert quarter["total_revenue"] == "1000000.00"
        assert quarter["buckets"]["safe"]["revenue"] == "900000.00"
        assert quarter["coverage"] == ratio(0.9)
        assert to_march_10["total_revenue"] == "700000.00"
        assert to_march_10["buckets"]["unaccounted"]["revenue"] == "700000.00"
        assert to_march_10["coverage"] == ratio(0.0)

    async def test_revenue_at_end_instant_excluded(self, api: httpx.AsyncClient) -> None:
        # In force at the period end means in force at the last instant before `end`.
        await add_revenue(
            api, ("A", "100.00", "2026-03-31T23:59:59Z"), ("A", "999.00", "2026-04-01T00:00:00Z")
        )

        report = await coverage(api)

        assert report["total_revenue"] == "100.00"


class TestPeriodEdges:
    async def test_utc_edges(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, *((account, "100000.00", EARLY) for account in "ABCD"))
        await add_responses(
            api,
            answer("ra", "A", 9, "2026-04-01T00:00:00Z"),
            answer("rb", "B", 3, "2026-03-31T23:59:59.999Z"),
            answer("rc", "C", 10, "2026-04-15T12:00:00Z"),
            answer("rd", "D", 8, "2026-01-01T00:00:00Z"),
        )

        q1 = await coverage(api, period="2026-Q1")
        q2 = await coverage(api, period="2026-Q2")

        assert bucket_accounts(q1) == {"at_risk": 1, "passive": 1, "safe": 0, "unaccounted": 2}
        assert bucket_accounts(q2) == {"at_risk": 0, "passive": 0, "safe": 2, "unaccounted": 2}

    # A: 2026-03-31T23:30-04:00 is Q1 in New York, Q2 in UTC and in Bangkok.
    # B: 2026-03-31T18:00Z is Q1 in UTC and New York, Q2 in Bangkok (01:00 on 1 April).
    # C: 2026-01-01T02:00Z is Q4 2025 in New York (21:00 on 31 December), Q1 elsewhere.
    @pytest.mark.parametrize(
        ("timezone", "period", "expected", "start", "end"),
        [
            (
                "UTC",
                "2026-Q1",
                {"at_risk": "200.00", "passive": "400.00", "safe": "0.00", "unaccounted": "100.00"},
                "2026-01-01T00:00:00+00:00",
                "2026-04-01T00:00:00+00:00",
            ),
            (
                "America/New_York",
                "2026-Q1",
                {"at_risk": "200.00", "passive": "0.00", "safe": "100.00", "unaccounted": "400.00"},
                "2026-01-01T00:00:00-05:00",
                "2026-04-01T00:00:00-04:00",
            ),
            (
                "Asia/Bangkok",
                "2026-Q1",
                {"at_risk": "0.00", "passive": "400.00", "safe": "0.00", "unaccounted": "300.00"},
                "2026-01-01T00:00:00+07:00",
                "2026-04-01T00:00:00+07:00",
            ),
            (
                "UTC",
                "2026-Q2",
                {"at_risk": "0.00", "passive": "0.00", "safe": "100.00", "unaccounted": "600.00"},
                "2026-04-01T00:00:00+00:00",
                "2026-07-01T00:00:00+00:00",
            ),
            (
                "America/New_York",
                "2026-Q2",
                {"at_risk": "0.00", "passive": "0.00", "safe": "0.00", "unaccounted": "700.00"},
                "2026-04-01T00:00:00-04:00",
                "2026-07-01T00:00:00-04:00",
            ),
            (
                "Asia/Bangkok",
                "2026-Q2",
                {"at_risk": "200.00", "passive": "0.00", "safe": "100.00", "unaccounted": "400.00"},
                "2026-04-01T00:00:00+07:00",
                "2026-07-01T00:00:00+07:00",
            ),
            (
                "America/New_York",
                "2025-Q4",
                {"at_risk": "0.00", "passive": "400.00", "safe": "0.00", "unaccounted": "300.00"},
                "2025-10-01T00:00:00-04:00",
                "2026-01-01T00:00:00-05:00",
            ),
        ],
    )
    async def test_tenant_timezone(
        self,
        api: httpx.AsyncClient,
        timezone: str,
        period: str,
        expected: dict[str, str],
        start: str,
        end: str,
    ) -> None:
        await set_tenant(api, timezone=timezone)
        await add_revenue(
            api, ("A", "100.00", EARLY), ("B", "200.00", EARLY), ("C", "400.00", EARLY)
        )
        await add_responses(
            api,
            answer("ra", "A", 9, "2026-03-31T23:30:00-04:00"),
            answer("rb", "B", 3, "2026-03-31T18:00:00Z"),
            answer("rc", "C", 7, "2026-01-01T02:00:00Z"),
        )

        report = await coverage(api, period=period)

        assert bucket_revenue(report) == expected
        assert report["period"]["timezone"] == timezone
        assert report["period"]["label"] == period
        assert datetime.fromisoformat(report["period"]["start"]) == datetime.fromisoformat(start)
        assert datetime.fromisoformat(report["period"]["end"]) == datetime.fromisoformat(end)

    @pytest.mark.parametrize(
        ("timezone", "total"),
        [("UTC", "100.00"), ("America/New_York", "250.00"), ("Asia/Bangkok", "100.00")],
    )
    async def test_revenue_end_in_timezone(
        self, api: httpx.AsyncClient, timezone: str, total: str
    ) -> None:
        # 2026-04-01T02:00Z is 22:00 on 31 March in New York, so it is in force at Q1's end there.
        await set_tenant(api, timezone=timezone)
        await add_revenue(api, ("A", "100.00", EARLY), ("B", "150.00", "2026-04-01T02:00:00Z"))

        report = await coverage(api, period="2026-Q1")

        assert report["total_revenue"] == total

    @pytest.mark.parametrize(
        ("period", "label_start", "label_end"),
        [
            ("2026-03", "2026-03-01T00:00:00-05:00", "2026-04-01T00:00:00-04:00"),
            ("2026", "2026-01-01T00:00:00-05:00", "2027-01-01T00:00:00-05:00"),
        ],
    )
    async def test_month_and_year(
        self, api: httpx.AsyncClient, period: str, label_start: str, label_end: str
    ) -> None:
        await set_tenant(api, timezone="America/New_York")
        await add_revenue(api, ("A", "100.00", EARLY))
        await add_responses(api, answer("ra", "A", 9, "2026-03-31T23:30:00-04:00"))

        report = await coverage(api, period=period)

        assert report["period"]["label"] == period
        assert datetime.fromisoformat(report["period"]["start"]) == datetime.fromisoformat(
            label_start
        )
        assert datetime.fromisoformat(report["period"]["end"]) == datetime.fromisoformat(label_end)
        assert report["buckets"]["safe"]["accounts"] == 1

    async def test_custom_range_with_offsets(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("A", "100.00", EARLY))
        await add_responses(api, answer("ra", "A", 9, "2026-02-10T12:00:00Z"))

        inside = await coverage(
            api, **{"from": "2026-02-10T12:00:00+00:00", "to": "2026-02-10T12:00:01+00:00"}
        )
        after = await coverage(
            api, **{"from": "2026-02-10T12:00:01+00:00", "to": "2026-02-11T00:00:00+00:00"}
        )

        assert inside["buckets"]["safe"]["accounts"] == 1
        assert after["buckets"]["safe"]["accounts"] == 0


class TestTotalsAndTarget:
    async def test_no_revenue_coverage_null(self, api: httpx.AsyncClient) -> None:
        await add_responses(api, answer("rg", "GHOST", 9))

        report = await coverage(api)

        assert report["total_revenue"] == "0.00"
        assert report["covered_revenue"] == "0.00"
        assert report["coverage"] is None
        assert report["accounts"] == {"total": 0, "covered": 0}
        assert report["nps"]["respondent"] == nps(100.0)

    async def test_empty_tenant(self, api: httpx.AsyncClient) -> None:
        report = await coverage(api)

        assert report["coverage"] is None
        assert report["nps"] == {
            "respondent": None,
            "account": None,
            "revenue_weighted": None,
            "null_reasons": {
                "respondent": "no_data",
                "account": "no_data",
                "revenue_weighted": "no_data",
            },
        }
        assert report["responses"] == {"scored": 0, "unmatched": 0}

    async def test_no_respondent_nps_null(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("A", "100.00", EARLY))
        await add_responses(api, answer("ra", "A", None))

        report = await coverage(api)

        assert report["coverage"] == ratio(0.0)
        assert report["nps"] == {
            "respondent": None,
            "account": None,
            "revenue_weighted": None,
            "null_reasons": {
                "respondent": "no_data",
                "account": "no_data",
                "revenue_weighted": "no_data",
            },
        }

    @pytest.mark.parametrize(
        ("target", "covered", "meets"),
        [
            (None, "800.00", True),
            (None, "799.99", False),
            (0.7, "750.00", True),
            (0.9, "850.00", False),
            (1, "1000.00", True),
        ],
    )
    async def test_meets_target(
        self, api: httpx.AsyncClient, target: float | None, covered: str, meets: bool
    ) -> None:
        if target is not None:
            await set_tenant(api, coverage_target=target)
        uncovered = str(Decimal("1000.00") - Decimal(covered))
        await add_revenue(api, ("A", covered, EARLY), ("B", uncovered, EARLY))
        await add_responses(api, answer("ra", "A", 9))

        report = await coverage(api)

        assert report["meets_target"] is meets
        assert report["target"] == (0.8 if target is None else target)


class TestRespondentNps:
    async def test_email_case_insensitive_latest(self, api: httpx.AsyncClient) -> None:
        # The respondents are dana (latest 10), bob (5), eve (8) and two without email (9 each).
        # 3 promoters and 1 detractor of 5 give 40. Case-sensitive emails would give 16.67,
        # and taking the two responses without email as one respondent would give 25.
        await add_revenue(api, ("A", "100.00", EARLY), ("B", "100.00", EARLY))
        await add_responses(
            api,
            answer("d2", "B", 10, "2026-03-01T12:00:00Z", email="dana@example.com"),
            answer("d1", "A", 3, "2026-02-01T12:00:00Z", email="Dana@Example.COM"),
            answer("d3", "A", None, "2026-03-20T12:00:00Z", email="DANA@example.com"),
            answer("b1", "A", 5, email="bob@example.com"),
            answer("e1", "B", 8, email="eve@example.com"),
            answer("n1", "A", 9, email=None),
            answer("n2", "B", 9, email=None),
        )

        report = await coverage(api)

        assert report["nps"]["respondent"] == nps(40.0)
        assert report["responses"]["scored"] == 6

    async def test_unmatched_respondents_count(self, api: httpx.AsyncClient) -> None:
        await add_responses(
            api,
            answer("g1", "GHOST", 10, email="x@example.com"),
            answer("g2", None, 2, email="y@example.com"),
            answer("g3", None, 7, email="z@example.com"),
        )

        report = await coverage(api)

        assert report["nps"]["respondent"] == nps(0.0)
        assert report["nps"]["account"] is None
