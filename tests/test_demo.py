from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.demo import (
    BUCKET_NAMES,
    ApiKeyRejectedError,
    DemoError,
    bucket_mismatches,
    format_coverage,
    generate_book,
    load_demo,
    typeform_signature,
)
from app.reports.schemas import CoverageReport
from tests.conftest import make_tenant

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"
FIXTURE_SIGNATURE = "sha256=VxlqKsgx7i0rmPMGw7PEdIed7C4W1w35I79aaX1RRNs="


def asgi_client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_opening_revenue_long_tailed(seed: int) -> None:
    book = generate_book(500, seed=seed, now=datetime.now(UTC))

    opening = sorted(
        (Decimal(update["amount"]) for update in book.revenue_batches[0]), reverse=True
    )
    top_tenth = sum(opening[: len(opening) // 10], Decimal(0))

    assert min(opening) >= Decimal(15_000_000)
    assert max(opening) <= Decimal(1_000_000_000)
    assert top_tenth > sum(opening, Decimal(0)) * Decimal("0.3")


def test_same_seed_same_book() -> None:
    now = datetime(2026, 5, 17, 12, 30, tzinfo=UTC)

    first = generate_book(50, seed=42, now=now)
    second = generate_book(50, seed=42, now=now)

    assert first == second
    assert first.deliveries == second.deliveries


def test_book_stays_in_the_past() -> None:
    now = datetime(2026, 4, 1, 0, 0, 30, tzinfo=UTC)

    book = generate_book(200, seed=7, now=now)

    effective = [update["effective_at"] for batch in book.revenue_batches for update in batch]
    submitted = [payload["form_response"]["submitted_at"] for payload in book.deliveries]
    assert max(effective) <= now.isoformat()
    assert max(submitted) <= "2026-04-01T00:00:30Z"
    assert book.current_quarter == "2026-Q2"


def test_typeform_signature_matches_recorded_sample() -> None:
    body = (FIXTURES / "typeform-form_response.json").read_bytes()

    assert typeform_signature("tf_test_secret_5d1c9a7e", body) == FIXTURE_SIGNATURE


async def test_demo_loads_consistent_coverage(app: FastAPI) -> None:
    _, api_key = await make_tenant(app, "demo")
    book = generate_book(40, seed=11, now=datetime.now(UTC))
    retried = len(book.deliveries) - len({p["event_id"] for p in book.deliveries})

    async with asgi_client(app) as client:
        result = await load_demo(client, api_key, book)
        stored = await client.get(
            "/v1/responses",
            params={"limit": 1000},
            headers={"Authorization": f"Bearer {api_key}"},
        )

    report = result.coverage
    assert result.accounts_created == 40
    assert result.revenue_records["created"] == book.revenue_updates
    assert result.deliveries["processed"] == len(book.deliveries) - retried
    assert result.deliveries["duplicate"] == retried
    assert report.period.label == book.current_quarter
    assert bucket_mismatches(report) == []
    assert Decimal(report.total_revenue) > 0
    assert report.coverage is not None
    assert 0 <= report.coverage <= 1
    assert report.responses.scored > 0
    assert stored.status_code == 200, stored.text
    assert len(stored.json()["items"]) == result.deliveries["processed"]
    assert "Check passed" in format_coverage(report)


def test_bucket_mismatch_detected() -> None:
    bucket = {"revenue": "100.00", "accounts": 1, "share": 0.25}
    report = CoverageReport.model_validate(
        {
            "period": {
                "label": "2026-Q1",
                "start": "2026-01-01T00:00:00Z",
                "end": "2026-04-01T00:00:00Z",
                "timezone": "UTC",
            },
            "currency": "USD",
            "rollup": "latest",
            "target": 0.8,
            "total_revenue": "400.01",
            "covered_revenue": "300.00",
            "coverage": 0.75,
            "meets_target": False,
            "buckets": dict.fromkeys(BUCKET_NAMES, bucket),
            "accounts": {"total": 5, "covered": 3},
            "responses": {"scored": 3, "unmatched": 0},
            "nps": {"respondent": 0.0, "account": 0.0, "revenue_weighted": 0.0},
        }
    )

    mismatches = bucket_mismatches(report)

    assert len(mismatches) == 2
    assert "400.00, not to the total 400.01" in mismatches[0]
    assert "4, not to the total 5" in mismatches[1]
    assert "CHECK FAILED" in format_coverage(report)


async def test_demo_rejected_api_key(app: FastAPI) -> None:
    book = generate_book(3, seed=1, now=datetime.now(UTC))

    async with asgi_client(app) as client:
        with pytest.raises(ApiKeyRejectedError, match="rejected the API key"):
            await load_demo(client, "rcv_not-a-key", book)


def refuse_connection(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


async def test_demo_unreachable_service_message() -> None:
    book = generate_book(3, seed=1, now=datetime.now(UTC))
    transport = httpx.MockTransport(refuse_connection)

    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:9") as client:
        with pytest.raises(DemoError, match="127.0.0.1:9 failed: connection refused"):
            await load_demo(client, "rcv_key", book)
