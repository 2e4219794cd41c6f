"""A seeded book of accounts, revenue history and responses over 2025-2026 for report tests.

The same book loads into one tenant whole, or into a tenant of its own per segment, so a
test can compare the segments and trend reports with `/v1/coverage` run on each part.
"""

import random
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import event

from tests.conftest import make_tenant

QUARTERS = [f"{year}-Q{quarter}" for year in (2025, 2026) for quarter in (1, 2, 3, 4)]
REGIONS = ["EMEA", "AMER", "APAC", None, "  "]
AMOUNTS = [
    "5000000.00",
    "20000000.00",
    "24999999.99",
    "30000000.00",
    "120000000.50",
    "300000000.00",
]
EMAILS = ["ana@a.test", "Bo@b.test", "cy@c.test", "di@d.test", "ed@e.test", None]
START = datetime(2024, 12, 1, tzinfo=UTC)
SPAN_DAYS = 760


@dataclass
class Book:
    """Accounts (external id to PUT body), revenue updates and native responses."""

    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    revenue_updates: list[dict[str, Any]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)

    def restricted(self, keep: Callable[[dict[str, Any]], bool]) -> "Book":
        """Return the accounts for which `keep(body)` is true, their revenue and responses."""
        accounts = {key: body for key, body in self.accounts.items() if keep(body)}
        return Book(
            accounts=accounts,
            revenue_updates=[
                row for row in self.revenue_updates if row["account_external_id"] in accounts
            ],
            responses=[row for row in self.responses if row["account_external_id"] in accounts],
        )


def _instant(rng: random.Random) -> str:
    moment = START + timedelta(seconds=rng.randrange(SPAN_DAYS * 86400))
    return moment.isoformat()


def build_book(seed: int = 7) -> Book:
    """Build a book with every hard case the reports meet.

    It has accounts without a region (absent and blank), revenue that changes, drops to
    0 and returns, an account without any revenue record, respondents with responses for
    accounts in several regions, skipped scores, unmatched responses and responses at
    the first instant of a quarter.
    """
    rng = random.Random(seed)
    book = Book()
    for index in range(16):
        external_id = f"A{index:02d}"
        region = REGIONS[index % len(REGIONS)]
        book.accounts[external_id] = {
            "name": external_id,
            "region": region,
            "industry": rng.choice(["saas", "retail", None]),
            "owner": rng.choice(["kim", "lee"]),
            "attributes": {"plan": rng.choice(["gold", "silver"])} if index % 3 else {},
        }
        book.revenue_updates.append(
            {
                "account_external_id": external_id,
                "amount": rng.choice(AMOUNTS),
                "currency": "USD",
                "effective_at": START.isoformat(),
            }
        )
        for _ in range(rng.randrange(4)):
            amount = "0.00" if rng.random() < 0.2 else rng.choice(AMOUNTS)
            book.revenue_updates.append(
                {
                    "account_external_id": external_id,
                    "amount": amount,
                    "currency": "USD",
                    "effective_at": _instant(rng),
                }
            )
    book.accounts["A99"] = {"name": "A99", "region": "LATAM", "attributes": {}}

    targets = [*book.accounts, "GHOST"]
    for number in range(220):
        response: dict[str, Any] = {
            "source": "test",
            "response_id": f"r{number:03d}",
            "account_external_id": rng.choice(targets),
            "email": rng.choice(EMAILS),
            "score": None if rng.random() < 0.05 else rng.randrange(11),
            "submitted_at": _instant(rng),
        }
        book.responses.append(response)
    for number, quarter_start in enumerate(["2025-04-01", "2026-01-01", "2026-07-01"]):
        book.responses.append(
            {
                "source": "test",
                "response_id": f"edge{number}",
                "account_external_id": f"A{number:02d}",
                "email": "edge@e.test",
                "score": 10,
                "submitted_at": f"{quarter_start}T00:00:00Z",
            }
        )
    return book


async def load_book(api: httpx.AsyncClient, book: Book) -> None:
    for external_id, body in book.accounts.items():
        response = await api.put(f"/v1/accounts/{external_id}", json=body)
        assert response.status_code in (200, 201), response.text
    if book.revenue_updates:
        response = await api.post("/v1/revenue-updates", json={"updates": book.revenue_updates})
        assert response.status_code == 200, response.text
    if book.responses:
        response = await api.post("/v1/responses", json={"responses": book.responses})
        assert response.status_code == 200, response.text


@asynccontextmanager
async def tenant_client(app: FastAPI, name: str = "part") -> AsyncIterator[httpx.AsyncClient]:
    """Yield a client authenticated as a new tenant."""
    _, key = await make_tenant(app, name)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://testserver",
        headers={"Authorization": f"Bearer {key}"},
    ) as client:
        yield client


async def get_json(api: httpx.AsyncClient, url: str, params: dict[str, Any]) -> Any:
    response = await api.get(url, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def without_segment(report: dict[str, Any]) -> dict[str, Any]:
    """Return a segment's report without the keys that name the segment."""
    return {key: value for key, value in report.items() if key not in {"segment", "unassigned"}}


@contextmanager
def report_statements(app: FastAPI) -> Iterator[list[str]]:
    """Collect the report statements the app runs in the block.

    Every report statement has the `account_buckets` CTE, or `bucket_codes` for a trend
    read from the quarter state, and no other statement has either, so the webhook
    fetcher's background queries are left out.
    """
    statements: list[str] = []

    def record(
        connection: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        if "account_buckets" in statement or "bucket_codes" in statement:
            statements.append(statement)

    engine = app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)
