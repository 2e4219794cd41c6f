"""Properties of ingestion and reports, checked with Hypothesis through the HTTP API.

Each example writes into new tenants, so examples never see each other's rows.
"""

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.webhooks.adapters import standard_webhooks
from tests.conftest import make_tenant
from tests.helpers import client_with_key

PROPERTY_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
PERIOD = "2026-Q1"
PERIOD_START = datetime(2026, 1, 1, tzinfo=UTC)
ACCOUNTS = ["ACC-1", "ACC-2", "ACC-3"]

amounts = st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False).map(str)


# Revenue updates ----------------------------------------------------------------------


@st.composite
def revenue_updates(draw: st.DrawFn) -> list[dict[str, str]]:
    """Revenue records with distinct `effective_at` per account; some are sent twice."""
    updates = []
    for account in draw(st.lists(st.sampled_from(ACCOUNTS), min_size=1, max_size=3, unique=True)):
        days = draw(st.lists(st.integers(-200, 200), min_size=1, max_size=5, unique=True))
        for day in days:
            moment = PERIOD_START + timedelta(days=day, hours=draw(st.integers(0, 23)))
            updates.append(
                {
                    "account_external_id": account,
                    "amount": draw(amounts),
                    "currency": "USD",
                    "effective_at": moment.isoformat(),
                }
            )
    repeats = draw(st.lists(st.sampled_from(updates), max_size=3))
    return updates + repeats


def account_state(account: dict[str, Any]) -> dict[str, Any]:
    """The revenue part of an account, without the times it was written."""
    return {"revenue": account["revenue"], "revenue_history": account["revenue_history"]}


async def revenue_after(app: FastAPI, updates: list[dict[str, str]]) -> dict[str, Any]:
    """Send `updates` one per request to a new tenant; return each account's revenue and
    the period's total revenue."""
    _, key = await make_tenant(app, "property")
    async with client_with_key(app, key) as api:
        for update in updates:
            sent = await api.post("/v1/revenue-updates", json={"updates": [update]})
            assert sent.status_code == 200, sent.text
        state: dict[str, Any] = {}
        for account in sorted({update["account_external_id"] for update in updates}):
            read = await api.get(f"/v1/accounts/{account}")
            assert read.status_code == 200, read.text
            state[account] = account_state(read.json())
        coverage = await api.get("/v1/coverage", params={"period": PERIOD})
        assert coverage.status_code == 200, coverage.text
        state["total_revenue"] = coverage.json()["total_revenue"]
    return state


@PROPERTY_SETTINGS
@given(updates=revenue_updates(), data=st.data())
async def test_revenue_order_irrelevant(
    app: FastAPI, updates: list[dict[str, str]], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(updates), label="order")

    in_order = await revenue_after(app, sorted(updates, key=lambda update: update["effective_at"]))
    any_order = await revenue_after(app, shuffled)

    assert any_order == in_order


# Webhook deliveries -------------------------------------------------------------------

SECRET = standard_webhooks.generate_secret()


# Text that PostgreSQL can store. A NUL or a lone surrogate makes the delivery `failed`,
# which the webhook tests cover, and is not what the ordering property is about.
STORABLE_CHARACTERS = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))


