"""Roll-up rules on `/v1/coverage`: how several responses become one account's bucket.

The worked example: account A ($1,000k) has a decision maker scoring 4, then two users
scoring 9 and 10. B ($200k) scores 9, C ($50k) scores 6 and D ($750k) is silent. Total
revenue is $2,000k, covered revenue $1,250k (62.5%), and $750k is unaccounted.

- `latest`: A's latest score is 10, so A is safe: 100 x (1,200k - 50k) / 1,250k = +92.
- `average`: A's mean is 23/3 = 7.67, so A is passive: 100 x (200k - 50k) / 1,250k = +12.
- `lowest` and `decision_maker`: A's deciding score is 4, so A is at risk:
  100 x (200k - 1,050k) / 1,250k = -68.
- `account_nps`: A has 2 promoters and 1 detractor of 3, an NPS of +33.33, above the
  default +30, so A is safe and the figure is +92 as under `latest`.
"""

from typing import Any

import httpx
import pytest

from tests.test_coverage import (
    EARLY,
    add_responses,
    add_revenue,
    answer,
    bucket_accounts,
    bucket_revenue,
    coverage,
    nps,
    ratio,
    set_tenant,
)

RULES = ("latest", "average", "lowest", "account_nps", "decision_maker")


async def link_contact(api: httpx.AsyncClient, email: str, account: str, role: str) -> None:
    response = await api.put(
        f"/v1/contacts/{email}", json={"account_external_id": account, "role": role}
    )
    assert response.status_code in (200, 201), response.text


async def load_worked_example(api: httpx.AsyncClient) -> None:
    await add_revenue(
        api,
        ("A", "1000000.00", EARLY),
        ("B", "200000.00", EARLY),
        ("C", "50000.00", EARLY),
        ("D", "750000.00", EARLY),
    )
    await link_contact(api, "cfo@a.example", "A", "decision_maker")
    await link_contact(api, "user1@a.example", "A", "user")
    await link_contact(api, "user2@a.example", "A", "user")
    await add_responses(
        api,
        answer("a-cfo", "A", 4, "2026-02-01T12:00:00Z", email="cfo@a.example"),
        answer("a-user1", "A", 9, "2026-02-02T12:00:00Z", email="user1@a.example"),
        answer("a-user2", "A", 10, "2026-02-03T12:00:00Z", email="user2@a.example"),
        answer("b", "B", 9),
        answer("c", "C", 6),
    )


WORKED_EXAMPLE = [
    pytest.param(
        "latest",
        100 * (1_200_000 - 50_000) / 1_250_000,
        {"at_risk": "50000.00", "passive": "0.00", "safe": "1200000.00"},
        id="latest",
    ),
    pytest.param(
        "average",
        100 * (200_000 - 50_000) / 1_250_000,
        {"at_risk": "50000.00", "passive": "1000000.00", "safe": "200000.00"},
        id="average",
    ),
    pytest.param(
        "lowest",
        100 * (200_000 - 1_050_000) / 1_250_000,
        {"at_risk": "1050000.00", "passive": "0.00", "safe": "200000.00"},
        id="lowest",
    ),
    pytest.param(
        "decision_maker",
        100 * (200_000 - 1_050_000) / 1_250_000,
        {"at_risk": "1050000.00", "passive": "0.00", "safe": "200000.00"},
        id="decision_maker",
    ),
    pytest.param(
        "account_nps",
        100 * (1_200_000 - 50_000) / 1_250_000,
        {"at_risk": "50000.00", "passive": "0.00", "safe": "1200000.00"},
        id="account_nps",
    ),
]


