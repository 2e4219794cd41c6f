"""Account merges: what moves to the survivor, how the old id resolves, and what reports see.

The base case: M has $300k and a response scoring 9 in Q1, S has $700k and no response.
M merges into S effective 2026-04-01, the end of Q1. Q1 ends at the merge, so it keeps M
with its revenue and response (coverage 30%). From Q2 on, M is out of the base, and a
revenue update sent for M from the merge on is S's revenue.
"""

from typing import Any

import httpx
import pytest

from tests.helpers import assert_problem
from tests.test_coverage import (
    EARLY,
    add_responses,
    add_revenue,
    answer,
    bucket_revenue,
    coverage,
    ratio,
)
from tests.test_rollup import link_contact
from tests.test_webhooks_typeform import SAMPLE_BODY, SAMPLE_TOKEN, create_endpoint, deliver

MERGED_AT = "2026-04-01T00:00:00Z"
IN_Q2 = "2026-05-01T12:00:00Z"


async def merge(api: httpx.AsyncClient, account: str, **body: Any) -> httpx.Response:
    return await api.post(f"/v1/accounts/{account}/merge", json=body)


async def merged(api: httpx.AsyncClient, account: str, **body: Any) -> dict[str, Any]:
    response = await merge(api, account, **body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def get_json(api: httpx.AsyncClient, url: str, **params: str) -> Any:
    response = await api.get(url, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def load_pair(api: httpx.AsyncClient) -> None:
    await add_revenue(api, ("M", "300000.00", EARLY), ("S", "700000.00", EARLY))
    await add_responses(api, answer("m1", "M", 9))


class TestMergeResult:
    async def test_moves_everything_to_survivor(self, api: httpx.AsyncClient) -> None:
        await load_pair(api)
        await link_contact(api, "pat@m.example", "M", "decision_maker")
        response = await api.put("/v1/accounts/M", json={"domains": ["m.example"]})
        assert response.status_code == 200, response.text
        response = await api.put("/v1/accounts/M-KID", json={"parent_external_id": "M"})
        assert response.status_code == 201, response.text

        result = await merged(api, "M", into="S", effective_at=MERGED_AT)

        assert result == {
            "account_external_id": "M",
            "into_external_id": "S",
            "survivor_external_id": "S",
            "effective_at": "2026-04-01T00:00:00Z",
            "moved": {"responses": 1, "contact_links": 1, "domains": 1, "children": 1},
            "replayed": False,
        }
        response = await get_json(api, "/v1/responses/native/m1")
        assert response["account_external_id"] == "S"
        contact = await get_json(api, "/v1/contacts/pat@m.example")
        assert [link["account_external_id"] for link in contact["accounts"]] == ["S"]
        assert contact["accounts"][0]["role"] == "decision_maker"
        survivor = await get_json(api, "/v1/accounts/S")
        assert survivor["domains"] == ["m.example"]
        assert (await get_json(api, "/v1/accounts/M-KID"))["parent_external_id"] == "S"

    async def test_descendant_survivor_takes_place(self, api: httpx.AsyncClient) -> None:
        for account, parent in (("M", "TOP"), ("C", "M"), ("S", "C")):
            response = await api.put(f"/v1/accounts/{account}", json={"parent_external_id": parent})
            assert response.status_code in (200, 201), response.text

        result = await merged(api, "M", into="S")

        assert result["moved"]["children"] == 1
        assert (await get_json(api, "/v1/accounts/S"))["parent_external_id"] == "TOP"
        assert (await get_json(api, "/v1/accounts/C"))["parent_external_id"] == "S"

    async def test_old_account_names_survivor(self, api: httpx.AsyncClient) -> None:
        await load_pair(api)

        await merged(api, "M", into="S", effective_at=MERGED_AT)

        account = await get_json(api, "/v1/accounts/M")
        assert account["merged_into_external_id"] == "S"
        assert account["merged_at"] == MERGED_AT
        assert account["revenue"]["amount"] == "300000.00"

    async def test_default_effective_at_is_now(self, api: httpx.AsyncClient) -> None:
        await load_pair(api)

        result = await merged(api, "M", into="S")
        report = await coverage(api, period="2026-Q1")

        assert result["effective_at"] > "2026-04-01"
        assert report["total_revenue"] == "1000000.00"

    async def test_recorded_in_audit_log(self, api: httpx.AsyncClient) -> None:
        await load_pair(api)

        await merged(api, "M", into="S", effective_at=MERGED_AT)

        events = (await get_json(api, "/v1/audit-events"))["items"]
        assert [event["action"] for event in events] == ["account.merged"]
        assert events[0]["details"] == {
            "account_external_id": "M",
            "into_external_id": "S",
            "survivor_external_id": "S",
            "effective_at": "2026-04-01T00:00:00Z",
        }
        assert events[0]["counts"]["responses"] == 1

    async def test_unlink_by_old_id(self, api: httpx.AsyncClient) -> None:
        await load_pair(api)
        await link_contact(api, "pat@m.example", "M", "user")
        await merged(api, "M", into="S", effective_at=MERGED_AT)

        response = await api.delete("/v1/contacts/pat@m.example/accounts/M")

        assert response.status_code == 204, response.text
        assert_problem(await api.get("/v1/contacts/pat@m.example"), 404)

    async def test_shared_contact_matches_after_merge(self, api: httpx.AsyncClient) -> None:
        await load_pair(api)
        await link_contact(api, "both@x.example", "M", "user")
        await link_contact(api, "both@x.example", "S", "influencer")
        await add_responses(api, answer("shared", None, 7, email="both@x.example"))
        assert (await get_json(api, "/v1/responses/native/shared"))["account_external_id"] is None

        await merged(api, "M", into="S", effective_at=MERGED_AT)

        contact = await get_json(api, "/v1/contacts/both@x.example")
        assert [(link["account_external_id"], link["role"]) for link in contact["accounts"]] == [
            ("S", "influencer")
        ]
        assert (await get_json(api, "/v1/responses/native/shared"))["account_external_id"] == "S"


class TestMergeRejections:
    async def test_into_itself(self, api: httpx.AsyncClient) -> None:
        await load_pair(api)

        problem = assert_problem(await merge(api, "M", into="M"), 422)

        assert problem["type"] == "urn:revcov:problem:invalid-account-merge"
        assert "'M'" in problem["detail"]
        assert problem["errors"][0]["location"] == "body.into"
        assert (await get_json(api, "/v1/accounts/M"))["merged_into_external_id"] is None

    async def test_into_missing_account(self, api: httpx.AsyncClient) -> None:
        await load_pair(api)

        problem = assert_problem(await merge(api, "M", into="NOPE"), 422)

        assert "'NOPE'" in problem["detail"]
        assert_problem(await api.get("/v1/accounts/NOPE"), 404)

    async def test_missing_account(self, api: httpx.AsyncClient) -> None:
        await load_pair(api)

        problem = assert_problem(await merge(api, "NOPE", into="S"), 404)

        assert "'NOPE'" in problem["detail"]

    async def test_back_into_merged_away(self, api: httpx.AsyncClient) -> None:
        await load_pair(api)
        await merged(api, "M", into="S", effective_at=MERGED_AT)

        problem = assert_problem(await merge(api, "S", into="M"), 422)

        assert "'M' was merged into 'S'" in problem["detail"]

    async def test_again_elsewhere_conflicts(self, api: httpx.AsyncClient) -> None:
        await load_pair(api)
        await add_revenue(api, ("T", "10.00", EARLY))
        await merged(api, "M", into="S", effective_at=MERGED_AT)

        problem = assert_problem(await merge(api, "M", into="T"), 409)

        assert problem["type"] == "urn:revcov:problem:account-merged"
        assert "'S'" in problem["detail"]

    async def test_chain_conflict_names_both(self, api: httpx.AsyncClient) -> None:
        await load_pair(api)
        await add_revenue(api, ("T", "10.00", EARLY))
        await merged(api, "M", into="S", effective_at=MERGED_AT)
        await merged(api, "S", into="T", effective_at=MERGED_AT)

        problem = assert_problem(await api.put("/v1/accounts/M", json={"name": "M"}), 409)

        assert "'M' was merged into 'S' effective" in problem["detail"]
        assert "which was itself merged into 'T'" in problem["detail"]
        assert "PUT /v1/accounts/T" in problem["detail"]

    async def test_same_merge_again_replays(self, api: httpx.AsyncClient) -> None:
        await load_pair(api)
        await merged(api, "M", into="S", effective_at=MERGED_AT)

        again = await merged(api, "M", into="S", effective_at=MERGED_AT)
        events = (await get_json(api, "/v1/audit-events"))["items"]

        assert again["replayed"] is True
        assert again["moved"] == {"responses": 0, "contact_links": 0, "domains": 0, "children": 0}
        assert len(events) == 1

    async def test_put_to_merged_away_conflicts(self, api: httpx.AsyncClient) -> None:
        await load_pair(api)
        await merged(api, "M", into="S", effective_at=MERGED_AT)

        response = await api.put("/v1/accounts/M", json={"name": "Renamed"})

        problem = assert_problem(response, 409)
        assert "PUT /v1/accounts/S" in problem["detail"]
        assert (await get_json(api, "/v1/accounts/M"))["name"] is None


class TestMergeChains:
    async def test_into_merged_away_follows_chain(self, api: httpx.AsyncClient) -> None:
        await load_pair(api)
        await add_revenue(api, ("X", "50000.00", EARLY))
        await add_responses(api, answer("x1", "X", 3))
        await merged(api, "M", into="S", effective_at=MERGED_AT)

        result = await merged(api, "X", into="M", effective_at=MERGED_AT)

        assert result["into_external_id"] == "M"
        assert result["survivor_external_id"] == "S"
        assert (await get_json(api, "/v1/responses/native/x1"))["account_external_id"] == "S"

    async def test_survivor_merged_later(self, api: httpx.AsyncClient) -> None:
        await load_pair(api)
        await add_revenue(api, ("T", "900000.00", EARLY))
        await merged(api, "M", into="S", effective_at=MERGED_AT)
        await merged(api, "S", into="T", effective_at="2026-07-01T00:00:00Z")
        await add_responses(api, answer("late", "M", 8, "2026-08-01T00:00:00Z"))

        q1 = await coverage(api, period="2026-Q1", as_of="2026-12-01")
        q2 = await coverage(api, period="2026-Q2", as_of="2026-12-01")
        q3 = await coverage(api, period="2026-Q3", as_of="2026-12-01")

        assert (await get_json(api, "/v1/responses/native/late"))["account_external_id"] == "T"
        assert q1["total_revenue"] == "1900000.00"
        assert q1["covered_revenue"] == "300000.00"
        assert q2["total_revenue"] == "1600000.00"
        assert q3["total_revenue"] == "900000.00"
        assert q3["covered_revenue"] == "900000.00"
        assert_problem(await merge(api, "T", into="M"), 422)


class TestReportsAroundMerge:
    async def test_period_ending_at_merge_keeps_revenue(self, api: httpx.AsyncClient) -> None:
        await load_pair(api)

        await merged(api, "M", into="S", effective_at=MERGED_AT)
        report = await coverage(api, period="2026-Q1")

        assert report["total_revenue"] == "1000000.00"
        assert report["accounts"] == {"total": 2, "covered": 1}
        assert bucket_revenue(report)["safe"] == "300000.00"
        assert report["coverage"] == ratio(0.3)

    async def test_period_after_merge_drops_account(self, api: httpx.AsyncClient) -> None:
        await load_pair(api)
        await merged(api, "M", into="S", effective_at=MERGED_AT)

        report = await coverage(api, period="2026-Q2", as_of="2026-12-01")

        assert report["total_revenue"] == "700000.00"
        assert report["accounts"] == {"total": 1, "covered": 0}

    async def test_merge_inside_period_counts_once(self, api: httpx.AsyncClient) -> None:
        await load_pair(api)

        await merged(api, "M", into="S", effective_at="2026-02-15T00:00:00Z")
        report = await coverage(api, period="2026-Q1")
        before = await coverage(api, period="2025-Q4")

        assert report["total_revenue"] == "700000.00"
        assert report["accounts"] == {"total": 1, "covered": 1}
        assert bucket_revenue(report)["safe"] == "700000.00"
        assert before["total_revenue"] == "1000000.00"

    async def test_old_id_revenue_lands_on_survivor(self, api: httpx.AsyncClient) -> None:
        await load_pair(api)
        await merged(api, "M", into="S", effective_at=MERGED_AT)

        await add_revenue(api, ("M", "1000000.00", MERGED_AT), ("M", "310000.00", EARLY))
        survivor = await get_json(api, "/v1/accounts/S")
        old = await get_json(api, "/v1/accounts/M")
        q1 = await coverage(api, period="2026-Q1")
        q2 = await coverage(api, period="2026-Q2", as_of="2026-12-01")

        assert [row["amount"] for row in survivor["revenue_history"]] == [
            "1000000.00",
            "700000.00",
        ]
        assert [row["amount"] for row in old["revenue_history"]] == ["310000.00"]
        assert q1["total_revenue"] == "1010000.00"
        assert q2["total_revenue"] == "1000000.00"
        assert q2["accounts"]["total"] == 1

    async def test_late_delivery_for_old_id(self, api: httpx.AsyncClient) -> None:
        await load_pair(api)
        await merged(api, "M", into="S", effective_at=MERGED_AT)

        await add_responses(
            api, answer("m-q1-late", "M", 2, "2026-03-01T00:00:00Z"), answer("m-q2", "M", 6, IN_Q2)
        )
        stored = await get_json(api, "/v1/responses/native/m-q2")
        q1 = await coverage(api, period="2026-Q1")
        q2 = await coverage(api, period="2026-Q2", as_of="2026-12-01")

        assert stored["account_external_id"] == "S"
        assert stored["matched_by"] == "account_external_id"
        assert bucket_revenue(q1)["at_risk"] == "300000.00"
        assert bucket_revenue(q1)["unaccounted"] == "700000.00"
        assert bucket_revenue(q2)["at_risk"] == "700000.00"

    async def test_late_webhook_delivery_for_old_id(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("ACME-001", "300000.00", EARLY), ("S", "700000.00", EARLY))
        await merged(api, "ACME-001", into="S", effective_at=MERGED_AT)
        endpoint = await create_endpoint(api)

        delivery = await deliver(api, endpoint["id"], SAMPLE_BODY)
        stored = await get_json(api, f"/v1/responses/typeform/{SAMPLE_TOKEN}")
        q1 = await coverage(api, period="2026-Q1")
        listed = await get_json(api, "/v1/responses", account="S")

        assert delivery.status_code == 200, delivery.text
        assert delivery.json()["status"] == "processed"
        assert stored["account_external_id"] == "S"
        assert [item["response_id"] for item in listed["items"]] == [SAMPLE_TOKEN]
        assert q1["accounts"]["covered"] == 1
        assert q1["covered_revenue"] == "300000.00"

    async def test_classification_of_old_account(self, api: httpx.AsyncClient) -> None:
        await load_pair(api)
        await merged(api, "M", into="S", effective_at=MERGED_AT)

        q1 = await get_json(api, "/v1/accounts/M/classification", period="2026-Q1")
        q2 = await get_json(
            api, "/v1/accounts/M/classification", period="2026-Q2", as_of="2026-12-01"
        )

        assert (q1["reported_as"], q1["bucket"], q1["revenue"]) == ("M", "safe", "300000.00")
        assert [item["response_id"] for item in q1["responses"]] == ["m1"]
        assert (q2["reported_as"], q2["bucket"], q2["revenue"]) == ("S", "unaccounted", "700000.00")

    async def test_moved_response_keeps_contact_role(self, api: httpx.AsyncClient) -> None:
        # The linked contact's response names M, so matching it again after the merge
        # must keep it at S, where its contact link moved.
        await load_pair(api)
        await link_contact(api, "pat@m.example", "M", "influencer")
        await add_responses(
            api,
            answer("pat", "M", 9, IN_Q2, email="pat@m.example"),
            answer("anon", "M", 0, "2026-05-02T12:00:00Z", email=None),
        )

        await merged(api, "M", into="S", effective_at=MERGED_AT)
        classified = await get_json(
            api, "/v1/accounts/S/classification", period="2026-Q2", rollup="decision_maker"
        )
        report = await coverage(api, period="2026-Q2", rollup="decision_maker")

        assert (await get_json(api, "/v1/responses/native/pat"))["account_external_id"] == "S"
        roles = {item["response_id"]: item["role"] for item in classified["responses"]}
        assert roles == {"pat": "influencer", "anon": None}
        assert classified["bucket"] == "safe"
        assert report["buckets"]["safe"]["revenue"] == "700000.00"

    async def test_last_response_stays_before_merge(self, api: httpx.AsyncClient) -> None:
        # The merge takes effect after `as_of`, so M's response is still M's own.
        await add_revenue(api, ("M", "300000.00", EARLY), ("S", "700000.00", EARLY))
        await add_responses(api, answer("m1", "M", 9, "2026-01-15T00:00:00Z"))
        await merged(api, "M", into="S", effective_at="2026-12-01T00:00:00Z")

        plan = await get_json(
            api, "/v1/reports/survey-next", period="2026-Q2", as_of="2026-05-15T00:00:00Z"
        )

        days = {
            item["account_external_id"]: item["days_since_last_response"] for item in plan["items"]
        }
        assert days == {"M": 120, "S": None}

    async def test_flow_shows_account_leaving(self, api: httpx.AsyncClient) -> None:
        await load_pair(api)
        await merged(api, "M", into="S", effective_at=MERGED_AT)

        body = await get_json(
            api, "/v1/reports/flow", **{"from": "2026-Q1", "to": "2026-Q2", "as_of": "2026-12-01"}
        )

        rows = {(row["from_state"], row["to_state"]): row for row in body["flows"]}
        assert rows[("safe", "not_in_base")]["revenue_from"] == "300000.00"
        assert rows[("unaccounted", "unaccounted")]["revenue_to"] == "700000.00"

    async def test_trend_matches_coverage(self, api: httpx.AsyncClient) -> None:
        await load_pair(api)
        await merged(api, "M", into="S", effective_at="2026-02-15T00:00:00Z")
        await add_responses(api, answer("s2", "M", 10, IN_Q2))

        trend = await get_json(
            api, "/v1/coverage/trend", **{"from": "2025-Q4", "to": "2026-Q2", "as_of": "2026-12-01"}
        )

        for report in trend["periods"]:
            label = report["period"]["label"]
            assert report == await coverage(api, period=label, as_of="2026-12-01")

    @pytest.mark.parametrize("level", ["account", "parent"])
    async def test_parent_level_after_merge(self, api: httpx.AsyncClient, level: str) -> None:
        await load_pair(api)
        await add_revenue(api, ("KID", "100000.00", EARLY))
        response = await api.put("/v1/accounts/KID", json={"parent_external_id": "M"})
        assert response.status_code == 200, response.text
        await merged(api, "M", into="S", effective_at=MERGED_AT)

        q2 = await coverage(api, period="2026-Q2", as_of="2026-12-01", level=level)

        expected = {"account": 2, "parent": 1}[level]
        assert q2["total_revenue"] == "800000.00"
        assert q2["accounts"]["total"] == expected
