"""Exchange rates (PUT and GET /v1/fx-rates) and the conversion of revenue in every report."""

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, text

from tests.factories import post_responses
from tests.helpers import assert_problem

FX_URL = "/v1/fx-rates"
EARLY = "2025-12-01T00:00:00Z"
Q2_START = "2026-04-01T00:00:00Z"
Q1_END_MESSAGE = "no EUR rate in force at 2026-03-31T23:59:59Z; PUT /v1/fx-rates"


async def add_revenue(
    api: httpx.AsyncClient, external_id: str, amount: str, currency: str, effective_at: str = EARLY
) -> None:
    response = await api.put(
        f"/v1/accounts/{external_id}",
        json={
            "region": "north",
            "revenue": {"amount": amount, "currency": currency, "effective_at": effective_at},
        },
    )
    assert response.status_code in (200, 201), response.text


async def put_rates(api: httpx.AsyncClient, *rates: tuple[str, str, str]) -> dict[str, Any]:
    body = {
        "rates": [
            {"currency": currency, "rate": rate, "effective_at": effective_at}
            for currency, rate, effective_at in rates
        ]
    }
    response = await api.put(FX_URL, json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def report(api: httpx.AsyncClient, url: str, **params: str) -> dict[str, Any]:
    response = await api.get(url, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def load_mixed_book(api: httpx.AsyncClient) -> None:
    """Four accounts in four currencies: US safe, EU at risk, JP passive, GB unaccounted.

    EUR is worth 1.10 USD in Q1 and 1.20 from the first instant of Q2.
    """
    await add_revenue(api, "US", "1000.00", "USD")
    await add_revenue(api, "EU", "500.00", "EUR")
    await add_revenue(api, "JP", "100000", "JPY")
    await add_revenue(api, "GB", "0.05", "GBP")
    await put_rates(
        api,
        ("EUR", "1.10", EARLY),
        ("EUR", "1.20", Q2_START),
        ("JPY", "0.0067", EARLY),
        ("GBP", "0.1", EARLY),
    )
    await post_responses(
        api,
        {"response_id": "us", "account_external_id": "US", "score": 10},
        {"response_id": "eu", "account_external_id": "EU", "score": 3},
        {"response_id": "jp", "account_external_id": "JP", "score": 8},
    )


class TestConversion:
    async def test_mixed_book_converted_at_period_end(self, api: httpx.AsyncClient) -> None:
        await load_mixed_book(api)

        body = await report(api, "/v1/coverage", period="2026-Q1")

        assert body["currency"] == "USD"
        # 500 EUR x 1.10, 100000 JPY x 0.0067, and 0.05 GBP x 0.1 = 0.005 rounded up to 0.01.
        assert body["total_revenue"] == "2220.01"
        assert body["covered_revenue"] == "2220.00"
        assert body["buckets"]["safe"]["revenue"] == "1000.00"
        assert body["buckets"]["at_risk"]["revenue"] == "550.00"
        assert body["buckets"]["passive"]["revenue"] == "670.00"
        assert body["buckets"]["unaccounted"]["revenue"] == "0.01"
        assert body["accounts"] == {"total": 4, "covered": 3}

    async def test_buckets_add_up_to_total(self, api: httpx.AsyncClient) -> None:
        await load_mixed_book(api)
        await add_revenue(api, "EU-2", "333.33", "EUR")

        body = await report(api, "/v1/coverage", period="2026-Q1")

        # 333.33 x 1.10 = 366.663, rounded to 366.66 before any sum.
        buckets = sum(float(bucket["revenue"]) * 100 for bucket in body["buckets"].values())
        assert body["total_revenue"] == "2586.67"
        assert round(buckets) == 258667
        assert body["buckets"]["unaccounted"]["revenue"] == "366.67"

    async def test_rate_change_between_periods(self, api: httpx.AsyncClient) -> None:
        await load_mixed_book(api)

        first = await report(api, "/v1/coverage", period="2026-Q1")
        second = await report(api, "/v1/coverage", period="2026-Q2")

        assert first["total_revenue"] == "2220.01"
        assert second["total_revenue"] == "2270.01"
        assert second["buckets"]["unaccounted"]["revenue"] == "2270.01"

    async def test_trend_matches_coverage(self, api: httpx.AsyncClient) -> None:
        await load_mixed_book(api)

        trend = await report(api, "/v1/coverage/trend", **{"from": "2026-Q1", "to": "2026-Q2"})

        for found in trend["periods"]:
            label = found["period"]["label"]
            assert found == await report(api, "/v1/coverage", period=label), label

    async def test_lists_segments_flow_converted(self, api: httpx.AsyncClient) -> None:
        await load_mixed_book(api)

        at_risk = await report(api, "/v1/reports/at-risk", period="2026-Q1")
        survey_next = await report(api, "/v1/reports/survey-next", period="2026-Q1")
        segments = await report(api, "/v1/coverage/segments", period="2026-Q1", by="region")
        flow = await report(api, "/v1/reports/flow", **{"from": "2026-Q1", "to": "2026-Q2"})
        classification = await report(api, "/v1/accounts/EU/classification", period="2026-Q2")

        assert [(item["account_external_id"], item["revenue"]) for item in at_risk["items"]] == [
            ("EU", "550.00")
        ]
        assert [item["revenue"] for item in survey_next["items"]] == ["0.01"]
        assert segments["segments"][0]["total_revenue"] == "2220.01"
        revenue_to = sum(float(row["revenue_to"]) * 100 for row in flow["flows"])
        assert round(revenue_to) == 227001
        assert classification["revenue"] == "600.00"

    async def test_unfinished_period_uses_as_of(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, "EU", "100.00", "EUR")
        await put_rates(api, ("EUR", "1.10", EARLY), ("EUR", "1.30", "2026-02-15T00:00:00Z"))

        before = await report(api, "/v1/coverage", period="2026-Q1", as_of="2026-02-14T23:59:59Z")
        after = await report(api, "/v1/coverage", period="2026-Q1", as_of="2026-02-15T00:00:00Z")

        assert before["total_revenue"] == "110.00"
        assert after["total_revenue"] == "130.00"

    async def test_zero_revenue_needs_no_rate(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, "US", "1000.00", "USD")
        await add_revenue(api, "EU", "0", "EUR")

        body = await report(api, "/v1/coverage", period="2026-Q1")

        assert body["total_revenue"] == "1000.00"
        assert body["accounts"]["total"] == 1

    async def test_older_record_needs_no_rate(self, api: httpx.AsyncClient) -> None:
        # Only the record in force is converted, so an earlier EUR record needs no rate.
        await add_revenue(api, "EU", "100.00", "EUR", "2025-01-01T00:00:00Z")
        await add_revenue(api, "EU", "120.00", "USD", EARLY)

        body = await report(api, "/v1/coverage", period="2026-Q1")

        assert body["total_revenue"] == "120.00"


MISSING_RATE_REPORTS = [
    ("/v1/coverage", {"period": "2026-Q1"}),
    ("/v1/coverage/segments", {"period": "2026-Q1", "by": "region"}),
    ("/v1/coverage/segments", {"period": "2026-Q1", "by": "tier"}),
    ("/v1/coverage/trend", {"from": "2026-Q1", "to": "2026-Q2"}),
    ("/v1/reports/at-risk", {"period": "2026-Q1"}),
    ("/v1/reports/survey-next", {"period": "2026-Q1"}),
    ("/v1/reports/flow", {"from": "2026-Q1", "to": "2026-Q2"}),
    ("/v1/accounts/EU/classification", {"period": "2026-Q1"}),
]


# PostgreSQL 16 renamed the setting that runs every parallel-safe plan in a worker.
FORCE_PARALLEL = """
SELECT set_config(
    CASE WHEN current_setting('server_version_num')::int >= 160000
        THEN 'debug_parallel_query' ELSE 'force_parallel_mode' END,
    %s, false
)
"""

PARALLEL_MARKING = "SELECT proparallel::text FROM pg_proc WHERE proname = 'revcov_missing_fx_rate'"


@pytest.fixture
def in_parallel_workers(app: FastAPI) -> Iterator[None]:
    """Run each statement of the app that may run in a parallel worker in one."""

    def force(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(FORCE_PARALLEL.replace("%s", "'on'"))
        cursor.close()

    def reset(dbapi_connection: Any, record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(FORCE_PARALLEL.replace("%s", "'off'"))
        cursor.close()

    engine = app.state.engine.sync_engine
    event.listen(engine, "checkout", force)
    event.listen(engine, "checkin", reset)
    try:
        yield
    finally:
        event.remove(engine, "checkout", force)
        event.remove(engine, "checkin", reset)


class TestMissingRate:
    """A report fails when it reads the revenue of an account whose currency has no rate."""

    @pytest.mark.parametrize("in_workers", [False, True], ids=["leader", "parallel-worker"])
    @pytest.mark.parametrize(("url", "params"), MISSING_RATE_REPORTS)
    async def test_report_names_currency_and_date(
        self,
        request: pytest.FixtureRequest,
        app: FastAPI,
        api: httpx.AsyncClient,
        url: str,
        params: dict[str, str],
        in_workers: bool,
    ) -> None:
        if in_workers:
            # The function that raises the error is parallel safe, so the statement runs in
            # a worker, and the leader must still get the error's SQLSTATE, DETAIL and HINT.
            request.getfixturevalue("in_parallel_workers")
            async with app.state.engine.connect() as connection:
                marking = await connection.scalar(text(PARALLEL_MARKING))
            assert marking == "s"
        await add_revenue(api, "US", "1000.00", "USD")
        await add_revenue(api, "EU", "500.00", "EUR")
        # In force from Q2 on only, so Q1 still lacks a rate.
        await put_rates(api, ("EUR", "1.20", Q2_START))
        # At risk, so that the at-risk list needs EU's revenue too.
        await post_responses(api, {"response_id": "eu", "account_external_id": "EU", "score": 3})

        response = await api.get(url, params=params)

        problem = assert_problem(response, 422)
        assert problem["type"] == "urn:revcov:problem:missing-fx-rate"
        assert problem["detail"].startswith(Q1_END_MESSAGE)

    async def test_instant_within_a_second(self, api: httpx.AsyncClient) -> None:
        # The period ends at `as_of`, 0.3 s into a second, so a rate effective at the start
        # of that second is in force, and the message names that second.
        await add_revenue(api, "EU", "500.00", "EUR")
        params = {"period": "last-30d", "as_of": "2026-03-01T04:29:59.3Z"}

        response = await api.get("/v1/coverage", params=params)

        problem = assert_problem(response, 422)
        assert problem["detail"].startswith("no EUR rate in force at 2026-03-01T04:29:59Z;")
        await put_rates(api, ("EUR", "1.20", "2026-03-01T04:29:59Z"))
        body = await report(api, "/v1/coverage", **params)
        assert body["total_revenue"] == "600.00"

    async def test_trend_without_any_rate(self, api: httpx.AsyncClient) -> None:
        # With no rate into the reporting currency at all, the trend converts each record
        # once instead of at every period, and must fail all the same.
        await add_revenue(api, "US", "1000.00", "USD")
        await add_revenue(api, "EU", "500.00", "EUR")

        response = await api.get("/v1/coverage/trend", params={"from": "2026-Q1", "to": "2026-Q2"})

        problem = assert_problem(response, 422)
        assert problem["type"] == "urn:revcov:problem:missing-fx-rate"
        assert problem["detail"].startswith(Q1_END_MESSAGE)

    async def test_csv_list_names_currency(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, "EU", "500.00", "EUR")
        await post_responses(api, {"response_id": "eu", "account_external_id": "EU", "score": 3})

        response = await api.get(
            "/v1/reports/at-risk", params={"period": "2026-Q1"}, headers={"Accept": "text/csv"}
        )

        problem = assert_problem(response, 422)
        assert problem["detail"].startswith(Q1_END_MESSAGE)

    async def test_unfinished_period_names_as_of(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, "EU", "500.00", "EUR")

        response = await api.get(
            "/v1/coverage", params={"period": "2026-Q1", "as_of": "2026-02-10T08:30:00Z"}
        )

        problem = assert_problem(response, 422)
        assert "no EUR rate in force at 2026-02-10T08:30:00Z" in problem["detail"]

    async def test_list_fails_for_unlisted_account(self, api: httpx.AsyncClient) -> None:
        # EU is not at risk, but the list converts every base account's revenue.
        await add_revenue(api, "US", "1000.00", "USD")
        await add_revenue(api, "EU", "500.00", "EUR")
        await post_responses(api, {"response_id": "us", "account_external_id": "US", "score": 2})

        for _ in range(3):
            response = await api.get("/v1/reports/at-risk", params={"period": "2026-Q1"})

            problem = assert_problem(response, 422)
            assert problem["detail"].startswith(Q1_END_MESSAGE)

    async def test_later_period_with_rate_succeeds(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, "EU", "500.00", "EUR")
        await put_rates(api, ("EUR", "1.20", Q2_START))

        body = await report(api, "/v1/coverage", period="2026-Q2")

        assert body["total_revenue"] == "600.00"

    async def test_other_tenant_rates_invisible(
        self, api: httpx.AsyncClient, other_api: httpx.AsyncClient
    ) -> None:
        await add_revenue(api, "EU", "500.00", "EUR")
        await put_rates(other_api, ("EUR", "1.10", EARLY))

        response = await api.get("/v1/coverage", params={"period": "2026-Q1"})
        listed = await report(api, FX_URL)

        assert_problem(response, 422)
        assert listed == {"items": [], "next_cursor": None}
        assert len((await report(other_api, FX_URL))["items"]) == 1


class TestPutRates:
    async def test_counts_created_updated_unchanged(self, api: httpx.AsyncClient) -> None:
        first = await put_rates(api, ("EUR", "1.10", EARLY), ("JPY", "0.0067", EARLY))
        second = await put_rates(api, ("EUR", "1.10", EARLY), ("JPY", "0.0068", EARLY))

        assert first == {"created": 2, "updated": 0, "unchanged": 0}
        assert second == {"created": 0, "updated": 1, "unchanged": 1}

    async def test_last_duplicate_wins(self, api: httpx.AsyncClient) -> None:
        result = await put_rates(api, ("EUR", "1.10", EARLY), ("EUR", "1.15", EARLY))

        listed = await report(api, FX_URL)

        assert result == {"created": 1, "updated": 0, "unchanged": 0}
        assert [item["rate"] for item in listed["items"]] == ["1.15"]

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("rate", "0"),
            ("rate", "-1.1"),
            ("rate", "NaN"),
            ("rate", "Infinity"),
            ("rate", "1000000000"),
            ("rate", "1.1234567890123"),
            ("rate", "abc"),
            ("currency", "ZZZ"),
            ("currency", "eur"),
            ("currency", "XAU"),
            ("effective_at", "2026-01-01T00:00:00"),
        ],
    )
    async def test_invalid_rate_rejected(
        self, api: httpx.AsyncClient, field: str, value: str
    ) -> None:
        valid = {"currency": "JPY", "rate": "0.0067", "effective_at": EARLY}
        invalid = {"currency": "EUR", "rate": "1.10", "effective_at": EARLY, field: value}

        response = await api.put(FX_URL, json={"rates": [valid, invalid]})

        problem = assert_problem(response, 422)
        locations = [error["location"] for error in problem["errors"]]
        assert all(location.startswith("body.rates[1]") for location in locations), locations
        assert (await report(api, FX_URL))["items"] == []

    async def test_json_number_nan_rejected(self, api: httpx.AsyncClient) -> None:
        response = await api.put(
            FX_URL,
            content='{"rates": [{"currency": "EUR", "rate": NaN, "effective_at": "'
            + EARLY
            + '"}]}',
            headers={"Content-Type": "application/json"},
        )

        assert_problem(response, 422)

    async def test_reporting_currency_rejected(self, api: httpx.AsyncClient) -> None:
        response = await api.put(
            FX_URL,
            json={
                "rates": [
                    {"currency": "EUR", "rate": "1.10", "effective_at": EARLY},
                    {"currency": "USD", "rate": "1", "effective_at": EARLY},
                ]
            },
        )

        problem = assert_problem(response, 422)
        [error] = problem["errors"]
        assert error["location"] == "body.rates[1].currency"
        assert "USD is the reporting currency" in error["message"]
        assert (await report(api, FX_URL))["items"] == []

    async def test_empty_batch_rejected(self, api: httpx.AsyncClient) -> None:
        response = await api.put(FX_URL, json={"rates": []})

        assert_problem(response, 422)


class TestListRates:
    async def test_pages_in_key_order(self, api: httpx.AsyncClient) -> None:
        await put_rates(
            api,
            ("JPY", "0.0067", EARLY),
            ("EUR", "1.20", Q2_START),
            ("EUR", "1.10", EARLY),
        )

        first = await report(api, FX_URL, limit="2")
        second = await report(api, FX_URL, limit="2", cursor=first["next_cursor"])

        assert first["items"] == [
            {
                "currency": "EUR",
                "reporting_currency": "USD",
                "rate": "1.1",
                "effective_at": "2025-12-01T00:00:00Z",
            },
            {
                "currency": "EUR",
                "reporting_currency": "USD",
                "rate": "1.2",
                "effective_at": "2026-04-01T00:00:00Z",
            },
        ]
        assert [item["currency"] for item in second["items"]] == ["JPY"]
        assert second["next_cursor"] is None

    async def test_invalid_cursor_rejected(self, api: httpx.AsyncClient) -> None:
        response = await api.get(FX_URL, params={"cursor": "bm90LWEtY3Vyc29y"})

        assert_problem(response, 422)


class TestReportingCurrencyChange:
    async def test_old_rates_stop_applying(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, "US", "1000.00", "USD")
        await add_revenue(api, "EU", "500.00", "EUR")
        await put_rates(api, ("EUR", "1.10", EARLY))

        changed = await api.patch("/v1/tenant", json={"reporting_currency": "EUR"})
        missing = await api.get("/v1/coverage", params={"period": "2026-Q1"})
        await put_rates(api, ("USD", "0.90", EARLY))
        converted = await report(api, "/v1/coverage", period="2026-Q1")
        listed = await report(api, FX_URL)

        assert changed.status_code == 200, changed.text
        problem = assert_problem(missing, 422)
        assert problem["detail"].startswith("no USD rate in force at 2026-03-31T23:59:59Z")
        assert converted["currency"] == "EUR"
        assert converted["total_revenue"] == "1400.00"
        assert [(item["currency"], item["reporting_currency"]) for item in listed["items"]] == [
            ("USD", "EUR"),
            ("EUR", "USD"),
        ]


async def test_parallel_uploads_in_any_order(api: httpx.AsyncClient) -> None:
    # The same rates, listed forwards by half of the requests and backwards by the others.
    rates = [
        {"currency": currency, "rate": "1.1", "effective_at": "2024-01-01T00:00:00Z"}
        for currency in ("EUR", "GBP", "CHF", "JPY", "CAD", "AUD")
    ]
    bodies = [{"rates": rates if number % 2 else rates[::-1]} for number in range(12)]

    responses = await asyncio.gather(*(api.put(FX_URL, json=body) for body in bodies))

    assert [response.status_code for response in responses] == [200] * len(bodies)
