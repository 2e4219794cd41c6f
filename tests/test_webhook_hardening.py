"""Payloads that once crashed an adapter or slipped past erasure."""

import base64
import copy
import hashlib
import hmac
import json

import httpx
import pytest

from tests.webhook_samples import create_endpoint, load_sample, post_delivery

TALLY = load_sample("tally-form_response")
TYPEFORM = load_sample("typeform-form_response")
JOTFORM = load_sample("jotform-submission")


def _tally_signed(payload: dict[str, object]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    secret = TALLY.signature["test_secret"].encode()
    signature = base64.b64encode(hmac.new(secret, body, hashlib.sha256).digest()).decode()
    return body, {"Content-Type": "application/json", "Tally-Signature": signature}


def _typeform_signed(body: bytes) -> dict[str, str]:
    secret = TYPEFORM.signature["test_secret"].encode()
    digest = base64.b64encode(hmac.new(secret, body, hashlib.sha256).digest()).decode()
    return {"Content-Type": "application/json", "Typeform-Signature": f"sha256={digest}"}


@pytest.mark.parametrize(
    ("path", "value"),
    [("value", [{}]), ("value", [[1]]), ("label", []), ("label", [{}]), ("label", {"a": 1})],
)
async def test_tally_odd_field_shapes(
    api: httpx.AsyncClient, client: httpx.AsyncClient, path: str, value: object
) -> None:
    endpoint = await create_endpoint(api, source="tally", secret=TALLY.signature["test_secret"])
    payload = copy.deepcopy(json.loads(TALLY.body))
    for field in payload["data"]["fields"]:
        field[path] = value

    body, headers = _tally_signed(payload)
    ack = await post_delivery(client, endpoint["id"], body, headers)

    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] in {"failed", "processed"}


async def test_erasure_finds_encoded_emails(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint = await create_endpoint(
        api, source="typeform", secret=TYPEFORM.signature["test_secret"]
    )
    mentions = [
        '"Pat.Doe%2Bnps%40Victim.example"',
        '"pat.doe+nps\\u0040victim.example"',
        '"mailto%3Apat.doe%2Bnps%40victim.example"',
    ]
    for number, mention in enumerate(mentions):
        payload = json.loads(TYPEFORM.body)
        payload["event_id"] = f"mention-{number}"
        payload["form_response"]["token"] = f"mention-{number}"
        text = json.dumps(payload)[:-1] + f', "note": {mention}}}'
        body = text.encode()
        ack = await post_delivery(client, endpoint["id"], body, _typeform_signed(body))
        assert ack.status_code == 200, ack.text

    erased = await api.post("/v1/privacy/erase", json={"email": "pat.doe+nps@victim.example"})

    assert erased.status_code == 200, erased.text
    assert erased.json()["webhook_deliveries"] == len(mentions)


@pytest.mark.parametrize("score", ["1e-400", "1E-1000000", "9.9999999999999999999"])
async def test_jotform_score_not_rounded(
    api: httpx.AsyncClient, client: httpx.AsyncClient, score: str
) -> None:
    endpoint = await create_endpoint(api, source="jotform")
    marker = b'"q4_howLikely":"8"'
    assert marker in JOTFORM.body
    body = JOTFORM.body.replace(marker, b'"q4_howLikely":' + score.encode())

    ack = await post_delivery(client, endpoint["id"], body, JOTFORM.headers)

    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] == "failed"
    assert "score" in ack.json()["detail"]


@pytest.mark.parametrize(
    ("score", "reason"),
    [
        ("1e99999999999999999999", "a number with an exponent too large to read"),
        ("9" * 5000, "a number of 5000 digits is longer than"),
    ],
)
async def test_jotform_unreadable_number_fails(
    api: httpx.AsyncClient, client: httpx.AsyncClient, score: str, reason: str
) -> None:
    endpoint = await create_endpoint(api, source="jotform")
    marker = b'"q4_howLikely":"8"'
    body = JOTFORM.body.replace(marker, b'"q4_howLikely":' + score.encode())

    ack = await post_delivery(client, endpoint["id"], body, JOTFORM.headers)

    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] == "failed"
    assert reason in ack.json()["detail"]
    assert "set_int_max_str_digits" not in ack.json()["detail"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32-le"])
async def test_utf16_webhook_body_rejected(
    api: httpx.AsyncClient, client: httpx.AsyncClient, encoding: str
) -> None:
    endpoint = await create_endpoint(
        api, source="typeform", secret=TYPEFORM.signature["test_secret"]
    )
    body = TYPEFORM.body.decode().encode(encoding)

    rejected = await post_delivery(client, endpoint["id"], body, _typeform_signed(body))
    deliveries = await api.get("/v1/webhook-deliveries", params={"endpoint_id": endpoint["id"]})

    problem = rejected.json()
    assert rejected.status_code == 422, rejected.text
    assert "contains a NUL byte" in problem["detail"]
    assert deliveries.json()["items"] == []
