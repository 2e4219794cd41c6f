"""Account hierarchy: parents on PUT, cycles rejected, and `level=parent` on every report.

The worked example split into a family: parent A ($500k) has the decision maker scoring 4,
child A-EU ($300k) a user scoring 9 and child A-US ($200k) a user scoring 10. At
`level=parent` the family is one $1,000k account with all three responses, so each rule
gives the figures of the worked example: +92 under `latest`, +12 under `average`, -68
under `lowest` and `decision_maker`, with coverage 62.5% and $750k unaccounted.
"""

import asyncio
import csv
import io
from decimal import Decimal
from typing import Any

import httpx
import pytest

from app.accounts.repository import MAX_HIERARCHY_DEPTH
from tests.helpers import assert_problem
from tests.test_coverage import (
    EARLY,
    add_responses,
    add_revenue,
    answer,
    bucket_revenue,
    coverage,
    nps,
    ratio,
)
from tests.test_rollup import WORKED_EXAMPLE, link_contact

CYCLE_PROBLEM = "urn:revcov:problem:account-hierarchy-cycle"


async def put_account(api: httpx.AsyncClient, external_id: str, **body: Any) -> httpx.Response:
    return await api.put(f"/v1/accounts/{external_id}", json=body)


async def get_account(api: httpx.AsyncClient, external_id: str) -> dict[str, Any]:
    response = await api.get(f"/v1/accounts/{external_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def set_parent(api: httpx.AsyncClient, external_id: str, parent: str) -> None:
    response = await put_account(api, external_id, parent_external_id=parent)
    assert response.status_code in (200, 201), response.text


async def load_family_example(api: httpx.AsyncClient) -> None:
    """Load the worked example with A's revenue and respondents split over a family."""
    await add_revenue(
        api,
        ("A", "500000.00", EARLY),
        ("A-EU", "300000.00", EARLY),
        ("A-US", "200000.00", EARLY),
        ("B", "200000.00", EARLY),
        ("C", "50000.00", EARLY),
        ("D", "750000.00", EARLY),
    )
    for account, region in (("A", "EMEA"), ("B", "AMER"), ("C", "AMER"), ("D", "APAC")):
        response = await put_account(api, account, region=region)
        assert response.status_code == 200, response.text
    await set_parent(api, "A-EU", "A")
    await set_parent(api, "A-US", "A")
    await link_contact(api, "cfo@a.example", "A", "decision_maker")
    await link_contact(api, "user1@a.example", "A-EU", "user")
    await link_contact(api, "user2@a.example", "A-US", "user")
    await add_responses(
        api,
        answer("a-cfo", "A", 4, "2026-02-01T12:00:00Z", email="cfo@a.example"),
        answer("a-user1", "A-EU", 9, "2026-02-02T12:00:00Z", email="user1@a.example"),
        answer("a-user2", "A-US", 10, "2026-02-03T12:00:00Z", email="user2@a.example"),
        answer("b", "B", 9),
        answer("c", "C", 6),
    )


class TestParentOnPut:
    async def test_parent_is_stored(self, api: httpx.AsyncClient) -> None:
        await put_account(api, "GROUP", name="Group")

        response = await put_account(api, "CHILD", name="Child", parent_external_id="GROUP")

        assert response.status_code == 201, response.text
        assert response.json()["parent_external_id"] == "GROUP"
        assert (await get_account(api, "GROUP"))["parent_external_id"] is None

    async def test_unknown_parent_created_empty(self, api: httpx.AsyncClient) -> None:
        response = await put_account(api, "CHILD", parent_external_id="LATER")

        assert response.status_code == 201, response.text
        parent = await get_account(api, "LATER")
        assert parent["name"] is None
        assert parent["revenue"] is None
        assert parent["parent_external_id"] is None

    async def test_put_without_parent_removes_it(self, api: httpx.AsyncClient) -> None:
        await set_parent(api, "CHILD", "GROUP")

        response = await put_account(api, "CHILD", name="Child")

        assert response.status_code == 200, response.text
        assert response.json()["parent_external_id"] is None

    async def test_merged_parent_means_survivor(self, api: httpx.AsyncClient) -> None:
        await put_account(api, "OLD")
        await put_account(api, "NEW")
        merge = await api.post("/v1/accounts/OLD/merge", json={"into": "NEW"})
        assert merge.status_code == 200, merge.text

        await set_parent(api, "CHILD", "OLD")

        assert (await get_account(api, "CHILD"))["parent_external_id"] == "NEW"


class TestCycles:
    async def test_self_parent_rejected(self, api: httpx.AsyncClient) -> None:
        response = await put_account(api, "SELF", name="Self", parent_external_id="SELF")

        problem = assert_problem(response, 422)
        assert problem["type"] == CYCLE_PROBLEM
        assert "'SELF' -> 'SELF'" in problem["detail"]
        assert problem["errors"][0]["location"] == "body.parent_external_id"
        assert_problem(await api.get("/v1/accounts/SELF"), 404)

    async def test_long_loop_rejected_writes_nothing(self, api: httpx.AsyncClient) -> None:
        await set_parent(api, "A", "B")
        await set_parent(api, "B", "C")
        await put_account(api, "C", name="C before")

        response = await put_account(
            api,
            "C",
            name="C after",
            parent_external_id="A",
            domains=["c.example"],
            revenue={"amount": "10.00", "currency": "USD", "effective_at": EARLY},
        )

        problem = assert_problem(response, 422)
        assert problem["type"] == CYCLE_PROBLEM
        assert "'C' -> 'A' -> 'B' -> 'C'" in problem["detail"]
        account = await get_account(api, "C")
        assert account["name"] == "C before"
        assert account["parent_external_id"] is None
        assert account["domains"] == []
        assert account["revenue_history"] == []

    async def test_concurrent_writers_cannot_both_close(self, api: httpx.AsyncClient) -> None:
        await put_account(api, "X")
        await put_account(api, "Y")

        first, second = await asyncio.gather(
            put_account(api, "X", parent_external_id="Y"),
            put_account(api, "Y", parent_external_id="X"),
        )

        statuses = sorted([first.status_code, second.status_code])
        assert statuses == [200, 422]
        parents = {
            name: (await get_account(api, name))["parent_external_id"] for name in ("X", "Y")
        }
        assert list(parents.values()).count(None) == 1

    async def test_concurrent_new_accounts_cannot_close(self, api: httpx.AsyncClient) -> None:
        # Neither account exists, so each request creates its own account and the other's
        # parent. The hierarchy lock makes the second request read the first one's accounts.
        for pair in range(5):
            first, second = await asyncio.gather(
                put_account(api, f"NEW-X{pair}", parent_external_id=f"NEW-Y{pair}"),
                put_account(api, f"NEW-Y{pair}", parent_external_id=f"NEW-X{pair}"),
            )

            statuses = sorted([first.status_code, second.status_code])
            assert statuses == [201, 422], pair
            parents = [
                (await get_account(api, name))["parent_external_id"]
                for name in (f"NEW-X{pair}", f"NEW-Y{pair}")
            ]
            assert parents.count(None) == 1, pair


class TestDepthLimit:
    async def test_parent_at_limit_rejected(self, api: httpx.AsyncClient) -> None:
        for level in range(1, MAX_HIERARCHY_DEPTH + 1):
            response = await put_account(api, f"L{level}", parent_external_id=f"L{level - 1}")
            assert response.status_code == 201, response.text

        deepest = await put_account(api, "TOO-DEEP", parent_external_id=f"L{MAX_HIERARCHY_DEPTH}")
        allowed = await put_account(
            api, "DEEP-ENOUGH", parent_external_id=f"L{MAX_HIERARCHY_DEPTH - 1}"
        )

        problem = assert_problem(deepest, 422)
        assert problem["type"] == "urn:revcov:problem:account-hierarchy-too-deep"
        assert problem["errors"][0]["location"] == "body.parent_external_id"
        assert_problem(await api.get("/v1/accounts/TOO-DEEP"), 404)
        assert allowed.status_code == 201, allowed.text

    async def test_loop_beyond_limit_rejected(self, api: httpx.AsyncClient) -> None:
        for level in range(1, MAX_HIERARCHY_DEPTH + 1):
            await put_account(api, f"L{level}", parent_external_id=f"L{level - 1}")

        response = await put_account(api, "L0", parent_external_id=f"L{MAX_HIERARCHY_DEPTH}")

        assert_problem(response, 422)
        assert (await get_account(api, "L0"))["parent_external_id"] is None


REPORT_URLS = [
    ("/v1/coverage", {"period": "2026-Q1"}),
    ("/v1/coverage/segments", {"period": "2026-Q1", "by": "region"}),
    ("/v1/coverage/trend", {"from": "2026-Q1", "to": "2026-Q2"}),
    ("/v1/accounts/A/classification", {"period": "2026-Q1"}),
    ("/v1/reports/at-risk", {"period": "2026-Q1"}),
    ("/v1/reports/survey-next", {"period": "2026-Q1"}),
    ("/v1/reports/flow", {"from": "2026-Q1", "to": "2026-Q2"}),
]


class TestLevelParameter:
    @pytest.mark.parametrize(("url", "params"), REPORT_URLS)
    async def test_unknown_level_rejected(
        self, api: httpx.AsyncClient, url: str, params: dict[str, str]
    ) -> None:
        await put_account(api, "A")

        response = await api.get(url, params={**params, "level": "family"})

        problem = assert_problem(response, 422)
        assert problem["errors"][0]["location"] == "query.level"
        assert "'family'" in problem["errors"][0]["message"]

    @pytest.mark.parametrize(("url", "params"), REPORT_URLS)
    async def test_parent_level_accepted(
        self, api: httpx.AsyncClient, url: str, params: dict[str, str]
    ) -> None:
        await put_account(api, "A")

        response = await api.get(url, params={**params, "level": "parent"})

        assert response.status_code == 200, response.text


class TestParentLevelWorkedExample:
    @pytest.mark.parametrize(("rollup", "revenue_weighted", "buckets"), WORKED_EXAMPLE)
    async def test_rule_figures(
        self,
        api: httpx.AsyncClient,
        rollup: str,
        revenue_weighted: float,
        buckets: dict[str, str],
    ) -> None:
        await load_family_example(api)

        report = await coverage(api, period="2026-Q1", rollup=rollup, level="parent")

        assert report["level"] == "parent"
        assert report["nps"]["revenue_weighted"] == nps(revenue_weighted)
        assert bucket_revenue(report) == {**buckets, "unaccounted": "750000.00"}
        assert report["coverage"] == ratio(0.625)
        assert report["total_revenue"] == "2000000.00"
        assert report["accounts"] == {"total": 4, "covered": 3}

    async def test_account_level_keeps_children_apart(self, api: httpx.AsyncClient) -> None:
        await load_family_example(api)

        report = await coverage(api, period="2026-Q1", rollup="lowest")

        assert report["level"] == "account"
        assert report["accounts"] == {"total": 6, "covered": 5}
        assert bucket_revenue(report) == {
            "at_risk": "550000.00",
            "passive": "0.00",
            "safe": "700000.00",
            "unaccounted": "750000.00",
        }

    async def test_respondent_nps_same_at_both_levels(self, api: httpx.AsyncClient) -> None:
        await load_family_example(api)

        by_account = await coverage(api, period="2026-Q1")
        by_parent = await coverage(api, period="2026-Q1", level="parent")

        assert by_parent["nps"]["respondent"] == by_account["nps"]["respondent"]
        assert by_parent["responses"] == by_account["responses"]

    async def test_grandchildren_roll_into_top(self, api: httpx.AsyncClient) -> None:
        await load_family_example(api)
        await add_revenue(api, ("A-EU-DE", "250000.00", EARLY))
        await set_parent(api, "A-EU-DE", "A-EU")

        report = await coverage(api, period="2026-Q1", rollup="lowest", level="parent")

        assert report["accounts"] == {"total": 4, "covered": 3}
        assert report["buckets"]["at_risk"]["revenue"] == "1300000.00"

    async def test_classification_explains_family(self, api: httpx.AsyncClient) -> None:
        await load_family_example(api)

        response = await api.get(
            "/v1/accounts/A-EU/classification",
            params={"period": "2026-Q1", "rollup": "average", "level": "parent"},
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["account_external_id"] == "A-EU"
        assert body["reported_as"] == "A"
        assert body["level"] == "parent"
        assert body["revenue"] == "1000000.00"
        assert body["bucket"] == "passive"
        assert body["value"] == pytest.approx(7.67)
        assert [item["response_id"] for item in body["responses"]] == [
            "a-cfo",
            "a-user1",
            "a-user2",
        ]

    async def test_at_risk_lists_family(self, api: httpx.AsyncClient) -> None:
        await load_family_example(api)

        response = await api.get(
            "/v1/reports/at-risk",
            params={"period": "2026-Q1", "rollup": "decision_maker", "level": "parent"},
        )

        assert response.status_code == 200, response.text
        items = response.json()["items"]
        assert [(item["account_external_id"], item["revenue"]) for item in items] == [
            ("A", "1000000.00"),
            ("C", "50000.00"),
        ]
        assert items[0]["score"] == 4

    async def test_at_risk_csv_lists_family(self, api: httpx.AsyncClient) -> None:
        await load_family_example(api)

        response = await api.get(
            "/v1/reports/at-risk",
            params={"period": "2026-Q1", "rollup": "lowest", "level": "parent"},
            headers={"Accept": "text/csv"},
        )

        assert response.status_code == 200, response.text
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert [(row["account_external_id"], row["revenue"]) for row in rows] == [
            ("A", "1000000.00"),
            ("C", "50000.00"),
        ]

    async def test_survey_next_skips_children(self, api: httpx.AsyncClient) -> None:
        await load_family_example(api)
        await add_revenue(api, ("E", "100000.00", EARLY), ("E-1", "100000.00", EARLY))
        await set_parent(api, "E-1", "E")
        await link_contact(api, "ceo@e.example", "E", "decision_maker")
        await link_contact(api, "ops@e1.example", "E-1", "user")

        response = await api.get(
            "/v1/reports/survey-next", params={"period": "2026-Q1", "level": "parent"}
        )

        assert response.status_code == 200, response.text
        items = response.json()["items"]
        assert [(item["account_external_id"], item["revenue"]) for item in items] == [
            ("D", "750000.00"),
            ("E", "200000.00"),
        ]
        assert items[0]["contacts"] == []
        assert items[1]["contacts"] == [
            {"email": "ceo@e.example", "role": "decision_maker"},
            {"email": "ops@e1.example", "role": "user"},
        ]
        assert items[1]["cumulative_coverage"] == ratio(1.0)

    async def test_segments_use_parent_values(self, api: httpx.AsyncClient) -> None:
        await load_family_example(api)
        response = await put_account(api, "A-US", region="LATAM", parent_external_id="A")
        assert response.status_code == 200, response.text

        segments = await api.get(
            "/v1/coverage/segments",
            params={"period": "2026-Q1", "by": "region", "level": "parent"},
        )

        assert segments.status_code == 200, segments.text
        by_value = {item["segment"]: item for item in segments.json()["segments"]}
        assert set(by_value) == {"EMEA", "AMER", "APAC", "unassigned"}
        assert by_value["EMEA"]["total_revenue"] == "1000000.00"
        assert by_value["EMEA"]["responses"]["scored"] == 3

    async def test_trend_matches_coverage(self, api: httpx.AsyncClient) -> None:
        await load_family_example(api)

        response = await api.get(
            "/v1/coverage/trend",
            params={"from": "2026-Q1", "to": "2026-Q2", "level": "parent", "as_of": "2026-12-01"},
        )

        assert response.status_code == 200, response.text
        periods = response.json()["periods"]
        for label, report in zip(("2026-Q1", "2026-Q2"), periods, strict=True):
            alone = await coverage(api, period=label, level="parent", as_of="2026-12-01")
            assert report == alone

    async def test_flow_matches_coverage(self, api: httpx.AsyncClient) -> None:
        await load_family_example(api)

        response = await api.get(
            "/v1/reports/flow",
            params={"from": "2026-Q1", "to": "2026-Q2", "level": "parent", "rollup": "lowest"},
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["level"] == "parent"
        opening = await coverage(api, period="2026-Q1", level="parent", rollup="lowest")
        totals = {
            state: sum(
                (
                    Decimal(row["revenue_from"])
                    for row in body["flows"]
                    if row["from_state"] == state
                ),
                Decimal(0),
            )
            for state in ("at_risk", "passive", "safe", "unaccounted")
        }
        assert totals == {name: Decimal(value) for name, value in bucket_revenue(opening).items()}
        assert sum(row["accounts"] for row in body["flows"]) == 4