@st.composite
def response_events(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Standard Webhooks events for a few responses, several versions each, with distinct
    event timestamps (the version) per response."""
    events = []
    for response_id in draw(st.lists(st.sampled_from("abcd"), min_size=1, max_size=4, unique=True)):
        seconds = draw(st.lists(st.integers(0, 80 * 86400), min_size=1, max_size=3, unique=True))
        for second in seconds:
            score = draw(st.none() | st.integers(0, 10))
            data: dict[str, Any] = {
                "id": f"resp-{response_id}",
                "comment": draw(st.none() | st.text(STORABLE_CHARACTERS, max_size=20)),
                "account_id": draw(st.sampled_from(ACCOUNTS)),
            }
            if score is not None:
                data["score"] = score
            moment = PERIOD_START + timedelta(seconds=second)
            events.append(
                {
                    "message_id": f"msg-{uuid.uuid4().hex}",
                    "body": {
                        "type": "survey_response.completed",
                        "timestamp": moment.isoformat().replace("+00:00", "Z"),
                        "data": data,
                    },
                }
            )
    return events


def signed_delivery(event: dict[str, Any], now: datetime) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event["body"]).encode()
    key = standard_webhooks.secret_key(SECRET)
    assert key is not None
    timestamp = str(int(now.timestamp()))
    signature = standard_webhooks.sign(key, event["message_id"], timestamp, body)
    headers = {
        "content-type": "application/json",
        "webhook-id": event["message_id"],
        "webhook-timestamp": timestamp,
        "webhook-signature": f"v1,{signature}",
    }
    return body, headers


def stored_state(response: dict[str, Any]) -> dict[str, Any]:
    """A stored response without the time it arrived."""
    return {name: value for name, value in response.items() if name != "received_at"}


async def responses_after(app: FastAPI, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Deliver `events` in order to a new tenant's endpoint; return its stored responses."""
    _, key = await make_tenant(app, "property")
    now = datetime.now(UTC)
    async with client_with_key(app, key) as api:
        endpoint = await api.post(
            "/v1/webhook-endpoints", json={"source": "standard-webhooks", "secret": SECRET}
        )
        assert endpoint.status_code == 201, endpoint.text
        for event in events:
            body, headers = signed_delivery(event, now)
            url = f"/v1/webhooks/{endpoint.json()['id']}"
            delivered = await api.post(url, content=body, headers=headers)
            assert delivered.status_code == 200, delivered.text
            assert delivered.json()["status"] in {"processed", "duplicate"}, delivered.text
        listed = await api.get("/v1/responses", params={"limit": 1000})
        assert listed.status_code == 200, listed.text
    items = [stored_state(item) for item in listed.json()["items"]]
    return sorted(items, key=lambda item: item["response_id"])


@PROPERTY_SETTINGS
@given(events=response_events(), data=st.data())
async def test_deliveries_order_irrelevant(
    app: FastAPI, events: list[dict[str, Any]], data: st.DataObject
) -> None:
    # Retries repeat a delivery with its webhook-id, so duplicates are the same events.
    retries = data.draw(st.lists(st.sampled_from(events), max_size=4), label="retries")
    shuffled = data.draw(st.permutations(events + retries), label="order")

    once = await responses_after(app, events)
    duplicated_and_shuffled = await responses_after(app, shuffled)

    assert duplicated_and_shuffled == once
    assert len(once) == len({event["body"]["data"]["id"] for event in events})


# Coverage buckets ---------------------------------------------------------------------

BUCKETS = ("at_risk", "passive", "safe", "unaccounted")


@st.composite
def tenant_data(draw: st.DrawFn) -> tuple[dict[str, str], list[dict[str, Any]], str]:
    """Accounts with amounts (0 is churn), scored or skipped responses inside and outside
    the period, some for accounts that do not exist, and a roll-up rule."""
    accounts = {
        f"ACC-{number}": draw(amounts | st.just("0")) for number in range(draw(st.integers(0, 6)))
    }
    responses = []
    for number in range(draw(st.integers(0, 10))):
        responses.append(
            {
                "source": "property",
                "response_id": f"r-{number}",
                "account_external_id": draw(st.sampled_from([*accounts, "NO-SUCH"])),
                "email": draw(st.sampled_from(["a@x.example", "b@x.example", None])),
                "score": draw(st.none() | st.integers(0, 10)),
                "submitted_at": (
                    PERIOD_START + timedelta(days=draw(st.integers(-20, 100)))
                ).isoformat(),
            }
        )
    rollup = draw(st.sampled_from(["latest", "average", "lowest", "account_nps"]))
    return accounts, responses, rollup


@PROPERTY_SETTINGS
@given(data=tenant_data())
async def test_buckets_add_up_to_total(
    app: FastAPI, data: tuple[dict[str, str], list[dict[str, Any]], str]
) -> None:
    accounts, responses, rollup = data
    _, key = await make_tenant(app, "property")

    async with client_with_key(app, key) as api:
        for external_id, amount in accounts.items():
            revenue = {"amount": amount, "currency": "USD", "effective_at": "2025-12-01T00:00:00Z"}
            put = await api.put(f"/v1/accounts/{external_id}", json={"revenue": revenue})
            assert put.status_code == 201, put.text
        if responses:
            posted = await api.post("/v1/responses", json={"responses": responses})
            assert posted.status_code == 200, posted.text
        read = await api.get("/v1/coverage", params={"period": PERIOD, "rollup": rollup})
    assert read.status_code == 200, read.text
    report = read.json()

    total = Decimal(report["total_revenue"])
    covered = Decimal(report["covered_revenue"])
    buckets = report["buckets"]
    assert sum(Decimal(buckets[name]["revenue"]) for name in BUCKETS) == total
    assert sum(buckets[name]["accounts"] for name in BUCKETS) == report["accounts"]["total"]
    assert sum(Decimal(buckets[name]["revenue"]) for name in BUCKETS[:3]) == covered
    assert total == sum(Decimal(amount) for amount in accounts.values())
    assert report["accounts"]["total"] == sum(1 for amount in accounts.values() if Decimal(amount))
    if total == 0:
        assert report["coverage"] is None
    else:
        # `coverage` is rounded to 4 decimal places.
        assert abs(Decimal(str(report["coverage"])) - covered / total) <= Decimal("0.00005")
