"""`revcov demo`: fill a tenant with a generated B2B book through the HTTP API.

The book is generated before the first request, from one seeded random generator, so the
same seed and the same current quarter give the same data:

- Accounts: annual revenue follows a Pareto distribution from $15M with shape 1.16 (the
  80/20 rule), capped at $1B. This is the long tail of an enterprise B2B book: most
  accounts are near $15M-$50M and a few near $1B make up a large share of the revenue.
- Revenue: six quarters of history, the current quarter and the five before it. 80% of
  the accounts start in the oldest quarter and the rest are new logos. In each later
  quarter an account grows (x1.05-1.45) or shrinks (x0.75-0.97) with probability 0.3.
  7% of the accounts churn (amount 0).
- Responses: from 40% of the smallest to 75% of the largest accounts take part in the
  NPS survey, with 1-3 respondents each. Each respondent responds in each of the last
  four quarters with probability 0.6, while the account is a customer and up to now.
  Scores scatter (SD 1.4) around an account sentiment drawn from N(8.2, 1.8), which is
  0.4 higher per growth step and 2.5 lower for churned accounts. 4% of the responses skip
  the score. One response in about 50 comes from a trial account that is not in the CRM,
  so it stays unmatched. About 2% of the deliveries are sent twice, as Typeform does when
  it retries.

Responses arrive as signed Typeform `form_response` webhook deliveries, like the ones
Typeform posts, `concurrency` at a time.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import random
import re
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import product
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from app.errors import PROBLEM_MEDIA_TYPE
from app.periods import current_quarter_label
from app.reports.schemas import CoverageReport
from app.settings import Settings

DEFAULT_ACCOUNTS = 500
DEFAULT_CONCURRENCY = 12
HISTORY_QUARTERS = 6
SURVEYED_QUARTERS = 4
REVENUE_BATCH_SIZE = 1_000
REQUEST_TIMEOUT_SECONDS = 30.0

MIN_REVENUE = 15_000_000
MAX_REVENUE = 1_000_000_000
PARETO_SHAPE = 1.16
NEW_LOGO_SHARE = 0.2
CHANGE_PROBABILITY = 0.3
GROWTH_SHARE = 0.7
CHURN_PROBABILITY = 0.07
ANSWER_PROBABILITY = 0.6
RESPONDING_SHARE_SMALLEST = 0.40
RESPONDING_SHARE_LARGEST = 0.75
SENTIMENT_MEAN = 8.2
SENTIMENT_SD = 1.8
SCORE_SD = 1.4
SKIPPED_SCORE_PROBABILITY = 0.04
UNMATCHED_SHARE = 0.02
REDELIVERY_SHARE = 0.02

TYPEFORM_FORM_ID = "rCvDemo1"
BUCKET_NAMES = ("at_risk", "passive", "safe", "unaccounted")

_COMPANY_STEMS = (
    "Northwind", "Bluefin", "Granite", "Helix", "Juniper", "Kestrel", "Lumen", "Meridian",
    "Nimbus", "Orchard", "Pinnacle", "Quarry", "Redwood", "Saltmarsh", "Tidewater", "Umber",
    "Vantage", "Willow", "Yarrow", "Zenith", "Anchor", "Beacon", "Cobalt", "Driftwood",
    "Ember", "Fjord", "Glacier", "Harbor", "Ironbark", "Jasper",
)  # fmt: skip
_COMPANY_KINDS = (
    "Logistics", "Analytics", "Foods", "Health", "Systems", "Labs", "Freight", "Energy",
    "Robotics", "Insurance", "Media", "Biotech", "Retail", "Software", "Capital", "Materials",
    "Networks", "Pharma", "Mobility", "Textiles",
)  # fmt: skip
_REGIONS = {
    "North America": (45, ("Inc.", "Corp.", "LLC")),
    "EMEA": (30, ("GmbH", "Ltd", "SA", "BV", "AB")),
    "APAC": (17, ("Pty Ltd", "KK", "Pte Ltd")),
    "LATAM": (8, ("S.A.", "Ltda.")),
}
_INDUSTRIES = (
    "Manufacturing", "Financial services", "Healthcare", "Retail", "Logistics",
    "Software", "Energy", "Media", "Education", "Public sector",
)  # fmt: skip
_OWNERS = (
    "Priya Raman", "Marcus Feld", "Sofia Alvarez", "Kenji Watanabe",
    "Amara Okafor", "Lena Novak", "Tom Becker", "Chloé Martin",
)  # fmt: skip
_FIRST_NAMES = (
    "dana", "alex", "sam", "robin", "maria", "jonas", "aisha", "li", "noah", "emma",
    "omar", "julia", "ravi", "sara", "felix", "mei", "lucas", "nora", "ivan", "zoe",
)  # fmt: skip
_LAST_NAMES = (
    "kim", "meyer", "garcia", "chen", "smith", "rossi", "nguyen", "kowalski", "silva",
    "patel", "dubois", "larsen", "tanaka", "oconnor", "haddad", "jensen",
)  # fmt: skip
_COMMENTS = {
    "detractor": (
        "Support takes days to answer, and the last outage cost us a week.",
        "Pricing went up again while the features we asked for never came.",
        "The integration breaks every time our CRM changes a field.",
        "Onboarding stalled — we still run half the process in spreadsheets.",
    ),
    "passive": (
        "Does the job. Reporting could be faster.",
        "Good product, but the new UI moved everything around.",
        "Fine overall; we would like SSO on the standard plan.",
        "Solid, though renewals are more paperwork than they should be.",
    ),
    "promoter": (
        "Setup took ten minutes — support answered within the hour.",
        "Our account manager knows our business better than we do.",
        "It replaced three tools for us. The team loves it.",
        "Rock-solid for two years; the API is a pleasure to work with.",
    ),
}

T = TypeVar("T")


class DemoError(Exception):
    """A failure the demo reports as one message and a non-zero exit code."""


class ApiKeyRejectedError(DemoError):
    """The service rejected the demo tenant's API key with 401."""


