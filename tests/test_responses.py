"""Survey responses in the native format: score forms, idempotency, matching and reads."""

from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.helpers import add_account, assert_problem, coverage_q1

JSON_HEADERS = {"Content-Type": "application/json"}
ABSENT = object()


def survey_response(
    response_id: str,
    account: str | None = "ACME-001",
    score: object = 9,
    *,
    submitted_at: str = "2026-02-01T12:00:00Z",
    **extra: Any,
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "source": "native",
        "response_id": response_id,
        "account_external_id": account,
        "email": f"{response_id}@example.com",
        "submitted_at": submitted_at,
        **extra,
    }
    if score is not ABSENT:
        item["score"] = score
    return item


async def post_responses(api: httpx.AsyncClient, *items: dict[str, Any]) -> httpx.Response:
    return await api.post("/v1/responses", json={"responses": list(items)})


async def get_stored(api: httpx.AsyncClient, response_id: str) -> dict[str, Any]:
    response = await api.get(f"/v1/responses/native/{response_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ids_of(page: httpx.Response) -> set[str]:
    assert page.status_code == 200, page.text
    return {item["response_id"] for item in page.json()["items"]}


class TestScoreForms:
    @pytest.mark.parametrize(
        ("score", "stored"),
        [
            (9, 9),
            (0, 0),
            (10, 10),
            (6.0, 6),
            (10.0, 10),
            ("9", 9),
            (" 9 ", 9),
            ("0", 0),
            ("10", 10),
            (None, None),
            (ABSENT, None),
        ],
    )
    async def test_score_accepted(
        self, api: httpx.AsyncClient, score: object, stored: int | None
    ) -> None:
        response = await post_responses(api, survey_response("r1", score=score))

        assert response.status_code == 200, response.text
        assert (await get_stored(api, "r1"))["score"] == stored

    @pytest.mark.parametrize("literal", ["6.0", "0.0", "10.00"])
    async def test_score_float_literal_accepted(self, api: httpx.AsyncClient, literal: str) -> None:
        body = (
            '{"responses": [{"source": "native", "response_id": "r1", "score": '
            + literal
            + ', "submitted_at": "2026-02-01T12:00:00Z"}]}'
        )

        response = await api.post("/v1/responses", content=body, headers=JSON_HEADERS)

        assert response.status_code == 200, response.text
        assert (await get_stored(api, "r1"))["score"] == int(float(literal))

    # "6.0" as a string is neither a JSON integer, nor a JSON number with a zero
    # fraction, nor a string of digits, so it is one of the "anything else" forms.
    @pytest.mark.parametrize(
        "score",
        [7.5, -1, 11, "", "  ", True, False, "6.0", "abc", "9.5", "-1", "11", "NaN", [9], {"v": 9}],
    )
    async def test_score_rejected(self, api: httpx.AsyncClient, score: object) -> None:
        response = await post_responses(
            api, survey_response("ok-1"), survey_response("bad-1", score=score)
        )

        problem = assert_problem(response, 422)
        [error] = problem["errors"]
        assert error["location"] == "body.responses[1].score"
        assert "bad-1" in error["message"]
        assert "bad-1" in problem["detail"]
        assert_problem(await api.get("/v1/responses/native/ok-1"), 404)

    async def test_near_integer_literal_rejected(self, api: httpx.AsyncClient) -> None:
        # A binary float would read 9.0000000000000001 as exactly 9.
        body = (
            '{"responses": [{"source": "native", "response_id": "bad-1", '
            '"score": 9.0000000000000001, "submitted_at": "2026-02-01T12:00:00Z"}]}'
        )

        response = await api.post("/v1/responses", content=body, headers=JSON_HEADERS)

        problem = assert_problem(response, 422)
        assert "bad-1" in problem["detail"]
        assert_problem(await api.get("/v1/responses/native/bad-1"), 404)


class TestPostResponses:
    async def test_stored_as_sent(self, api: httpx.AsyncClient) -> None:
        await add_account(api, "ACME-001")
        item = survey_response(
            "r1",
            score=7,
            comment="Good, but slow exports — fix them.",
            submitted_at="2026-02-01T07:00:00-05:00",
        )

        response = await post_responses(api, item)

        assert response.status_code == 200, response.text
        assert response.json() == {"created": 1, "updated": 0, "unchanged": 0}
        stored = await get_stored(api, "r1")
        assert stored["source"] == "native"
        assert stored["response_id"] == "r1"
        assert stored["account_external_id"] == "ACME-001"
        assert stored["email"] == "r1@example.com"
        assert stored["score"] == 7
        assert stored["comment"] == "Good, but slow exports — fix them."
        assert datetime.fromisoformat(stored["submitted_at"]) == datetime.fromisoformat(
            "2026-02-01T12:00:00Z"
        )
        assert stored["received_at"]

    async def test_unknown_response_is_404(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/v1/responses/native/nope")

        assert_problem(response, 404)

    async def test_other_source_is_404(self, api: httpx.AsyncClient) -> None:
        await post_responses(api, survey_response("r1"))

        response = await api.get("/v1/responses/typeform/r1")

        assert_problem(response, 404)

    @pytest.mark.parametrize("field", ["source", "response_id", "submitted_at"])
    async def test_required_field_missing(self, api: httpx.AsyncClient, field: str) -> None:
        item = survey_response("r1")
        del item[field]

        response = await post_responses(api, item)

        problem = assert_problem(response, 422)
        locations = [error["location"] for error in problem["errors"]]
        assert f"body.responses[0].{field}" in locations


class TestIdempotency:
    async def test_repeat_changes_nothing(self, api: httpx.AsyncClient) -> None:
        item = survey_response("r1", score=8, comment="fine")
        await post_responses(api, item)
        before = await get_stored(api, "r1")

        response = await post_responses(api, item)

        assert response.json() == {"created": 0, "updated": 0, "unchanged": 1}
        assert await get_stored(api, "r1") == before

    async def test_same_source_id_is_one_response(self, api: httpx.AsyncClient) -> None:
        item = survey_response("r1", score=8)
        await post_responses(api, item)

        await post_responses(api, item)

        listed = (await api.get("/v1/responses")).json()["items"]
        assert len(listed) == 1

    async def test_other_source_is_other_response(self, api: httpx.AsyncClient) -> None:
        await post_responses(api, survey_response("r1", score=8))

        response = await post_responses(api, {**survey_response("r1", score=2), "source": "other"})

        assert response.json()["created"] == 1
        assert (await get_stored(api, "r1"))["score"] == 8

    async def test_later_updated_at_replaces(self, api: httpx.AsyncClient) -> None:
        await post_responses(api, survey_response("r1", score=5, updated_at="2026-02-01T12:00:00Z"))

        response = await post_responses(
            api, survey_response("r1", score=9, updated_at="2026-02-02T12:00:00Z")
        )

        assert response.json() == {"created": 0, "updated": 1, "unchanged": 0}
        assert (await get_stored(api, "r1"))["score"] == 9

    async def test_older_updated_at_ignored(self, api: httpx.AsyncClient) -> None:
        await post_responses(api, survey_response("r1", score=9, updated_at="2026-02-02T12:00:00Z"))

        response = await post_responses(
            api, survey_response("r1", score=5, updated_at="2026-02-01T12:00:00Z")
        )

        assert response.json() == {"created": 0, "updated": 0, "unchanged": 1}
        assert (await get_stored(api, "r1"))["score"] == 9

    async def test_same_updated_at_changes_nothing(self, api: httpx.AsyncClient) -> None:
        # Deliveries of one version in any order store the same response.
        first = survey_response("r1", score=5, updated_at="2026-02-01T12:00:00Z")
        second = survey_response("r1", score=9, updated_at="2026-02-01T12:00:00Z")
        await post_responses(api, first)

        changed = await post_responses(api, second)
        in_one_batch = await post_responses(
            api,
            survey_response("r2", score=5, updated_at="2026-02-01T12:00:00Z"),
            survey_response("r2", score=9, updated_at="2026-02-01T12:00:00Z"),
        )

        assert changed.json() == {"created": 0, "updated": 0, "unchanged": 1}
        assert (await get_stored(api, "r1"))["score"] == 5
        assert in_one_batch.json()["created"] == 1
        assert (await get_stored(api, "r2"))["score"] == 5

    async def test_erased_version_sent_again_stays_erased(self, api: httpx.AsyncClient) -> None:
        item = {
            **survey_response("r1", score=4, updated_at="2026-02-01T12:00:00Z"),
            "email": "erin@priv.example",
            "comment": "private words",
        }
        await post_responses(api, item)
        erased = await api.post("/v1/privacy/erase", json={"email": "erin@priv.example"})
        assert erased.status_code == 200, erased.text

        again = await post_responses(api, item)

        stored = await get_stored(api, "r1")
        assert again.json() == {"created": 0, "updated": 0, "unchanged": 1}
        assert (stored["email"], stored["comment"]) == (None, None)
        assert stored["erased_at"] is not None

    async def test_older_version_in_same_batch_ignored(self, api: httpx.AsyncClient) -> None:
        newer = survey_response("r1", score=9, updated_at="2026-02-02T12:00:00Z")
        older = survey_response("r1", score=5, updated_at="2026-02-01T12:00:00Z")

        response = await post_responses(api, newer, older)

        assert response.status_code == 200, response.text
        assert (await get_stored(api, "r1"))["score"] == 9

    async def test_unversioned_change_replaces(self, api: httpx.AsyncClient) -> None:
        await post_responses(api, survey_response("r1", score=5, comment="slow"))

        response = await post_responses(api, survey_response("r1", score=9, comment="fixed"))

        assert response.json() == {"created": 0, "updated": 1, "unchanged": 0}
        stored = await get_stored(api, "r1")
        assert stored["score"] == 9
        assert stored["comment"] == "fixed"

    async def test_replaced_score_counts_once(self, api: httpx.AsyncClient) -> None:
        await add_account(api, "ACME-001")
        await post_responses(api, survey_response("r1", score=3))

        await post_responses(api, survey_response("r1", score=10))

        coverage = await coverage_q1(api)
        assert coverage["responses"]["scored"] == 1
        assert coverage["buckets"]["safe"]["accounts"] == 1
        assert coverage["buckets"]["at_risk"]["accounts"] == 0


class TestMatching:
    async def test_unknown_account_stored_unmatched(self, api: httpx.AsyncClient) -> None:
        response = await post_responses(api, survey_response("r1", account="GHOST"))

        assert response.status_code == 200, response.text
        assert (await get_stored(api, "r1"))["account_external_id"] is None
        coverage = await coverage_q1(api)
        assert coverage["responses"]["scored"] == 1
        assert coverage["responses"]["unmatched"] == 1

    async def test_matched_when_put_creates_account(self, api: httpx.AsyncClient) -> None:
        await post_responses(api, survey_response("r1", account="GHOST", score=9))

        await add_account(api, "GHOST", amount="500.00")

        assert (await get_stored(api, "r1"))["account_external_id"] == "GHOST"
        coverage = await coverage_q1(api)
        assert coverage["responses"]["unmatched"] == 0
        assert coverage["accounts"]["covered"] == 1
        assert coverage["buckets"]["safe"]["revenue"] == "500.00"
        assert coverage["buckets"]["unaccounted"]["accounts"] == 0

    async def test_matched_when_update_creates_account(self, api: httpx.AsyncClient) -> None:
        await post_responses(api, survey_response("r1", account="GHOST", score=2))

        response = await api.post(
            "/v1/revenue-updates",
            json={
                "updates": [
                    {
                        "account_external_id": "GHOST",
                        "amount": "700.00",
                        "currency": "USD",
                        "effective_at": "2025-12-01T00:00:00Z",
                    }
                ]
            },
        )

        assert response.status_code == 200, response.text
        assert (await get_stored(api, "r1"))["account_external_id"] == "GHOST"
        coverage = await coverage_q1(api)
        assert coverage["responses"]["unmatched"] == 0
        assert coverage["buckets"]["at_risk"]["revenue"] == "700.00"

    async def test_no_account_stays_unmatched(self, api: httpx.AsyncClient) -> None:
        response = await post_responses(api, survey_response("r1", account=None))

        assert response.status_code == 200, response.text
        assert (await get_stored(api, "r1"))["account_external_id"] is None
        assert (await coverage_q1(api))["responses"]["unmatched"] == 1


class TestListResponses:
    @pytest.fixture
    async def stored(self, api: httpx.AsyncClient) -> None:
        """Store r1 for account A in Q1, r2 for B in Q2 from `survey-x`, r3 unmatched in Q1."""
        await add_account(api, "A")
        await add_account(api, "B")
        response = await post_responses(
            api,
            survey_response("r1", account="A", submitted_at="2026-02-01T12:00:00Z"),
            {
                **survey_response("r2", account="B", submitted_at="2026-05-01T12:00:00Z"),
                "source": "survey-x",
            },
            survey_response("r3", account="GHOST", submitted_at="2026-03-01T12:00:00Z"),
        )
        assert response.status_code == 200, response.text

    @pytest.mark.usefixtures("stored")
    @pytest.mark.parametrize(
        ("params", "expected"),
        [
            ({}, {"r1", "r2", "r3"}),
            ({"account": "A"}, {"r1"}),
            ({"account": "B"}, {"r2"}),
            ({"source": "survey-x"}, {"r2"}),
            ({"source": "native"}, {"r1", "r3"}),
            ({"period": "2026-Q1"}, {"r1", "r3"}),
            ({"period": "2026-Q2"}, {"r2"}),
            ({"period": "2026-02"}, {"r1"}),
            ({"from": "2026-04-01", "to": "2026-06-01"}, {"r2"}),
            ({"matched": "true"}, {"r1", "r2"}),
            ({"matched": "false"}, {"r3"}),
            ({"source": "native", "matched": "true"}, {"r1"}),
            ({"period": "2026-Q1", "matched": "false"}, {"r3"}),
            ({"as_of": "2026-03-01T00:00:00Z"}, {"r1", "r2", "r3"}),
        ],
    )
    async def test_filter(
        self, api: httpx.AsyncClient, params: dict[str, str], expected: set[str]
    ) -> None:
        response = await api.get("/v1/responses", params=params)

        assert ids_of(response) == expected

    @pytest.mark.usefixtures("stored")
    async def test_items_have_stored_fields(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/v1/responses", params={"account": "A"})

        [item] = response.json()["items"]
        expected_keys = {
            "source",
            "response_id",
            "account_external_id",
            "email",
            "score",
            "comment",
            "submitted_at",
            "received_at",
        }
        assert expected_keys <= item.keys()
        assert item["account_external_id"] == "A"

    @pytest.mark.usefixtures("stored")
    async def test_pages(self, api: httpx.AsyncClient) -> None:
        first = await api.get("/v1/responses", params={"limit": 2})
        cursor = first.json()["next_cursor"]
        second = await api.get("/v1/responses", params={"limit": 2, "cursor": cursor})

        assert len(first.json()["items"]) == 2
        assert cursor is not None
        assert len(second.json()["items"]) == 1
        assert second.json()["next_cursor"] is None
        assert ids_of(first) | ids_of(second) == {"r1", "r2", "r3"}

    @pytest.mark.parametrize(
        "params",
        [
            {"period": "2026-Q5"},
            {"matched": "maybe"},
            {"limit": "0"},
            {"limit": "1001"},
            {"cursor": "garbage"},
            {"from": "2026-01-01"},
            {"as_of": "2026-13-01T00:00:00Z"},
            {"as_of": "now"},
            {"timezone": "Mars/Olympus"},
        ],
    )
    async def test_bad_query_rejected(self, api: httpx.AsyncClient, params: dict[str, str]) -> None:
        response = await api.get("/v1/responses", params=params)

        assert_problem(response, 422)