class TestWorkedExample:
    @pytest.mark.parametrize(("rollup", "revenue_weighted", "buckets"), WORKED_EXAMPLE)
    async def test_rule_figures(
        self,
        api: httpx.AsyncClient,
        rollup: str,
        revenue_weighted: float,
        buckets: dict[str, str],
    ) -> None:
        await load_worked_example(api)

        report = await coverage(api, period="2026-Q1", rollup=rollup)

        assert report["rollup"] == rollup
        assert report["nps"]["revenue_weighted"] == nps(revenue_weighted)
        assert bucket_revenue(report) == {**buckets, "unaccounted": "750000.00"}
        assert report["coverage"] == ratio(0.625)
        assert report["total_revenue"] == "2000000.00"
        assert report["covered_revenue"] == "1250000.00"
        assert report["accounts"] == {"total": 4, "covered": 3}

    async def test_rounded_figures_per_rule(self, api: httpx.AsyncClient) -> None:
        await load_worked_example(api)

        figures = {
            rollup: (await coverage(api, period="2026-Q1", rollup=rollup))["nps"][
                "revenue_weighted"
            ]
            for rollup in RULES
        }

        assert figures == {
            "latest": 92.0,
            "average": 12.0,
            "lowest": -68.0,
            "account_nps": 92.0,
            "decision_maker": -68.0,
        }

    @pytest.mark.parametrize("rollup", RULES)
    async def test_respondent_nps_ignores_rule(self, api: httpx.AsyncClient, rollup: str) -> None:
        await load_worked_example(api)

        report = await coverage(api, period="2026-Q1", rollup=rollup)

        # Five respondents: 3 promoters (9, 10, 9) and 2 detractors (4, 6).
        assert report["nps"]["respondent"] == nps(20.0)
        assert report["responses"] == {"scored": 5, "unmatched": 0}


