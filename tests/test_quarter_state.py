"""The quarter state against the statements that derive every figure from the responses.

Reports read buckets and respondent counts from `account_quarter_scores` and
`respondent_quarter_scores` when the period is a quarter of the tenant's grid. These
tests write seeded data through every path that changes responses or contacts, then
compare each report figure from the state with the same figure from the responses, for
every quarter and roll-up rule. They also check that recomputing one changed key at a
time leaves the same rows as rebuilding the tenant's state from scratch.
"""

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from app.account_lists import queries as list_queries
from app.db.session import session_scope
from app.periods import resolve_period
from app.reports import queries
from app.reports.schemas import Level, Rollup
from app.reports.service import report_window, rollup_rule
from app.tenancy.models import Tenant
from tests.report_data import tenant_client

START = datetime(2024, 11, 20, tzinfo=UTC)
SPAN_SECONDS = 800 * 86400
AMOUNTS = ["0.00", "1500.00", "2500000.00", "2500000.00", "90000000.10", "7.00"]
EMAILS = ["ana@a.test", "BO@b.test", " cy@c.test", "di@d.test", "", None, None]
ROLES = ["decision_maker", "influencer", "user", None]
QUARTERS = [f"{year}-Q{quarter}" for year in (2025, 2026) for quarter in (1, 2, 3, 4)]
FISCAL_QUARTERS = [f"FY{year}-Q{quarter}" for year in (2026, 2027) for quarter in (1, 2, 3, 4)]
AS_OF = datetime(2026, 12, 5, 12, tzinfo=UTC)


def _instant(rng: random.Random) -> str:
    return (START + timedelta(seconds=rng.randrange(SPAN_SECONDS))).isoformat()


def _response(rng: random.Random, number: int, accounts: list[str]) -> dict[str, Any]:
    return {
        "source": rng.choice(["typeform", "delighted"]),
        "response_id": f"r{number:04d}",
        "account_external_id": rng.choice([*accounts, "GHOST"]),
        "email": rng.choice(EMAILS),
        "score": None if rng.random() < 0.08 else rng.randrange(11),
        "submitted_at": _instant(rng),
    }