# --- The generated book ---------------------------------------------------------------


@dataclass(frozen=True)
class DemoAccount:
    external_id: str
    name: str
    region: str
    industry: str
    owner: str
    domain: str
    segment: str
    seats: int


@dataclass(frozen=True)
class DemoBook:
    """Everything the demo sends, in sending order."""

    seed: int
    now: datetime
    current_quarter: str
    accounts: list[DemoAccount]
    revenue_batches: list[list[dict[str, str]]]
    deliveries: list[dict[str, Any]] = field(repr=False)

    @property
    def revenue_updates(self) -> int:
        return sum(len(batch) for batch in self.revenue_batches)

    def current_revenue(self) -> Decimal:
        """Sum the latest revenue amount of each account; churned accounts add 0."""
        latest: dict[str, tuple[str, Decimal]] = {}
        for batch in self.revenue_batches:
            for update in batch:
                account = update["account_external_id"]
                effective_at = update["effective_at"]
                if account not in latest or effective_at > latest[account][0]:
                    latest[account] = (effective_at, Decimal(update["amount"]))
        return sum((amount for _, amount in latest.values()), Decimal(0))


@dataclass(frozen=True)
class _Quarter:
    """A calendar quarter in UTC; `end` is exclusive, and `now` for the current quarter."""

    index: int
    start: datetime
    end: datetime


@dataclass
class _History:
    """One account's revenue records, start and churn dates, and the sentiment of its scores."""

    records: list[tuple[int, datetime, Decimal]]
    started_at: datetime
    churned_at: datetime | None
    sentiment: float


