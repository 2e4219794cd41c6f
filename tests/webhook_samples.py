"""Recorded webhook samples: load a platform's body, headers and expected extraction, and
post them to an endpoint of the service exactly as the platform sent them."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

SAMPLES = Path(__file__).parent / "fixtures" / "webhooks"


@dataclass(frozen=True)
class Sample:
    name: str
    body: bytes
    headers: dict[str, str]
    meta: dict[str, Any]

    @property
    def expected(self) -> dict[str, Any]:
        expected: dict[str, Any] = self.meta["expected"]
        return expected

    @property
    def signature(self) -> dict[str, Any]:
        signature: dict[str, Any] = self.meta.get("signature") or {}
        return signature


def load_sample(name: str) -> Sample:
    """Load `<name>.meta.json` and its body; for a raw HTTP message, the bytes after the
    blank line. The signature header, when it is only in the sidecar, is added."""
    meta = json.loads((SAMPLES / f"{name}.meta.json").read_text())
    raw = (SAMPLES / meta["body_file"]).read_bytes()
    body = raw.split(b"\r\n\r\n", 1)[1] if meta.get("body_is_http_message") else raw
    headers = dict(meta.get("headers", {}))
    signature = meta.get("signature") or {}
    header = (signature.get("header") or "").split(" ")[0]
    if header and header.lower() not in {key.lower() for key in headers}:
        headers[header] = signature["value"]
    return Sample(name=name, body=body, headers=headers, meta=meta)


async def create_endpoint(api: httpx.AsyncClient, **settings: Any) -> dict[str, Any]:
    response = await api.post("/v1/webhook-endpoints", json=settings)
    assert response.status_code == 201, response.text
    endpoint: dict[str, Any] = response.json()
    return endpoint


async def post_delivery(
    client: httpx.AsyncClient,
    endpoint_id: str,
    body: bytes,
    headers: dict[str, str],
    *,
    query: str = "",
) -> httpx.Response:
    url = f"/v1/webhooks/{endpoint_id}" + (f"?{query}" if query else "")
    return await client.post(url, content=body, headers=headers)


async def stored_response(api: httpx.AsyncClient, source: str, response_id: str) -> dict[str, Any]:
    response = await api.get(f"/v1/responses/{source}/{response_id}")
    assert response.status_code == 200, response.text
    stored: dict[str, Any] = response.json()
    return stored
