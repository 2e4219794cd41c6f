"""Webhook machinery shared by every platform: probes, failed deliveries and replay."""

import base64
import hashlib
import hmac
import json

import httpx
import pytest
from fastapi import FastAPI
from structlog.testing import capture_logs

from tests.webhook_samples import create_endpoint, load_sample, post_delivery

TYPEFORM = load_sample("typeform-form_response")
SECRET = TYPEFORM.signature["test_secret"]


def _typeform_signature(body: bytes, secret: str = SECRET) -> str:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


async def test_probe_head_and_get(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    endpoint = await create_endpoint(api, source="typeform", secret=SECRET)

    head = await client.head(f"/v1/webhooks/{endpoint['id']}")
    get = await client.get(f"/v1/webhooks/{endpoint['id']}")
    unknown = await client.head("/v1/webhooks/wh_unknown")

    assert head.status_code == 200
    assert get.status_code == 200
    assert unknown.status_code == 404


async def test_failed_delivery_listed_and_replayed(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint = await create_endpoint(
        api, source="typeform", secret=SECRET, score_field="no_such_ref"
    )
    payload = json.loads(TYPEFORM.body)
    payload["form_response"]["submitted_at"] = "yesterday"
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "Typeform-Signature": _typeform_signature(body)}

    ack = await post_delivery(client, endpoint["id"], body, headers)
    failed = await api.get("/v1/webhook-deliveries", params={"status": "failed"})
    delivery_id = ack.json()["delivery_id"]

    assert ack.status_code == 200
    assert ack.json()["status"] == "failed"
    assert [item["id"] for item in failed.json()["items"]] == [delivery_id]
    assert "submitted_at" in failed.json()["items"][0]["error"]
    assert failed.json()["items"][0]["event_type"] == "form_response"

    replayed = await api.post(f"/v1/webhook-deliveries/{delivery_id}/replay")

    assert replayed.status_code == 200
    assert replayed.json()["status"] == "failed"


async def test_replay_after_mapping_fix(api: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    endpoint = await create_endpoint(api, source="typeform", secret=SECRET, account_field="nope")
    payload = json.loads(TYPEFORM.body)
    payload["form_response"]["answers"][0]["number"] = 11
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "Typeform-Signature": _typeform_signature(body)}
    ack = await post_delivery(client, endpoint["id"], body, headers)
    delivery_id = ack.json()["delivery_id"]
    assert ack.json()["status"] == "failed"

    patched = await api.patch(
        f"/v1/webhook-endpoints/{endpoint['id']}", json={"score_field": "nps_reason"}
    )
    replayed = await api.post(f"/v1/webhook-deliveries/{delivery_id}/replay")
    stored = await api.get(f"/v1/responses/typeform/{payload['form_response']['token']}")

    assert patched.status_code == 200
    assert replayed.json()["status"] == "processed"
    assert stored.status_code == 200
    assert stored.json()["score"] is None


async def test_replay_after_score_field_fix(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    # The replay maps the same version of the response again, now with a score.
    endpoint = await create_endpoint(
        api, source="typeform", secret=SECRET, score_field="nps_reason"
    )
    ack = await post_delivery(client, endpoint["id"], TYPEFORM.body, TYPEFORM.headers)
    path = f"/v1/responses/typeform/{TYPEFORM.expected['response_id']}"
    unscored = await api.get(path)

    await api.patch(f"/v1/webhook-endpoints/{endpoint['id']}", json={"score_field": "nps_score"})
    replayed = await api.post(f"/v1/webhook-deliveries/{ack.json()['delivery_id']}/replay")
    stored = await api.get(path)

    assert ack.json()["status"] == "processed"
    assert unscored.json()["score"] is None
    assert replayed.json()["status"] == "processed"
    assert stored.json()["score"] == TYPEFORM.expected["score"]


async def test_rotated_secrets_both_accepted(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    old, new = "old-secret-0123456789", "new-secret-0123456789"
    endpoint = await create_endpoint(api, source="typeform", secrets=[old, new])
    payload = json.loads(TYPEFORM.body)

    results = []
    for number, secret in enumerate((old, new, "other-secret-012345")):
        payload["event_id"] = f"evt-{number}"
        body = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "Typeform-Signature": _typeform_signature(body, secret),
        }
        results.append((await post_delivery(client, endpoint["id"], body, headers)).status_code)

    assert results == [200, 200, 401]


async def test_other_tenant_cannot_replay(
    api: httpx.AsyncClient, client: httpx.AsyncClient, app: object
) -> None:
    endpoint = await create_endpoint(api, source="typeform", secret=SECRET)
    ack = await post_delivery(client, endpoint["id"], TYPEFORM.body, TYPEFORM.headers)
    delivery_id = ack.json()["delivery_id"]

    from tests.conftest import make_tenant

    _, other_key = await make_tenant(app)  # type: ignore[arg-type]
    other = {"Authorization": f"Bearer {other_key}"}
    replay = await client.post(f"/v1/webhook-deliveries/{delivery_id}/replay", headers=other)
    read = await client.get(f"/v1/webhook-deliveries/{delivery_id}", headers=other)
    endpoint_read = await client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=other)

    assert replay.status_code == 404
    assert read.status_code == 404
    assert endpoint_read.status_code == 404


async def test_generated_secret_fits_scheme(api: httpx.AsyncClient) -> None:
    standard = await create_endpoint(api, source="standard-webhooks")
    typeform = await create_endpoint(api, source="typeform")

    assert standard["secret"].startswith("whsec_")
    assert base64.b64decode(standard["secret"].removeprefix("whsec_"))
    assert not typeform["secret"].startswith("whsec_")


def _signed(payload: dict[str, object] | str) -> tuple[bytes, dict[str, str]]:
    body = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
    return body, {
        "Content-Type": "application/json",
        "Typeform-Signature": _typeform_signature(body),
    }


async def test_unstorable_text_fails_not_500(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint = await create_endpoint(api, source="typeform", secret=SECRET)
    variants = []
    for field, value in (("event_id", "evt\u0000"), ("event_type", "form_\u0000response")):
        payload = json.loads(TYPEFORM.body)
        payload[field] = value
        variants.append(payload)
    for path, value in (
        (("token",), "tok\u0000en"),
        (("token",), "\udfff"),
        (("hidden", "account_id"), "A\u0000"),
    ):
        payload = json.loads(TYPEFORM.body)
        payload["event_id"] = f"evt-{len(variants)}"
        target = payload["form_response"]
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        variants.append(payload)

    statuses = []
    for payload in variants:
        body, headers = _signed(payload)
        statuses.append((await post_delivery(client, endpoint["id"], body, headers)).status_code)

    assert statuses == [200] * len(variants)


async def test_deep_nesting_fails_not_500(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint = await create_endpoint(api, source="typeform", secret=SECRET)
    body, headers = _signed('{"event_id": "deep", "x": ' + "[" * 5000 + "]" * 5000 + "}")

    ack = await post_delivery(client, endpoint["id"], body, headers)

    assert ack.status_code == 200
    assert ack.json()["status"] == "failed"


async def test_erased_delivery_not_replayed(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint = await create_endpoint(api, source="typeform", secret=SECRET)
    ack = await post_delivery(client, endpoint["id"], TYPEFORM.body, TYPEFORM.headers)
    erased = await api.post("/v1/privacy/erase", json={"email": TYPEFORM.expected["email"]})

    replay = await api.post(f"/v1/webhook-deliveries/{ack.json()['delivery_id']}/replay")

    assert erased.status_code == 200, erased.text
    assert replay.status_code == 409
    assert "erased" in replay.json()["detail"]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000",
        "http://localhost",
        "http://api.localhost",
        "http://10.0.0.5",
        "http://192.168.1.1",
        "http://169.254.169.254",
        "http://[::1]:8080",
        "http://localhost.",
        "http://api.localhost.",
        "http://[::7f00:1]",
        "http://[64:ff9b::a00:1]",
    ],
)
async def test_private_api_host_rejected(api: httpx.AsyncClient, app: FastAPI, url: str) -> None:
    settings = app.state.settings
    app.state.settings = settings.model_copy(update={"webhook_fetch_allow_private_hosts": False})
    try:
        created = await api.post(
            "/v1/webhook-endpoints",
            json={"source": "qualtrics", "api_base_url": url, "api_token": "token-123"},
        )
        public = await api.post(
            "/v1/webhook-endpoints",
            json={
                "source": "qualtrics",
                "api_base_url": "https://yul1.qualtrics.com",
                "api_token": "token-123",
            },
        )
    finally:
        app.state.settings = settings

    assert created.status_code == 422
    assert "private" in created.json()["detail"]
    assert public.status_code == 201, public.text


@pytest.mark.parametrize(
    "url",
    ["https://user:secret-pass@yul1.qualtrics.com", "https://token@yul1.qualtrics.com"],
)
async def test_api_base_url_credentials_rejected(api: httpx.AsyncClient, url: str) -> None:
    created = await api.post(
        "/v1/webhook-endpoints",
        json={"source": "qualtrics", "api_base_url": url, "api_token": "token-123"},
    )
    public = await api.post(
        "/v1/webhook-endpoints",
        json={"source": "qualtrics", "api_base_url": "https://yul1.qualtrics.com"},
    )
    updated = await api.patch(
        f"/v1/webhook-endpoints/{public.json()['id']}", json={"api_base_url": url}
    )

    for response in (created, updated):
        assert response.status_code == 422, response.text
        assert "user name or password" in response.json()["detail"]
        assert "secret-pass" not in response.text
        assert "token@" not in response.text
    listed = await api.get("/v1/webhook-endpoints")
    assert "@" not in listed.text


@pytest.mark.parametrize(
    "url", ["https://" + "a" * 70 + ".qualtrics.com", "https://yul1..qualtrics.com"]
)
async def test_api_base_url_invalid_host_rejected(api: httpx.AsyncClient, url: str) -> None:
    created = await api.post(
        "/v1/webhook-endpoints",
        json={"source": "qualtrics", "api_base_url": url, "api_token": "token-123"},
    )

    assert created.status_code == 422, created.text
    assert created.json()["errors"] == [
        {"location": "body.api_base_url", "message": "invalid host name"}
    ]


async def test_unknown_endpoint_ids_not_logged(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    # The random part is a webhook URL's only secret for platforms that sign nothing.
    unknown = "wh_" + "ab" * 16 + "_" + "cd" * 16
    with capture_logs() as logs:
        read = await api.get(f"/v1/webhook-endpoints/{unknown}")
        delivered = await client.post(f"/v1/webhooks/{unknown}", content=b"{}")
        to_email = await client.post("/v1/webhooks/frank@example.com", content=b"{}")

    assert [read.status_code, delivered.status_code, to_email.status_code] == [404, 404, 404]
    assert "cd" * 16 not in repr(logs)
    assert "frank" not in repr(logs)


async def test_long_number_failure_reads_plainly(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    endpoint = await create_endpoint(api, source="typeform", secret=SECRET)
    text = TYPEFORM.body.decode()
    body = text.replace('"event_id"', '"n": ' + "9" * 5000 + ', "event_id"', 1).encode()
    headers = {"Content-Type": "application/json", "Typeform-Signature": _typeform_signature(body)}

    ack = await post_delivery(client, endpoint["id"], body, headers)

    assert ack.json()["status"] == "failed"
    assert "a number of 5000 digits" in ack.json()["detail"]
    assert "set_int_max_str_digits" not in ack.text