class TestDefaultRule:
    async def test_latest_without_setting(self, api: httpx.AsyncClient) -> None:
        await load_worked_example(api)

        report = await coverage(api, period="2026-Q1")

        assert report["rollup"] == "latest"
        assert report["nps"]["revenue_weighted"] == nps(92.0)

    async def test_tenant_default_applies(self, api: httpx.AsyncClient) -> None:
        await load_worked_example(api)
        await set_tenant(api, default_rollup="lowest")

        report = await coverage(api, period="2026-Q1")

        assert report["rollup"] == "lowest"
        assert report["nps"]["revenue_weighted"] == nps(-68.0)

    async def test_query_overrides_default(self, api: httpx.AsyncClient) -> None:
        await load_worked_example(api)
        await set_tenant(api, default_rollup="lowest")

        report = await coverage(api, period="2026-Q1", rollup="average")

        assert report["rollup"] == "average"

    async def test_tenant_settings_defaults(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/v1/tenant")

        tenant = response.json()
        assert tenant["default_rollup"] == "latest"
        assert tenant["account_nps_safe_above"] == 30
        assert tenant["account_nps_at_risk_below"] == 0

    async def test_unknown_rule_rejected(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/v1/coverage", params={"period": "2026-Q1", "rollup": "median"})

        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"

    async def test_unknown_default_rejected(self, api: httpx.AsyncClient) -> None:
        response = await api.patch("/v1/tenant", json={"default_rollup": "median"})

        assert response.status_code == 422


async def one_account(api: httpx.AsyncClient, *scores: int | None) -> None:
    """Account A with $100 of revenue and one respondent of its own per score, in order."""
    await add_revenue(api, ("A", "100.00", EARLY))
    await add_responses(
        api,
        *(
            answer(f"r{index}", "A", score, f"2026-02-{index + 1:02d}T12:00:00Z")
            for index, score in enumerate(scores)
        ),
    )


async def bucket_of_a(api: httpx.AsyncClient, rollup: str) -> str:
    report = await coverage(api, period="2026-Q1", rollup=rollup)
    accounts = bucket_accounts(report)
    [bucket] = [name for name, count in accounts.items() if count == 1]
    return bucket


class TestAverage:
    @pytest.mark.parametrize(
        ("scores", "expected"),
        [
            pytest.param((9, 9, 9), "safe", id="exactly-9"),
            pytest.param((10, 9, 8), "safe", id="mean-9"),
            pytest.param((9, 9, 8), "passive", id="mean-8.67"),
            pytest.param((7, 7, 7), "passive", id="exactly-7"),
            # Rounded to a whole number, 20/3 = 6.67 would be 7 and passive.
            pytest.param((7, 7, 6), "at_risk", id="mean-6.67-not-rounded"),
            pytest.param((0, 10), "at_risk", id="mean-5"),
        ],
    )
    async def test_mean_edges(
        self, api: httpx.AsyncClient, scores: tuple[int, ...], expected: str
    ) -> None:
        await one_account(api, *scores)

        assert await bucket_of_a(api, "average") == expected

    async def test_latest_per_respondent(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("A", "100.00", EARLY))
        await add_responses(
            api,
            answer("old", "A", 0, "2026-02-01T12:00:00Z", email="Jane@A.example"),
            answer("new", "A", 10, "2026-02-02T12:00:00Z", email="jane@a.example"),
            answer("other", "A", 8, "2026-02-03T12:00:00Z", email="joe@a.example"),
        )

        # Jane's latest (10) and Joe's 8 give a mean of 9; counting Jane's 0 would give 6.
        assert await bucket_of_a(api, "average") == "safe"

    async def test_responses_without_email(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("A", "100.00", EARLY))
        await add_responses(
            api,
            answer("n1", "A", 0, "2026-02-01T12:00:00Z", email=None),
            answer("n2", "A", 10, "2026-02-02T12:00:00Z", email=None),
        )

        # Each is its own respondent, so both count: a mean of 5.
        assert await bucket_of_a(api, "average") == "at_risk"

    async def test_null_scores_never_count(self, api: httpx.AsyncClient) -> None:
        await one_account(api, 9, None, None)

        assert await bucket_of_a(api, "average") == "safe"


class TestLowest:
    async def test_worst_respondent_decides(self, api: httpx.AsyncClient) -> None:
        await one_account(api, 10, 7, 9)

        assert await bucket_of_a(api, "lowest") == "passive"

    async def test_respondent_latest_replaces_earlier(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("A", "100.00", EARLY))
        await add_responses(
            api,
            answer("old", "A", 2, "2026-02-01T12:00:00Z", email="jane@a.example"),
            answer("new", "A", 9, "2026-02-02T12:00:00Z", email="jane@a.example"),
        )

        assert await bucket_of_a(api, "lowest") == "safe"

    async def test_null_scores_never_count(self, api: httpx.AsyncClient) -> None:
        await one_account(api, 9, None)

        assert await bucket_of_a(api, "lowest") == "safe"


class TestAccountNps:
    @pytest.mark.parametrize(
        ("scores", "expected"),
        [
            pytest.param((10, 9, 4), "safe", id="plus-33"),
            # Four promoters, one detractor and five passives: exactly +30, not above it.
            pytest.param((9, 9, 9, 9, 0, 7, 7, 7, 7, 7), "passive", id="exactly-plus-30"),
            pytest.param((10, 0), "passive", id="exactly-0"),
            pytest.param((10, 0, 0), "at_risk", id="minus-33"),
            pytest.param((8, 7), "passive", id="passives-only"),
        ],
    )
    async def test_default_thresholds(
        self, api: httpx.AsyncClient, scores: tuple[int, ...], expected: str
    ) -> None:
        await one_account(api, *scores)

        assert await bucket_of_a(api, "account_nps") == expected

    async def test_tenant_thresholds(self, api: httpx.AsyncClient) -> None:
        await one_account(api, 10, 9, 4)

        await set_tenant(api, account_nps_safe_above=40)
        above_40 = await bucket_of_a(api, "account_nps")
        await set_tenant(api, account_nps_at_risk_below=35, account_nps_safe_above=50)
        below_35 = await bucket_of_a(api, "account_nps")

        assert above_40 == "passive"
        assert below_35 == "at_risk"

    @pytest.mark.parametrize(
        "changes",
        [
            pytest.param({"account_nps_at_risk_below": 31}, id="above-default-safe"),
            pytest.param({"account_nps_safe_above": -1}, id="below-default-at-risk"),
            pytest.param({"account_nps_safe_above": 101}, id="out-of-range"),
        ],
    )
    async def test_invalid_thresholds_rejected(
        self, api: httpx.AsyncClient, changes: dict[str, Any]
    ) -> None:
        response = await api.patch("/v1/tenant", json=changes)
        tenant = (await api.get("/v1/tenant")).json()

        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert tenant["account_nps_safe_above"] == 30
        assert tenant["account_nps_at_risk_below"] == 0


class TestDecisionMaker:
    async def test_seniority_order(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("A", "100.00", EARLY))
        await link_contact(api, "influencer@a.example", "A", "influencer")
        await link_contact(api, "user@a.example", "A", "user")
        await add_responses(
            api,
            answer("i", "A", 7, "2026-02-01T12:00:00Z", email="influencer@a.example"),
            answer("u", "A", 10, "2026-02-02T12:00:00Z", email="user@a.example"),
            answer("x", "A", 0, "2026-02-03T12:00:00Z", email="stranger@a.example"),
        )

        assert await bucket_of_a(api, "decision_maker") == "passive"

    async def test_user_beats_unknown(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("A", "100.00", EARLY))
        await link_contact(api, "user@a.example", "A", "user")
        await add_responses(
            api,
            answer("u", "A", 10, "2026-02-01T12:00:00Z", email="user@a.example"),
            answer("x", "A", 0, "2026-02-03T12:00:00Z", email=None),
        )

        assert await bucket_of_a(api, "decision_maker") == "safe"

    async def test_latest_within_role(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("A", "100.00", EARLY))
        await link_contact(api, "ceo@a.example", "A", "decision_maker")
        await link_contact(api, "cfo@a.example", "A", "decision_maker")
        await add_responses(
            api,
            answer("ceo", "A", 3, "2026-02-01T12:00:00Z", email="ceo@a.example"),
            answer("cfo", "A", 8, "2026-02-02T12:00:00Z", email="CFO@a.example"),
        )

        assert await bucket_of_a(api, "decision_maker") == "passive"

    async def test_unknown_roles_use_latest(self, api: httpx.AsyncClient) -> None:
        await one_account(api, 0, 10)

        assert await bucket_of_a(api, "decision_maker") == "safe"

    async def test_role_at_other_account_ignored(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("A", "100.00", EARLY), ("B", "100.00", EARLY))
        await link_contact(api, "board@b.example", "B", "decision_maker")
        await link_contact(api, "user@a.example", "A", "user")
        await add_responses(
            api,
            answer("board", "A", 0, "2026-02-01T12:00:00Z", email="board@b.example"),
            answer("user", "A", 9, "2026-02-02T12:00:00Z", email="user@a.example"),
        )

        report = await coverage(api, period="2026-Q1", rollup="decision_maker")

        # The decision maker of B answered for A, where it holds no role, so A's user decides.
        assert report["buckets"]["safe"]["accounts"] == 1
        assert report["buckets"]["unaccounted"]["accounts"] == 1

    async def test_null_score_skipped(self, api: httpx.AsyncClient) -> None:
        await add_revenue(api, ("A", "100.00", EARLY))
        await link_contact(api, "cfo@a.example", "A", "decision_maker")
        await add_responses(
            api,
            answer("cfo", "A", None, "2026-02-02T12:00:00Z", email="cfo@a.example"),
            answer("u", "A", 9, "2026-02-01T12:00:00Z"),
        )

        assert await bucket_of_a(api, "decision_maker") == "safe"


class TestEveryRule:
    @pytest.mark.parametrize("rollup", RULES)
    async def test_buckets_add_up(self, api: httpx.AsyncClient, rollup: str) -> None:
        await load_worked_example(api)
        await add_revenue(api, ("E", "0.00", EARLY))
        await add_responses(api, answer("e", "E", 10), answer("u", None, 3))

        report = await coverage(api, period="2026-Q1", rollup=rollup)

        assert report["accounts"] == {"total": 4, "covered": 3}
        assert report["responses"] == {"scored": 7, "unmatched": 1}
        assert report["buckets"]["unaccounted"]["revenue"] == "750000.00"

    @pytest.mark.parametrize("rollup", RULES)
    async def test_single_response_same_bucket(self, api: httpx.AsyncClient, rollup: str) -> None:
        await add_revenue(api, ("A", "100.00", EARLY), ("B", "100.00", EARLY))
        await add_responses(api, answer("a", "A", 8), answer("b", "B", 2))

        report = await coverage(api, period="2026-Q1", rollup=rollup)

        assert bucket_accounts(report) == {
            "at_risk": 1,
            "passive": 1,
            "safe": 0,
            "unaccounted": 0,
        }
