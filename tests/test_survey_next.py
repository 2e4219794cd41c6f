"""The survey-next plan: unaccounted base accounts with the coverage each one adds."""

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.demo import generate_book, load_demo
from tests.conftest import make_tenant
from tests.test_coverage import EARLY, add_responses, add_revenue, answer, coverage, set_tenant
from tests.test_rollup import link_contact

AS_OF = "2026-03-31T00:00:00Z"


async def survey_next(api: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    query = {"period": "2026-Q1", "as_of": AS_OF, **params}
    response = await api.get(
        "/v1/reports/survey-next",
        params={name: value for name, value in query.items() if value is not None},
    )
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def all_items(api: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    """Walk every page of the plan and return the items in order."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        extra: dict[str, str] = {} if cursor is None else {"cursor": cursor}
        page = await survey_next(api, **params, **extra)
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def load_book(api: httpx.AsyncClient) -> None:
    """Total $10,000: C1 ($2,000) covered; U1-U5 unaccounted, U2 and U3 tied at $1,500."""
    await add_revenue(
        api,
        ("C1", "2000.00", EARLY),
        ("U1", "3000.00", EARLY),
        ("U2", "1500.00", EARLY),
        ("U3", "1500.00", EARLY),
        ("U4", "1000.00", EARLY),
        ("U5", "1000.00", EARLY),
        ("GONE", "5000.00", EARLY),
        ("GONE", "0.00", "2026-01-10T00:00:00Z"),
    )
    await add_responses(api, answer("c1", "C1", 9))


class TestSurveyNextItems:
    async def test_cumulative_coverage_and_target(self, api: httpx.AsyncClient) -> None:
        await load_book(api)

        items = await all_items(api)

        assert [item["account_external_id"] for item in items] == ["U1", "U2", "U3", "U4", "U5"]
        assert [item["revenue"] for item in items] == [
            "3000.00",
            "1500.00",
            "1500.00",
            "1000.00",
            "1000.00",
        ]
        assert [item["cumulative_coverage"] for item in items] == [0.5, 0.65, 0.8, 0.9, 1.0]
        assert [item["reaches_target"] for item in items] == [False, False, True, True, True]

    async def test_target_from_tenant(self, api: httpx.AsyncClient) -> None:
        await load_book(api)
        await set_tenant(api, coverage_target=0.5)

        items = await all_items(api)

        assert [item["reaches_target"] for item in items] == [True, True, True, True, True]

    async def test_skipped_or_earlier_score_listed(self, api: httpx.AsyncClient) -> None:
        await load_book(api)
        await add_responses(
            api, answer("u1-skip", "U1", None), answer("u4", "U4", 9, "2025-12-31T23:59:59Z")
        )

        items = await all_items(api)

        # A skipped score and a response before the period leave an account unaccounted.
        assert [item["account_external_id"] for item in items] == ["U1", "U2", "U3", "U4", "U5"]

    async def test_days_since_last_response(self, api: httpx.AsyncClient) -> None:
        await load_book(api)
        await add_responses(
            api,
            answer("u1-old", "U1", 3, "2025-06-30T12:00:00Z"),
            answer("u1-older", "U1", 9, "2025-01-01T00:00:00Z"),
            answer("u2-skip", "U2", None, "2025-12-01T00:00:00Z"),
            answer("u3-late", "U3", 8, "2026-03-30T00:00:01Z"),
            answer("u4-after", "U4", 8, "2026-03-31T00:00:01Z"),
        )

        by_account = {
            item["account_external_id"]: item["days_since_last_response"]
            for item in await all_items(api, to="2026-03-15", **{"from": "2026-01-01"}, period=None)
        }

        # 2025-06-30T12:00 to 2026-03-31T00:00 is 273.5 days; U3's answer came after the
        # period, 23:59:59 before as_of; U4's came after as_of and U2's has no score.
        assert by_account == {"U1": 273, "U2": None, "U3": 0, "U4": None, "U5": None}

    async def test_contacts_most_senior_first(self, api: httpx.AsyncClient) -> None:
        await load_book(api)
        await link_contact(api, "zed@u1.example", "U1", "user")
        await link_contact(api, "amy@u1.example", "U1", "user")
        await link_contact(api, "boss@u1.example", "U1", "decision_maker")
        await link_contact(api, "inf@u1.example", "U1", "influencer")
        response = await api.put("/v1/contacts/anon@u1.example", json={"account_external_id": "U1"})
        assert response.status_code in (200, 201), response.text

        items = await all_items(api)

        assert items[0]["contacts"] == [
            {"email": "boss@u1.example", "role": "decision_maker"},
            {"email": "inf@u1.example", "role": "influencer"},
            {"email": "amy@u1.example", "role": "user"},
            {"email": "zed@u1.example", "role": "user"},
            {"email": "anon@u1.example", "role": None},
        ]
        assert items[1]["contacts"] == []

    async def test_empty_without_base(self, api: httpx.AsyncClient) -> None:
        page = await survey_next(api)

        assert page == {"items": [], "next_cursor": None}


class TestSurveyNextOrder:
    @pytest.mark.parametrize("limit", [1, 2, 3, 100])
    async def test_pages_keep_plan_figures(self, api: httpx.AsyncClient, limit: int) -> None:
        await load_book(api)

        items = await all_items(api, limit=limit)

        assert [item["account_external_id"] for item in items] == ["U1", "U2", "U3", "U4", "U5"]
        assert [item["cumulative_coverage"] for item in items] == [0.5, 0.65, 0.8, 0.9, 1.0]

    async def test_ascending_keeps_plan_figures(self, api: httpx.AsyncClient) -> None:
        await load_book(api)

        items = await all_items(api, sort="revenue", limit=2)

        assert [item["account_external_id"] for item in items] == ["U4", "U5", "U2", "U3", "U1"]
        assert [item["cumulative_coverage"] for item in items] == [0.9, 1.0, 0.65, 0.8, 0.5]

    async def test_cursor_of_other_sort_rejected(self, api: httpx.AsyncClient) -> None:
        await load_book(api)
        first = await survey_next(api, limit=1)

        response = await api.get(
            "/v1/reports/survey-next",
            params={"period": "2026-Q1", "sort": "revenue", "cursor": first["next_cursor"]},
        )

        assert response.status_code == 422


class TestSurveyNextCsv:
    async def test_whole_list_as_csv(self, api: httpx.AsyncClient) -> None:
        await load_book(api)
        await link_contact(api, "boss@u1.example", "U1", "decision_maker")
        await link_contact(api, "amy@u1.example", "U1", "user")

        response = await api.get(
            "/v1/reports/survey-next",
            params={"period": "2026-Q1", "as_of": AS_OF, "limit": 1},
            headers={"Accept": "text/csv"},
        )

        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(response.text)))
        assert rows[0] == [
            "account_external_id",
            "name",
            "revenue",
            "cumulative_coverage",
            "reaches_target",
            "days_since_last_response",
            "contacts",
        ]
        assert rows[1] == [
            "U1",
            "",
            "3000.00",
            "0.5000",
            "false",
            "",
            "boss@u1.example (decision_maker); amy@u1.example (user)",
        ]
        assert [row[0] for row in rows[1:]] == ["U1", "U2", "U3", "U4", "U5"]
        assert [row[4] for row in rows[1:]] == ["false", "false", "true", "true", "true"]


class TestSurveyNextTenants:
    async def test_other_tenant_never_listed(
        self, api: httpx.AsyncClient, other_api: httpx.AsyncClient
    ) -> None:
        await load_book(api)
        await add_revenue(other_api, ("U1", "7.00", EARLY), ("X", "3.00", EARLY))
        await link_contact(other_api, "spy@u1.example", "U1", "decision_maker")

        mine = await all_items(api)
        theirs = await all_items(other_api)

        assert [item["account_external_id"] for item in theirs] == ["U1", "X"]
        assert [item["revenue"] for item in theirs] == ["7.00", "3.00"]
        assert [item["cumulative_coverage"] for item in theirs] == [0.7, 1.0]
        assert mine[0]["contacts"] == []
        assert len(mine) == 5


class TestSurveyNextDemo:
    async def test_plan_matches_coverage_after_answers(self, app: FastAPI) -> None:
        as_of = datetime.now(UTC).replace(microsecond=0)
        book = generate_book(60, seed=7, now=as_of)
        _, key = await make_tenant(app, "demo")
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=headers
        ) as api:
            await load_demo(api, key, book)
            params = {"period": book.current_quarter, "as_of": as_of.isoformat()}
            before = await coverage(api, **params)
            plan = (await api.get("/v1/reports/survey-next", params=params)).json()["items"]
            first_reaching = next(i for i, item in enumerate(plan) if item["reaches_target"])
            chosen = plan[: first_reaching + 1]

            assert not before["meets_target"]
            assert all(not item["reaches_target"] for item in plan[:first_reaching])
            assert all(item["reaches_target"] for item in plan[first_reaching:])
            assert Decimal(before["total_revenue"]) * Decimal(str(before["target"])) <= (
                Decimal(before["covered_revenue"])
                + sum(Decimal(item["revenue"]) for item in chosen)
            )

            answered = as_of - timedelta(seconds=1)
            for index, item in enumerate(chosen):
                await add_responses(
                    api,
                    answer(
                        f"plan-{index}",
                        item["account_external_id"],
                        8,
                        answered.isoformat(),
                    ),
                )
                after = await coverage(api, **params)
                assert after["coverage"] == item["cumulative_coverage"]
                assert after["meets_target"] == item["reaches_target"]
            remaining = (await api.get("/v1/reports/survey-next", params=params)).json()

        assert after["meets_target"] is True
        assert after["total_revenue"] == before["total_revenue"]
        assert [item["account_external_id"] for item in remaining["items"]] == [
            item["account_external_id"] for item in plan[first_reaching + 1 :]
        ]