async def _write_book(api: httpx.AsyncClient, seed: int) -> None:
    """Write accounts, revenue out of order, responses with updates, contacts and erasures."""
    rng = random.Random(seed)
    accounts = [f"acct-{index:02d}" for index in range(24)]
    for external_id in accounts:
        body = {
            "name": external_id,
            "region": rng.choice(["EMEA", "AMER", None]),
            "industry": rng.choice(["retail", " ", None]),
            "owner": rng.choice(["kim", "lee", ""]),
            "attributes": rng.choice([{"plan": "pro"}, {"plan": " "}, {}]),
        }
        assert (await api.put(f"/v1/accounts/{external_id}", json=body)).status_code in (200, 201)

    # EUR revenue converts at the rate in force at each period's revenue instant, which
    # changes within the span, so its amount differs from one quarter to the next.
    rates = [
        {"currency": "EUR", "rate": "1.1", "effective_at": (START - timedelta(days=1)).isoformat()},
        *(
            {"currency": "EUR", "rate": rate, "effective_at": _instant(rng)}
            for rate in ("1.05", "1.2", "0.95", "1.15")
        ),
    ]
    assert (await api.put("/v1/fx-rates", json={"rates": rates})).status_code == 200
    updates = [
        {
            "account_external_id": external_id,
            "amount": rng.choice(AMOUNTS),
            "currency": rng.choice(["USD", "USD", "USD", "EUR"]),
            "effective_at": _instant(rng),
        }
        for external_id in accounts
        for _ in range(rng.randrange(1, 5))
    ]
    rng.shuffle(updates)
    for batch in (updates[: len(updates) // 2], updates[len(updates) // 2 :]):
        response = await api.post("/v1/revenue-updates", json={"updates": batch})
        assert response.status_code == 200, response.text

    responses = [_response(rng, number, accounts) for number in range(400)]
    # Respondents of several accounts, and ties at one instant.
    for number in range(40):
        responses.append(
            {
                **_response(rng, 1000 + number, accounts),
                "email": "shared@x.test",
                "submitted_at": responses[number]["submitted_at"],
            }
        )
    rng.shuffle(responses)
    for offset in range(0, len(responses), 150):
        batch = responses[offset : offset + 150]
        response = await api.post("/v1/responses", json={"responses": batch})
        assert response.status_code == 200, response.text

    contacts = {email.strip().lower() for email in EMAILS if email and email.strip()}
    for email in sorted(contacts | {"shared@x.test"}):
        for external_id in rng.sample(accounts, 6):
            body = {"account_external_id": external_id, "role": rng.choice(ROLES)}
            assert (await api.put(f"/v1/contacts/{email}", json=body)).status_code in (200, 201)

    # Updated versions: new scores, emails, instants and accounts for existing ids.
    updated = []
    for original in rng.sample(responses, 80):
        changed = dict(original)
        changed["score"] = None if rng.random() < 0.1 else rng.randrange(11)
        if rng.random() < 0.3:
            changed["submitted_at"] = _instant(rng)
        if rng.random() < 0.3:
            changed["email"] = rng.choice(EMAILS)
        if rng.random() < 0.3:
            changed["account_external_id"] = rng.choice([*accounts, "GHOST"])
        changed["updated_at"] = AS_OF.isoformat()
        updated.append(changed)
    response = await api.post("/v1/responses", json={"responses": updated})
    assert response.status_code == 200, response.text

    # Role changes and a removed contact link after the responses exist.
    for external_id in accounts[:8]:
        body = {"account_external_id": external_id, "role": rng.choice(ROLES)}
        assert (await api.put("/v1/contacts/ana@a.test", json=body)).status_code in (200, 201)
    await api.delete(f"/v1/contacts/di@d.test/accounts/{accounts[0]}")

    erased = await api.post("/v1/privacy/erase", json={"email": "BO@b.test"})
    assert erased.status_code == 200, erased.text


async def _tenant(app: FastAPI, tenant_id: uuid.UUID) -> Tenant:
    async with session_scope(app.state.sessionmaker) as session:
        tenant = await session.get(Tenant, tenant_id)
        assert tenant is not None
        session.expunge(tenant)
        return tenant


async def _rows(app: FastAPI, statement: Any) -> list[dict[str, Any]]:
    async with session_scope(app.state.sessionmaker) as session:
        return [dict(row) for row in (await session.execute(statement)).mappings().all()]


async def _assert_at_risk_pages_match(
    app: FastAPI, window: queries.ReportWindow, rule: queries.RollupRule
) -> None:
    """Compare the first and second at-risk pages of 2 rows in each revenue and score order,
    which the quarter state builds from the page's accounts only."""
    for column in ("revenue", "score"):
        for descending in (True, False):
            first_page = list_queries.ListOrder(column=column, descending=descending)
            expected = await _rows(app, list_queries.at_risk_statement(window, rule, first_page, 2))
            orders = [first_page]
            if expected:
                orders.append(
                    list_queries.ListOrder(
                        column=column,
                        descending=descending,
                        after_value=expected[0][column],
                        after_external_id=expected[0]["account_external_id"],
                    )
                )
            for order in orders:
                expected = await _rows(app, list_queries.at_risk_statement(window, rule, order, 2))
                statement = list_queries.at_risk_statement(window, rule, order, 2, from_state=True)
                actual = await _rows(app, statement)
                assert actual == expected, (rule.rollup, window.start, order)


async def _assert_reports_match(app: FastAPI, tenant_id: uuid.UUID, labels: list[str]) -> None:
    tenant = await _tenant(app, tenant_id)
    windows = []
    for label in labels:
        period = resolve_period(
            label,
            None,
            None,
            timezone=tenant.timezone,
            now=AS_OF,
            fiscal_year_start_month=tenant.fiscal_year_start_month,
        )
        windows.append(report_window(tenant, period))

    async with session_scope(app.state.sessionmaker) as session:
        assert await queries.quarter_state_applies(session, tenant_id, windows)

    tiers = tuple(
        queries.TierBand(label=tier["label"], min_revenue=Decimal(tier["min_revenue"]))
        for tier in tenant.revenue_tiers
    )
    segment_keys = [
        queries.SegmentKey(dimension="region"),
        queries.SegmentKey(dimension="industry"),
        queries.SegmentKey(dimension="owner"),
        queries.SegmentKey(dimension="attribute", attribute="plan"),
        queries.SegmentKey(dimension="tier", tiers=tiers),
    ]
    by_revenue = list_queries.ListOrder(column="revenue", descending=True)
    listed = 0
    for window in windows:
        plan = list_queries.survey_next_statement(window, Decimal("0.8"), by_revenue, None)
        expected = await _rows(app, plan)
        plan = list_queries.survey_next_statement(
            window, Decimal("0.8"), by_revenue, None, from_state=True
        )
        actual = await _rows(app, plan)
        assert actual == expected, window.start
    for rollup in Rollup:
        rule = rollup_rule(tenant, rollup)
        coverage_rows = []
        for window in windows:
            expected = await _rows(app, queries.coverage_statement(window, rule))
            coverage_rows.extend(expected)
            actual = await _rows(app, queries.coverage_statement(window, rule, from_state=True))
            assert actual == expected, (rollup, window.start)
            at_risk = list_queries.at_risk_statement(window, rule, by_revenue, None)
            expected = await _rows(app, at_risk)
            at_risk = list_queries.at_risk_statement(
                window, rule, by_revenue, None, from_state=True
            )
            actual = await _rows(app, at_risk)
            assert actual == expected, (rollup, window.start)
            listed += len(actual)
            await _assert_at_risk_pages_match(app, window, rule)
            for key in segment_keys:
                expected = await _rows(app, queries.segments_statement(window, rule, key))
                actual = await _rows(
                    app, queries.segments_statement(window, rule, key, from_state=True)
                )
                assert actual == expected, (rollup, window.start, key.dimension)
        expected = await _rows(app, queries.trend_statement(tenant_id, windows, rule))
        trend = queries.trend_statement(tenant_id, windows, rule, from_state=True)
        actual = await _rows(app, trend)
        assert actual == expected, rollup
        # Both trend statements read revenue the same way, so check it against each
        # period's own coverage statement too.
        periods = [{key: row[key] for key in row if key != "period_index"} for row in actual]
        assert periods == coverage_rows, rollup
    assert listed > 0


async def _state_rows(app: FastAPI, tenant_id: uuid.UUID) -> tuple[list[Any], list[Any]]:
    async with session_scope(app.state.sessionmaker) as session:
        accounts = await session.execute(
            text(
                "SELECT * FROM account_quarter_scores WHERE tenant_id = :tenant "
                "ORDER BY quarter_start, account_id"
            ),
            {"tenant": tenant_id},
        )
        respondents = await session.execute(
            text(
                "SELECT * FROM respondent_quarter_scores WHERE tenant_id = :tenant "
                "ORDER BY quarter_start, respondent"
            ),
            {"tenant": tenant_id},
        )
        return list(accounts.all()), list(respondents.all())


async def _rebuild(app: FastAPI, tenant_id: uuid.UUID) -> None:
    async with session_scope(app.state.sessionmaker) as session:
        await session.execute(
            text("SELECT revcov_rebuild_scores(ARRAY[CAST(:tenant AS uuid)])"),
            {"tenant": tenant_id},
        )


@pytest.mark.parametrize("seed", [3, 11])
async def test_state_reports_match_responses(app: FastAPI, seed: int) -> None:
    async with tenant_client(app, "state") as api:
        tenant_id = uuid.UUID((await api.get("/v1/tenant")).json()["id"])
        await _write_book(api, seed)
        await _assert_reports_match(app, tenant_id, QUARTERS)

    # Segments correct the state's sums for respondents of several accounts.
    async with session_scope(app.state.sessionmaker) as session:
        several = await session.scalar(
            text(
                "SELECT count(*) FROM respondent_quarter_scores "
                "WHERE tenant_id = :tenant AND accounts > 1"
            ),
            {"tenant": tenant_id},
        )
    assert several > 0


async def test_state_follows_quarter_grid_change(app: FastAPI) -> None:
    async with tenant_client(app, "grid") as api:
        tenant_id = uuid.UUID((await api.get("/v1/tenant")).json()["id"])
        await _write_book(api, 5)
        changed = await api.patch(
            "/v1/tenant", json={"timezone": "America/Santiago", "fiscal_year_start_month": 2}
        )
        assert changed.status_code == 200, changed.text
        await _assert_reports_match(app, tenant_id, FISCAL_QUARTERS)


async def test_incremental_state_equals_rebuild(app: FastAPI) -> None:
    async with tenant_client(app, "rebuild") as api:
        tenant_id = uuid.UUID((await api.get("/v1/tenant")).json()["id"])
        await _write_book(api, 17)
        incremental = await _state_rows(app, tenant_id)
        await _rebuild(app, tenant_id)
        rebuilt = await _state_rows(app, tenant_id)
    assert len(incremental[0]) > 50
    assert len(incremental[1]) > 50
    assert incremental[0] == rebuilt[0]
    assert incremental[1] == rebuilt[1]


async def test_state_not_used_for_merges_months_or_parents(app: FastAPI) -> None:
    async with tenant_client(app, "fallback") as api:
        tenant_id = uuid.UUID((await api.get("/v1/tenant")).json()["id"])
        await _write_book(api, 23)
        tenant = await _tenant(app, tenant_id)

        def window(label: str, level: Level = Level.ACCOUNT) -> queries.ReportWindow:
            period = resolve_period(label, None, None, timezone=tenant.timezone, now=AS_OF)
            return report_window(tenant, period, level)

        async with session_scope(app.state.sessionmaker) as session:
            assert await queries.quarter_state_applies(session, tenant_id, [window("2025-Q3")])
            month = [window("2025-08")]
            assert not await queries.quarter_state_applies(session, tenant_id, month)
            parent = [window("2025-Q3", Level.PARENT)]
            assert not await queries.quarter_state_applies(session, tenant_id, parent)

        merged = await api.post(
            "/v1/accounts/acct-01/merge",
            json={"into": "acct-02", "effective_at": "2025-08-01T00:00:00Z"},
        )
        assert merged.status_code == 200, merged.text
        async with session_scope(app.state.sessionmaker) as session:
            assert await queries.quarter_state_applies(session, tenant_id, [window("2025-Q2")])
            after_merge = [window("2025-Q3")]
            assert not await queries.quarter_state_applies(session, tenant_id, after_merge)
        # Before the merge took effect, the state still applies, with the moved responses
        # counted for the merged-away account.
        await _assert_reports_match(app, tenant_id, ["2025-Q1", "2025-Q2"])


async def test_concurrent_writers_keep_state_exact(app: FastAPI) -> None:
    async with tenant_client(app, "concurrent") as api:
        tenant_id = uuid.UUID((await api.get("/v1/tenant")).json()["id"])
        assert (await api.put("/v1/accounts/hot", json={"name": "hot"})).status_code == 201

        async def post(number: int) -> None:
            response = {
                "source": "typeform",
                "response_id": f"c{number}",
                "account_external_id": "hot",
                "email": f"person{number % 7}@hot.test",
                "score": number % 11,
                "submitted_at": f"2026-02-{1 + number % 28:02d}T10:00:00Z",
            }
            posted = await api.post("/v1/responses", json={"responses": [response]})
            assert posted.status_code == 200, posted.text

        await asyncio.gather(*(post(number) for number in range(40)))
        incremental = await _state_rows(app, tenant_id)
        await _rebuild(app, tenant_id)
        rebuilt = await _state_rows(app, tenant_id)
    assert incremental[0] == rebuilt[0]
    assert incremental[1] == rebuilt[1]
    assert incremental[0][0].respondents == 7


def _delivery(number: int, account: str, email: str, score: int, moment: str) -> dict[str, Any]:
    return {
        "source": "typeform",
        "response_id": f"race{number}",
        "account_external_id": account,
        "email": email,
        "score": score,
        "submitted_at": moment,
    }


async def _assert_state_exact(app: FastAPI, tenant_id: uuid.UUID) -> None:
    incremental = await _state_rows(app, tenant_id)
    await _rebuild(app, tenant_id)
    rebuilt = await _state_rows(app, tenant_id)
    assert incremental[0] == rebuilt[0]
    assert incremental[1] == rebuilt[1]


async def test_time_zone_change_during_writes(app: FastAPI) -> None:
    async with tenant_client(app, "zone-race") as api:
        tenant_id = uuid.UUID((await api.get("/v1/tenant")).json()["id"])
        assert (await api.put("/v1/accounts/zone", json={"name": "zone"})).status_code == 201

        async def post(number: int) -> None:
            # Late on the last day of a quarter in UTC, and in the next one at UTC+14.
            response = _delivery(number, "zone", f"z{number % 5}@z.test", number % 11, "")
            response["submitted_at"] = "2026-03-31T12:00:00Z"
            posted = await api.post("/v1/responses", json={"responses": [response]})
            assert posted.status_code == 200, posted.text

        async def flip() -> None:
            for zone in ["Pacific/Kiritimati", "UTC", "Pacific/Kiritimati", "UTC"]:
                changed = await api.patch("/v1/tenant", json={"timezone": zone})
                assert changed.status_code == 200, changed.text

        await asyncio.gather(flip(), *(post(number) for number in range(30)))
        await _assert_state_exact(app, tenant_id)


async def test_role_change_during_response(app: FastAPI) -> None:
    async with tenant_client(app, "role-race") as api:
        tenant_id = uuid.UUID((await api.get("/v1/tenant")).json()["id"])

        async def pair(number: int) -> None:
            account = f"role{number}"
            assert (await api.put(f"/v1/accounts/{account}", json={"name": account})).status_code
            first = _delivery(number, account, f"user{number}@r.test", 10, "2024-02-01T00:00:00Z")
            assert (await api.post("/v1/responses", json={"responses": [first]})).status_code == 200
            boss = f"boss{number}@r.test"
            late = _delivery(1000 + number, account, boss, 2, "2024-02-02T00:00:00Z")
            role = {"account_external_id": account, "role": "decision_maker"}
            linked, posted = await asyncio.gather(
                api.put(f"/v1/contacts/{boss}", json=role),
                api.post("/v1/responses", json={"responses": [late]}),
            )
            assert linked.status_code in (200, 201), linked.text
            assert posted.status_code == 200, posted.text

        await asyncio.gather(*(pair(number) for number in range(30)))
        await _assert_state_exact(app, tenant_id)


async def test_crossing_batches_do_not_deadlock(app: FastAPI) -> None:
    async with tenant_client(app, "batch-race") as api:
        tenant_id = uuid.UUID((await api.get("/v1/tenant")).json()["id"])
        for account in ("b1", "b2"):
            assert (await api.put(f"/v1/accounts/{account}", json={"name": account})).status_code
        moment = "2026-02-01T00:00:00Z"
        old = [
            _delivery(1, "b1", "o1@b.test", 5, moment),
            _delivery(2, "b2", "o2@b.test", 5, moment),
        ]
        assert (await api.post("/v1/responses", json={"responses": old})).status_code == 200

        async def batch(number: int) -> int:
            own = _delivery(100 + number, "b1" if number % 2 else "b2", "n@b.test", 7, moment)
            resent = dict(
                old[number % 2],
                score=number % 11,
                updated_at=f"2026-03-01T00:00:{number % 60:02d}Z",
            )
            posted = await api.post("/v1/responses", json={"responses": [own, resent]})
            return posted.status_code

        statuses = await asyncio.gather(*(batch(number) for number in range(40)))
        links = [
            api.put(f"/v1/contacts/c{number}@b.test", json={"account_external_id": "b1"})
            for number in range(10)
        ]
        linked, mixed = await asyncio.gather(
            asyncio.gather(*links), asyncio.gather(*(batch(100 + n) for n in range(10)))
        )
        await _assert_state_exact(app, tenant_id)
    assert set(statuses) == {200}
    assert set(mixed) == {200}
    assert {response.status_code for response in linked} <= {200, 201}


async def test_reports_during_time_zone_change(app: FastAPI) -> None:
    """A report that runs during a time-zone change returns the figures of one grid."""
    async with tenant_client(app, "zone-reports") as api:
        for number in range(12):
            account = f"edge{number}"
            assert (await api.put(f"/v1/accounts/{account}", json={"name": account})).status_code
            revenue = {
                "account_external_id": account,
                "amount": f"{1000 * (number + 1)}.00",
                "currency": "USD",
                "effective_at": "2025-06-01T00:00:00Z",
            }
            posted = await api.post("/v1/revenue-updates", json={"updates": [revenue]})
            assert posted.status_code == 200, posted.text
            # In 2026-Q1 in UTC, and in 2026-Q2 at UTC+14.
            late = _delivery(number, account, f"e{number}@z.test", number % 11, "")
            late["submitted_at"] = "2026-03-31T12:00:00Z"
            posted = await api.post("/v1/responses", json={"responses": [late]})
            assert posted.status_code == 200, posted.text

        zones = ["Pacific/Kiritimati", "UTC"]
        expected: dict[str, Any] = {}
        for zone in zones:
            assert (await api.patch("/v1/tenant", json={"timezone": zone})).status_code == 200
            report = await api.get("/v1/coverage", params={"period": "2026-Q1"})
            assert report.status_code == 200, report.text
            expected[report.json()["period"]["start"]] = report.json()
        assert len(expected) == 2

        async def flip() -> None:
            for zone in zones * 4:
                changed = await api.patch("/v1/tenant", json={"timezone": zone})
                assert changed.status_code == 200, changed.text

        async def read() -> list[Any]:
            answers = []
            for _ in range(6):
                report = await api.get("/v1/coverage", params={"period": "2026-Q1"})
                assert report.status_code == 200, report.text
                answers.append(report.json())
            return answers

        _, *readers = await asyncio.gather(flip(), *(read() for _ in range(8)))
    for answers in readers:
        for answer in answers:
            assert answer == expected[answer["period"]["start"]]