def _quarter_start(moment: datetime) -> datetime:
    return datetime(moment.year, 3 * ((moment.month - 1) // 3) + 1, 1, tzinfo=UTC)


def _shift_quarters(start: datetime, quarters: int) -> datetime:
    index = start.year * 4 + (start.month - 1) // 3 + quarters
    return datetime(index // 4, 3 * (index % 4) + 1, 1, tzinfo=UTC)


def _recent_quarters(now: datetime, count: int) -> list[_Quarter]:
    """Return the last `count` quarters up to now, oldest first."""
    current = _quarter_start(now)
    quarters = []
    for index in range(count):
        start = _shift_quarters(current, index - count + 1)
        end = min(_shift_quarters(start, 1), now)
        quarters.append(_Quarter(index=index, start=start, end=end))
    return quarters


def _random_moment(rng: random.Random, start: datetime, end: datetime) -> datetime:
    """Pick a moment in `[start, end)` at whole seconds, or `start` for a shorter span."""
    seconds = int((end - start).total_seconds())
    return start + timedelta(seconds=rng.randrange(max(1, seconds)))


def _random_day(rng: random.Random, quarter: _Quarter) -> datetime:
    """Pick midnight UTC of a day in the quarter, no later than its end (now, if current)."""
    days = (quarter.end - timedelta(microseconds=1) - quarter.start).days
    return quarter.start + timedelta(days=rng.randrange(days + 1)) if days >= 0 else quarter.start


def _cents(amount: float) -> Decimal:
    return Decimal(str(round(amount, 2))).quantize(Decimal("0.01"))


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _make_accounts(rng: random.Random, peak_revenue: Sequence[Decimal]) -> list[DemoAccount]:
    """Describe one account per entry of `peak_revenue`, its highest revenue in the history."""
    names = [f"{stem} {kind}" for stem, kind in product(_COMPANY_STEMS, _COMPANY_KINDS)]
    rng.shuffle(names)
    regions = list(_REGIONS)
    region_weights = [weight for weight, _ in _REGIONS.values()]

    accounts = []
    for number, revenue in enumerate(peak_revenue):
        base = names[number % len(names)]
        if number >= len(names):
            base = f"{base} {number // len(names) + 1}"
        region = rng.choices(regions, region_weights)[0]
        accounts.append(
            DemoAccount(
                external_id=f"DEMO-{number + 1:04d}",
                name=f"{base} {rng.choice(_REGIONS[region][1])}",
                region=region,
                industry=rng.choice(_INDUSTRIES),
                owner=rng.choice(_OWNERS),
                domain=f"{_slug(base)}.example",
                segment=_segment(revenue),
                seats=max(1, int(revenue / Decimal(rng.randint(400, 1_200)))),
            )
        )
    return accounts


def _opening_revenue(rng: random.Random) -> Decimal:
    amount = MIN_REVENUE * rng.paretovariate(PARETO_SHAPE)
    return _cents(min(amount, MAX_REVENUE))


def _segment(revenue: Decimal) -> str:
    if revenue >= 250_000_000:
        return "enterprise"
    if revenue >= 25_000_000:
        return "mid-market"
    return "smb"


def _make_history(rng: random.Random, quarters: list[_Quarter]) -> _History:
    """Generate one account's revenue records over `quarters`: a start, changes, maybe churn."""
    first = 0 if rng.random() >= NEW_LOGO_SHARE else rng.randrange(1, len(quarters))
    started_at = _random_day(rng, quarters[first])
    amount = _opening_revenue(rng)
    records = [(first, started_at, amount)]
    churn_quarter = None
    if first + 1 < len(quarters) and rng.random() < CHURN_PROBABILITY:
        churn_quarter = rng.randrange(first + 1, len(quarters))

    churned_at = None
    growth = 0
    for quarter in quarters[first + 1 :]:
        if quarter.index == churn_quarter:
            churned_at = _random_day(rng, quarter)
            records.append((quarter.index, churned_at, Decimal("0.00")))
            break
        if rng.random() >= CHANGE_PROBABILITY:
            continue
        grows = rng.random() < GROWTH_SHARE
        factor = rng.uniform(1.05, 1.45) if grows else rng.uniform(0.75, 0.97)
        # The random factor is cut to 4 decimals; the amount itself stays a Decimal.
        amount = (amount * Decimal(f"{factor:.4f}")).quantize(Decimal("0.01"))
        growth += 1 if grows else -1
        records.append((quarter.index, _random_day(rng, quarter), amount))

    sentiment = rng.gauss(SENTIMENT_MEAN, SENTIMENT_SD) + 0.4 * growth
    if churned_at is not None:
        sentiment -= 2.5
    return _History(
        records=records, started_at=started_at, churned_at=churned_at, sentiment=sentiment
    )


def _typeform_token(rng: random.Random) -> str:
    """Generate a 26-character Crockford base32 id, shaped like the recorded sample's ids."""
    return "".join(rng.choice("0123456789ABCDEFGHJKMNPQRSTVWXYZ") for _ in range(26))


def _nps_category(score: int) -> str:
    if score <= 6:
        return "detractor"
    if score <= 8:
        return "passive"
    return "promoter"


def _typeform_delivery(
    rng: random.Random,
    *,
    account_id: str,
    email: str | None,
    score: int | None,
    submitted_at: datetime,
) -> dict[str, Any]:
    """Build a Typeform `form_response` payload; a None score leaves out the NPS answer."""
    token = _typeform_token(rng)
    answers: list[dict[str, Any]] = []
    if score is not None:
        answers.append(
            {
                "type": "number",
                "number": score,
                "field": {"id": "Rk2vN8sQ4tWx", "type": "opinion_scale", "ref": "nps_score"},
            }
        )
        if rng.random() < 0.7:
            answers.append(
                {
                    "type": "text",
                    "text": rng.choice(_COMMENTS[_nps_category(score)]),
                    "field": {"id": "Hc5yJ1pZ7uBe", "type": "long_text", "ref": "nps_reason"},
                }
            )
    if email is not None:
        answers.append(
            {
                "type": "email",
                "email": email,
                "field": {"id": "Mf3gT6kD9rLa", "type": "email", "ref": "contact_email"},
            }
        )
    landed_at = submitted_at - timedelta(seconds=rng.randint(30, 600))
    return {
        "event_id": token,
        "event_type": "form_response",
        "form_response": {
            "form_id": TYPEFORM_FORM_ID,
            "token": token,
            "landed_at": landed_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "submitted_at": submitted_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "hidden": {"account_id": account_id},
            "definition": {
                "id": TYPEFORM_FORM_ID,
                "title": "Quarterly NPS",
                "fields": [
                    {"id": "Rk2vN8sQ4tWx", "ref": "nps_score", "type": "opinion_scale"},
                    {"id": "Hc5yJ1pZ7uBe", "ref": "nps_reason", "type": "long_text"},
                    {"id": "Mf3gT6kD9rLa", "ref": "contact_email", "type": "email"},
                ],
            },
            "answers": answers,
        },
    }


def _answer_score(rng: random.Random, sentiment: float) -> int | None:
    if rng.random() < SKIPPED_SCORE_PROBABILITY:
        return None
    return min(10, max(0, round(rng.gauss(sentiment, SCORE_SD))))


def _account_deliveries(
    rng: random.Random,
    account: DemoAccount,
    history: _History,
    quarters: Sequence[_Quarter],
) -> list[dict[str, Any]]:
    """Generate the survey answers of an account's respondents while it is a customer."""
    deliveries = []
    respondents = rng.choices((1, 2, 3), (55, 30, 15))[0]
    for _ in range(respondents):
        person = f"{rng.choice(_FIRST_NAMES)}.{rng.choice(_LAST_NAMES)}"
        email = f"{person}@{account.domain}" if rng.random() < 0.9 else None
        for quarter in quarters:
            start = max(quarter.start, history.started_at)
            end = min(quarter.end, history.churned_at or quarter.end)
            if end <= start or rng.random() >= ANSWER_PROBABILITY:
                continue
            deliveries.append(
                _typeform_delivery(
                    rng,
                    account_id=account.external_id,
                    email=email,
                    score=_answer_score(rng, history.sentiment),
                    submitted_at=_random_moment(rng, start, end),
                )
            )
    return deliveries


def _unmatched_deliveries(
    rng: random.Random, count: int, quarters: Sequence[_Quarter]
) -> list[dict[str, Any]]:
    """Responses from trial accounts that the CRM does not know, so they stay unmatched."""
    deliveries = []
    for number in range(count):
        quarter = rng.choice(quarters)
        deliveries.append(
            _typeform_delivery(
                rng,
                account_id=f"TRIAL-{number + 1:04d}",
                email=f"{rng.choice(_FIRST_NAMES)}@trial-{number + 1}.example",
                score=_answer_score(rng, 7.0),
                submitted_at=_random_moment(rng, quarter.start, quarter.end),
            )
        )
    return deliveries


def generate_book(accounts: int, *, seed: int, now: datetime) -> DemoBook:
    """Generate the demo data for `accounts` accounts, relative to the quarter of `now`."""
    if accounts < 1:
        raise ValueError(f"accounts must be at least 1, got {accounts}")
    rng = random.Random(seed)
    now = now.astimezone(UTC).replace(microsecond=0)
    quarters = _recent_quarters(now, HISTORY_QUARTERS)
    surveyed = quarters[-SURVEYED_QUARTERS:]

    histories = [_make_history(rng, quarters) for _ in range(accounts)]
    peak_revenue = [max(amount for _, _, amount in history.records) for history in histories]
    demo_accounts = _make_accounts(rng, peak_revenue)
    by_size = sorted(range(accounts), key=peak_revenue.__getitem__)
    size_rank = {index: rank / max(1, accounts - 1) for rank, index in enumerate(by_size)}

    batches: list[list[dict[str, str]]] = [[] for _ in quarters]
    deliveries: list[dict[str, Any]] = []
    for index, (account, history) in enumerate(zip(demo_accounts, histories, strict=True)):
        for quarter_index, effective_at, amount in history.records:
            batches[quarter_index].append(
                {
                    "account_external_id": account.external_id,
                    "account_name": account.name,
                    "amount": str(amount),
                    "currency": "USD",
                    "effective_at": effective_at.isoformat(),
                }
            )
        spread = RESPONDING_SHARE_LARGEST - RESPONDING_SHARE_SMALLEST
        if rng.random() < RESPONDING_SHARE_SMALLEST + spread * size_rank[index]:
            deliveries.extend(_account_deliveries(rng, account, history, surveyed))

    unmatched = max(1, round(len(deliveries) * UNMATCHED_SHARE))
    deliveries.extend(_unmatched_deliveries(rng, unmatched, surveyed))
    deliveries.sort(key=lambda payload: payload["form_response"]["submitted_at"])
    retried = rng.sample(deliveries, round(len(deliveries) * REDELIVERY_SHARE))

    revenue_batches = [
        batch[offset : offset + REVENUE_BATCH_SIZE]
        for batch in batches
        for offset in range(0, len(batch), REVENUE_BATCH_SIZE)
    ]
    return DemoBook(
        seed=seed,
        now=now,
        current_quarter=current_quarter_label(now),
        accounts=demo_accounts,
        revenue_batches=revenue_batches,
        deliveries=deliveries + retried,
    )


# --- Loading through the HTTP API -----------------------------------------------------


class LoadProgress(Protocol):
    """Receiver of the loader's progress: each stage starts with its total, then advances."""

    def start(self, stage: str, total: int) -> None: ...

    def advance(self, stage: str, amount: int = 1) -> None: ...


class _NoProgress:
    def start(self, stage: str, total: int) -> None:
        pass

    def advance(self, stage: str, amount: int = 1) -> None:
        pass


@dataclass(frozen=True)
class LoadResult:
    """Counts of the records the service stored from a book, and the current quarter's coverage."""

    accounts_created: int
    revenue_records: Counter[str]
    endpoint_id: str
    deliveries: Counter[str]
    coverage: CoverageReport
    seconds: float


def typeform_signature(secret: str, body: bytes) -> str:
    """Return the `Typeform-Signature` header value: `sha256=` and the base64 HMAC-SHA256."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


def _problem_detail(response: httpx.Response) -> str:
    """Return the `detail` of a problem+json body, else the first 200 characters of the body."""
    if response.headers.get("content-type", "").startswith(PROBLEM_MEDIA_TYPE):
        try:
            detail = response.json().get("detail")
        except (ValueError, AttributeError):
            detail = None
        if isinstance(detail, str):
            return detail
    return response.text[:200] or "(empty body)"


def _json_body(response: httpx.Response, action: str) -> Any:
    """Return the JSON body of a 2xx response; raise DemoError for any other status."""
    if not response.is_success:
        raise DemoError(
            f"{action} failed with HTTP {response.status_code}: {_problem_detail(response)}"
        )
    try:
        return response.json()
    except ValueError:
        raise DemoError(
            f"{action} returned a body that is not JSON: {response.text[:200]!r}"
        ) from None


async def _run_concurrently(
    items: Sequence[T], send: Callable[[T], Awaitable[None]], concurrency: int
) -> None:
    """Call `send` on every item, `concurrency` at a time; the first error cancels the rest."""
    pending = iter(items)

    async def worker() -> None:
        for item in pending:
            await send(item)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(concurrency, len(items))):
                group.create_task(worker())
    except ExceptionGroup as errors:
        raise errors.exceptions[0] from None


async def _check_api_key(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    response = await client.get("/v1/tenant", headers=auth)
    if response.status_code == 401:
        raise ApiKeyRejectedError(
            f"The service at {client.base_url} rejected the API key "
            f"(HTTP 401: {_problem_detail(response)})"
        )
    _json_body(response, "GET /v1/tenant")


async def _put_accounts(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    accounts: Sequence[DemoAccount],
    *,
    concurrency: int,
    progress: LoadProgress,
) -> int:
    """Create or replace each account with PUT; return how many were new."""
    created = 0

    async def put(account: DemoAccount) -> None:
        nonlocal created
        path = f"/v1/accounts/{account.external_id}"
        body = {
            "name": account.name,
            "region": account.region,
            "industry": account.industry,
            "owner": account.owner,
            "attributes": {
                "segment": account.segment,
                "seats": account.seats,
                "domain": account.domain,
            },
        }
        response = await client.put(path, json=body, headers=auth)
        _json_body(response, f"PUT {path}")
        created += response.status_code == 201
        progress.advance("accounts")

    progress.start("accounts", len(accounts))
    await _run_concurrently(accounts, put, concurrency)
    return created


async def _post_revenue_updates(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    batches: Sequence[Sequence[dict[str, str]]],
    *,
    progress: LoadProgress,
) -> Counter[str]:
    """Send the batches oldest first, one transaction each; return the summed record counts."""
    counts: Counter[str] = Counter()
    progress.start("revenue updates", sum(len(batch) for batch in batches))
    for batch in batches:
        response = await client.post(
            "/v1/revenue-updates", json={"updates": list(batch)}, headers=auth
        )
        result = _json_body(response, "POST /v1/revenue-updates")
        counts.update({name: result[name] for name in ("created", "updated", "unchanged")})
        progress.advance("revenue updates", len(batch))
    return counts


async def _create_typeform_endpoint(
    client: httpx.AsyncClient, auth: dict[str, str], secret: str
) -> str:
    response = await client.post(
        "/v1/webhook-endpoints", json={"source": "typeform", "secret": secret}, headers=auth
    )
    endpoint = _json_body(response, "POST /v1/webhook-endpoints")
    return str(endpoint["id"])


async def _post_deliveries(
    client: httpx.AsyncClient,
    endpoint_id: str,
    secret: str,
    deliveries: Sequence[dict[str, Any]],
    *,
    concurrency: int,
    progress: LoadProgress,
) -> Counter[str]:
    """Post each payload as a signed Typeform delivery; return the count of each ack status.

    The path is relative to the client's base URL, not the endpoint's public `url`, which
    REVCOV_PUBLIC_URL may point at a host this machine does not reach.
    """
    path = f"/v1/webhooks/{endpoint_id}"
    statuses: Counter[str] = Counter()

    async def post(payload: dict[str, Any]) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            "Typeform-Signature": typeform_signature(secret, body),
            "User-Agent": "revcov-demo",
        }
        response = await client.post(path, content=body, headers=headers)
        ack = _json_body(response, f"POST {path} (event {payload['event_id']})")
        statuses[str(ack["status"])] += 1
        progress.advance("Typeform deliveries")

    progress.start("Typeform deliveries", len(deliveries))
    await _run_concurrently(deliveries, post, concurrency)
    return statuses


async def _get_coverage(
    client: httpx.AsyncClient, auth: dict[str, str], period: str
) -> CoverageReport:
    response = await client.get("/v1/coverage", params={"period": period}, headers=auth)
    body = _json_body(response, f"GET /v1/coverage?period={period}")
    try:
        return CoverageReport.model_validate(body)
    except ValidationError as error:
        raise DemoError(f"GET /v1/coverage returned an unexpected body: {error}") from None


async def load_demo(
    client: httpx.AsyncClient,
    api_key: str,
    book: DemoBook,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: LoadProgress | None = None,
) -> LoadResult:
    """Send `book` to the service behind `client` as the tenant of `api_key`.

    Creates the accounts, their revenue history and a Typeform webhook endpoint, posts
    the survey responses to it, and returns what was stored with the coverage report of
    the book's current quarter. Raises ApiKeyRejectedError when the service rejects the key
    with 401, and DemoError when any other request fails.
    """
    progress = progress or _NoProgress()
    auth = {"Authorization": f"Bearer {api_key}"}
    secret = secrets.token_urlsafe(32)
    started = time.monotonic()
    try:
        await _check_api_key(client, auth)
        accounts_created = await _put_accounts(
            client, auth, book.accounts, concurrency=concurrency, progress=progress
        )
        revenue = await _post_revenue_updates(client, auth, book.revenue_batches, progress=progress)
        endpoint_id = await _create_typeform_endpoint(client, auth, secret)
        deliveries = await _post_deliveries(
            client,
            endpoint_id,
            secret,
            book.deliveries,
            concurrency=concurrency,
            progress=progress,
        )
        coverage = await _get_coverage(client, auth, book.current_quarter)
    except httpx.HTTPError as error:
        reason = str(error) or type(error).__name__
        raise DemoError(f"A request to {client.base_url} failed: {reason}") from None
    return LoadResult(
        accounts_created=accounts_created,
        revenue_records=revenue,
        endpoint_id=endpoint_id,
        deliveries=deliveries,
        coverage=coverage,
        seconds=time.monotonic() - started,
    )


# --- The printed report ---------------------------------------------------------------


def bucket_mismatches(report: CoverageReport) -> list[str]:
    """Compare the sum of the four buckets with the totals, exactly; one message per mismatch."""
    buckets = [getattr(report.buckets, name) for name in BUCKET_NAMES]
    revenue = sum((Decimal(bucket.revenue) for bucket in buckets), Decimal(0))
    accounts = sum(bucket.accounts for bucket in buckets)
    mismatches = []
    if revenue != Decimal(report.total_revenue):
        mismatches.append(
            f"the buckets' revenue adds up to {revenue}, not to the total {report.total_revenue}"
        )
    if accounts != report.accounts.total:
        mismatches.append(
            f"the buckets' accounts add up to {accounts}, not to the total {report.accounts.total}"
        )
    return mismatches


def _money(amount: str | Decimal) -> str:
    return f"{Decimal(amount):,.2f}"


def _percent(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio * 100:.1f}%"


def _nps(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f}"


def format_load_summary(book: DemoBook, result: LoadResult) -> str:
    revenue = result.revenue_records
    deliveries = result.deliveries
    statuses = ", ".join(f"{count:,} {status}" for status, count in sorted(deliveries.items()))
    return "\n".join(
        [
            f"Loaded in {result.seconds:.1f} s:",
            f"  accounts             {len(book.accounts):,} ({result.accounts_created:,} created)",
            f"  revenue updates      {book.revenue_updates:,} in {len(book.revenue_batches)} "
            f"batches ({revenue['created']:,} created, {revenue['updated']:,} updated, "
            f"{revenue['unchanged']:,} unchanged)",
            f"  Typeform deliveries  {len(book.deliveries):,} to webhook endpoint "
            f"{result.endpoint_id} ({statuses})",
        ]
    )


def format_coverage(report: CoverageReport) -> str:
    """Render a coverage report as aligned text, with the exact check of the bucket sums."""
    period = report.period
    target = "met" if report.meets_target else "not met"
    lines = [
        f"Coverage of {period.label} ({period.start.date()} to {period.end.date()}, "
        f"{period.timezone}), in {report.currency}",
        f"  total revenue    {_money(report.total_revenue):>18}   "
        f"{report.accounts.total:>5} accounts",
        f"  covered revenue  {_money(report.covered_revenue):>18}   "
        f"{report.accounts.covered:>5} accounts   coverage {_percent(report.coverage)} "
        f"(target {_percent(report.target)}, {target})",
        "",
        f"  {'bucket':<13}{'revenue':>20}{'share':>9}{'accounts':>10}",
    ]
    for name in BUCKET_NAMES:
        bucket = getattr(report.buckets, name)
        lines.append(
            f"  {name:<13}{_money(bucket.revenue):>20}{_percent(bucket.share):>9}"
            f"{bucket.accounts:>10}"
        )
    lines += [
        "",
        f"  NPS: respondents {_nps(report.nps.respondent)}, accounts "
        f"{_nps(report.nps.account)}, revenue-weighted {_nps(report.nps.revenue_weighted)}",
        f"  scored responses in the period: {report.responses.scored:,} "
        f"({report.responses.unmatched:,} not matched to an account)",
    ]
    mismatches = bucket_mismatches(report)
    if mismatches:
        lines.append(f"  CHECK FAILED: {'; '.join(mismatches)}.")
    else:
        lines.append(
            f"  Check passed: the four buckets add up exactly to the total revenue "
            f"({_money(report.total_revenue)}) and to the {report.accounts.total:,} accounts."
        )
    return "\n".join(lines)


def format_links(base_url: str, api_key: str, book: DemoBook) -> str:
    previous = current_quarter_label(_shift_quarters(_quarter_start(book.now), -1))
    return "\n".join(
        [
            "API docs",
            f"  Swagger UI  {base_url}/docs",
            f"  ReDoc       {base_url}/redoc",
            f"  OpenAPI     {base_url}/openapi.json",
            "",
            "Try another period:",
            f'  curl -H "Authorization: Bearer {api_key}" '
            f'"{base_url}/v1/coverage?period={previous}"',
        ]
    )


# --- The `revcov demo` command --------------------------------------------------------


class _BarProgress:
    """LoadProgress shown as rich progress bars, one per stage."""

    def __init__(self, bars: Progress) -> None:
        self._bars = bars
        self._tasks: dict[str, TaskID] = {}

    def start(self, stage: str, total: int) -> None:
        self._tasks[stage] = self._bars.add_task(stage, total=total)

    def advance(self, stage: str, amount: int = 1) -> None:
        self._bars.advance(self._tasks[stage], amount)


def _quiet_request_logs() -> None:
    # httpx logs every request at INFO, which would scroll the progress bars away.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def check_service(base_url: str) -> None:
    """Raise DemoError unless GET /readyz of the service at `base_url` returns 200."""
    _quiet_request_logs()
    try:
        response = httpx.get(f"{base_url}/readyz", timeout=10)
    except httpx.HTTPError as error:
        raise DemoError(
            f"No revcov service responds at {base_url} ({error}). Start one with `revcov serve` "
            "and the same REVCOV_* settings, or pass the URL of a running one with --url."
        ) from None
    if response.status_code != 200:
        raise DemoError(
            f"The service at {base_url} is not ready (GET /readyz returned "
            f"{response.status_code}: {response.text[:200]}); check its log and retry."
        )


def service_url(settings: Settings, url: str | None) -> str:
    """Return `url`, or else the URL that `revcov serve` listens on with `settings`."""
    if url is not None:
        return url.rstrip("/")
    host = settings.host
    if host in {"", "0.0.0.0", "::"}:
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def check_embedded_database(data_dir: Path) -> None:
    """Raise DemoError when `data_dir` contains no embedded database for `serve` to run on.

    Without this check, attaching to the database would start an empty server there.
    """
    # `start_embedded_postgres` keeps the server's files in `data_dir/pgdata`.
    if not (data_dir / "pgdata").is_dir():
        raise DemoError(
            f"There is no embedded database under {data_dir.resolve()}. Run `revcov demo` "
            "with the same REVCOV_DATA_DIR (or REVCOV_DATABASE_URL) as `revcov serve`, "
            "usually from the same directory."
        )


async def _load_with_progress_bars(base_url: str, api_key: str, book: DemoBook) -> LoadResult:
    _quiet_request_logs()
    columns = (
        TextColumn("{task.description:<20}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bars:
        async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT_SECONDS) as client:
            return await load_demo(client, api_key, book, progress=_BarProgress(bars))


def run_demo(
    base_url: str, *, tenant_id: str, api_key: str, accounts: int, seed: int | None
) -> None:
    """Load a generated book into the running service as the given tenant and print the report.

    Raises DemoError when loading fails or the buckets do not add up to the total.
    """
    typer.echo(f"Tenant demo created.\n  tenant id  {tenant_id}\n  API key    {api_key}")
    typer.echo("The key is shown only once; send it as `Authorization: Bearer <key>`.\n")

    seed = seed if seed is not None else secrets.randbelow(1_000_000)
    book = generate_book(accounts, seed=seed, now=datetime.now(UTC))
    typer.echo(
        f"Loading {len(book.accounts):,} accounts, {book.revenue_updates:,} revenue updates "
        f"and {len(book.deliveries):,} Typeform deliveries into {base_url} (--seed {seed}).",
    )
    try:
        result = asyncio.run(_load_with_progress_bars(base_url, api_key, book))
    except ApiKeyRejectedError as error:
        raise DemoError(
            f"{error}. It runs on another database than this command: run `revcov demo` "
            "with the same REVCOV_DATABASE_URL (or, for the embedded database, the same "
            "REVCOV_DATA_DIR) as `revcov serve`."
        ) from None

    typer.echo(format_load_summary(book, result) + "\n")
    typer.echo(format_coverage(result.coverage) + "\n")
    typer.echo(format_links(base_url, api_key, book))
    mismatches = bucket_mismatches(result.coverage)
    if mismatches:
        raise DemoError(f"The coverage report is inconsistent: {'; '.join(mismatches)}.")
