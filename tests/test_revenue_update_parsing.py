"""Validating a batch of revenue updates straight from its bytes, against the exact path.

`parse_revenue_update_batch` may return None for any body, and the route then validates
the JSON document as every other route does. When it returns a batch, that batch must
equal the one the exact path builds, down to each amount's decimal text.
"""

import json
from typing import Any

import pytest
from pydantic import ValidationError

from app.accounts.schemas import RevenueUpdateBatch, parse_revenue_update_batch
from app.routing import load_json


def update(**fields: Any) -> dict[str, Any]:
    return {
        "account_external_id": "ACME",
        "amount": "1250.50",
        "currency": "USD",
        "effective_at": "2026-01-01T00:00:00Z",
        **fields,
    }


def body_of(*updates: dict[str, Any]) -> bytes:
    return json.dumps({"updates": list(updates)}).encode()


def exact_batch(body: bytes) -> RevenueUpdateBatch | None:
    """Return the batch that the JSON document path accepts, or None when it rejects it."""
    try:
        return RevenueUpdateBatch.model_validate(load_json(body))
    except (ValueError, ValidationError):  # JSONDecodeError is a ValueError.
        return None


def amounts(batch: RevenueUpdateBatch) -> list[str]:
    return [str(item.amount) for item in batch.updates]


# Bodies that the fast path reads itself.
FAST_BODIES = {
    "plain": body_of(update(), update(account_external_id="GLOBEX", account_name="Globex")),
    "trailing zero kept": body_of(update(amount="17.10")),
    "negative zero": body_of(update(amount="-0")),
    "offset and fraction": body_of(update(effective_at="2026-03-31T23:59:59.123456+05:30")),
    "non-ASCII escape": body_of(update(account_name="Société Générale")),
    "surrogate pair escape": body_of(update(account_name="Rocket \U0001f680")),
    "non-ASCII raw": json.dumps(
        {"updates": [update(account_name="Zürich AG")]}, ensure_ascii=False
    ).encode(),
}

# Bodies left to the exact path: numbers it reads differently, escapes that could hide
# a key or a NUL, encodings it does not read, and invalid batches.
EXACT_BODIES = {
    "number amount": b'{"updates": ['
    + json.dumps(update()).encode().replace(b'"1250.50"', b"90071992547409.93")
    + b"]}",
    "number amount with spaces": (
        b'{"updates": [{"account_external_id": "A", "amount" :  17.08, '
        b'"currency": "USD", "effective_at": "2026-01-01T00:00:00Z"}]}'
    ),
    "escaped amount key": (
        b'{"updates": [{"account_external_id": "A", "\\u0061mount": 17.08, '
        b'"currency": "USD", "effective_at": "2026-01-01T00:00:00Z"}]}'
    ),
    "NUL escape": body_of(update(account_external_id="A\x00B")),
    "lone surrogate": (
        b'{"updates": [{"account_external_id": "A\\ud800", "amount": "1", '
        b'"currency": "USD", "effective_at": "2026-01-01T00:00:00Z"}]}'
    ),
    "invalid UTF-8": body_of(update()).replace(b'"ACME"', b'"AC\xffME"'),
    "byte order mark": b"\xef\xbb\xbf" + body_of(update()),
    "UTF-16": json.dumps({"updates": [update()]}).encode("utf-16"),
    "unknown currency": body_of(update(currency="XXX")),
    "too many decimals": body_of(update(amount="1.001")),
    "before 1970 in UTC": body_of(update(effective_at="1970-01-01T00:30:00+01:00")),
    "after 9998 in UTC": body_of(update(effective_at="9998-12-31T23:00:00-02:00")),
    "digits as timestamp": body_of(update(effective_at="1767225600")),
    "number as timestamp": b'{"updates": ['
    + json.dumps(update()).encode().replace(b'"2026-01-01T00:00:00Z"', b"1767225600")
    + b"]}",
    "naive timestamp": body_of(update(effective_at="2026-01-01T00:00:00")),
    "slash in id": body_of(update(account_external_id="A/B")),
    "unknown field": body_of(update(note="x")),
    "repeated account key": (
        b'{"updates": [{"account_external_id": "A", "account_external_id": "B", '
        b'"amount": "1", "currency": "USD", "effective_at": "2026-01-01T00:00:00Z"}]}'
    ),
    "repeated amount key": (
        b'{"updates": [{"account_external_id": "A", "amount": "-5", "amount": "10.00", '
        b'"currency": "USD", "effective_at": "2026-01-01T00:00:00Z"}]}'
    ),
    "repeated updates key": body_of(update()).replace(b"{", b'{"updates": [], ', 1),
    "empty batch": body_of(),
    "not JSON": b'{"updates": [',
}


@pytest.mark.parametrize("body", FAST_BODIES.values(), ids=FAST_BODIES.keys())
def test_fast_batch_equals_exact(body: bytes) -> None:
    fast = parse_revenue_update_batch(body)
    exact = exact_batch(body)

    assert fast is not None
    assert exact is not None
    assert fast == exact
    assert amounts(fast) == amounts(exact)


@pytest.mark.parametrize("body", EXACT_BODIES.values(), ids=EXACT_BODIES.keys())
def test_exact_path_bodies_left_alone(body: bytes) -> None:
    assert parse_revenue_update_batch(body) is None


def test_number_amount_exact_on_json_path() -> None:
    batch = exact_batch(EXACT_BODIES["number amount"])

    assert batch is not None
    assert amounts(batch) == ["90071992547409.93"]
