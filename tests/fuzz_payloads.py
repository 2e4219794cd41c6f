"""Hypothesis strategies for webhook fuzzing: random bytes, byte-level mutations of the
recorded samples, and structural mutations (JSON values, form fields, multipart parts) of
them, plus a signer per platform that signs a mutated body with the sample's test secret.

The recorded fixture files are only read; every mutation works on a copy in memory.
"""

import base64
import email.parser
import email.policy
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from hypothesis import strategies as st

from app.webhooks.adapters import standard_webhooks
from tests.webhook_samples import Sample, load_sample

Headers = dict[str, str]
Signer = Callable[[bytes, Headers, str, datetime], tuple[bytes, Headers]]


def _without(headers: Headers, name: str) -> Headers:
    return {key: value for key, value in headers.items() if key.lower() != name}


def _header_signer(name: str, prefix: str, algorithm: Any, encoding: str) -> Signer:
    def sign(body: bytes, headers: Headers, secret: str, _: datetime) -> tuple[bytes, Headers]:
        digest = hmac.new(secret.encode(), body, algorithm).digest()
        text = base64.b64encode(digest).decode() if encoding == "base64" else digest.hex()
        return body, {**_without(headers, name), name: prefix + text}

    return sign


def _sign_standard_webhook(
    body: bytes, headers: Headers, secret: str, received_at: datetime
) -> tuple[bytes, Headers]:
    key = standard_webhooks.secret_key(secret)
    assert key is not None
    message_id = headers.get("webhook-id", "msg_fuzz")
    timestamp = str(int(received_at.timestamp()))
    signature = standard_webhooks.sign(key, message_id, timestamp, body)
    signed = _without(_without(headers, "webhook-timestamp"), "webhook-signature")
    return body, {**signed, "webhook-timestamp": timestamp, "webhook-signature": "v1," + signature}


def _sign_qualtrics(
    body: bytes, headers: Headers, secret: str, _: datetime
) -> tuple[bytes, Headers]:
    """Replace the HMAC form field with the signature of the MSG field. A body without
    exactly one readable MSG field stays as it is, and fails verification."""
    try:
        fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        return body, headers
    messages = [value for name, value in fields if name == "MSG"]
    if len(messages) != 1:
        return body, headers
    signature = hmac.new(secret.encode(), messages[0].encode(), hashlib.sha512).hexdigest()
    fields = [(name, value) for name, value in fields if name != "HMAC"] + [("HMAC", signature)]
    return urlencode(fields).encode(), headers


def _unsigned(
    body: bytes, headers: Headers, secret: str, received_at: datetime
) -> tuple[bytes, Headers]:
    return body, headers


@dataclass(frozen=True)
class Target:
    """One adapter, the recorded sample it is fuzzed from, and how to sign a body for it."""

    source: str
    sample: Sample
    secret: str | None
    sign: Signer
    # How the body is structured, which picks the structural mutation.
    shape: str
    # Endpoint settings the sample needs to map to a response.
    mapping: dict[str, str]

    @property
    def url_token(self) -> str | None:
        """The `?token=` of platforms that sign nothing, from the sample's metadata."""
        token = self.sample.meta.get("authentication", {}).get("test_url_token")
        return None if token is None else str(token)


def _test_secret(sample: Sample) -> str | None:
    secret = sample.signature.get("test_secret")
    if isinstance(secret, dict):
        return str(secret["hmac_key"])
    return None if secret is None else str(secret)


def _target(
    source: str,
    name: str,
    sign: Signer,
    shape: str = "json",
    mapping: dict[str, str] | None = None,
) -> Target:
    sample = load_sample(name)
    secret = _test_secret(sample)
    return Target(source, sample, secret, sign, shape, mapping or {})


TARGETS = [
    _target(
        "typeform",
        "typeform-form_response",
        _header_signer("typeform-signature", "sha256=", hashlib.sha256, "base64"),
    ),
    _target(
        "delighted",
        "delighted-survey_response",
        _header_signer("x-delighted-webhook-signature", "sha256=", hashlib.sha256, "hex"),
    ),
    _target("standard-webhooks", "standardwebhooks-spec_example", _sign_standard_webhook),
    _target(
        "formbricks",
        "formbricks-responseFinished",
        _sign_standard_webhook,
        mapping={"score_field": "nps_q", "comment_field": "nps_reason"},
    ),
    _target(
        "wootric",
        "wootric-response_created",
        _header_signer("x-wootric-signature", "sha1=", hashlib.sha1, "hex"),
        shape="form",
    ),
    _target("jotform", "jotform-submission", _unsigned, shape="multipart"),
    _target(
        "tally",
        "tally-form_response",
        _header_signer("tally-signature", "", hashlib.sha256, "base64"),
    ),
    _target(
        "survicate",
        "survicate-question_answered",
        _header_signer("hmac", "", hashlib.sha256, "hex"),
    ),
    _target("qualtrics", "qualtrics-completedResponse", _sign_qualtrics, shape="form"),
    _target(
        "surveymonkey",
        "surveymonkey-response_completed",
        _header_signer("sm-signature", "", hashlib.sha1, "base64"),
    ),
    _target("satismeter", "satismeter-completed", _unsigned),
]


# Values -------------------------------------------------------------------------------

# Strings that parsers of scores, ids, e-mails and timestamps tend to trip over.
TRICKY_STRINGS = [
    "",
    " ",
    "\x00",
    "\ud800",
    "0",
    "9",
    "10",
    "11",
    "-1",
    "9.5",
    "1e400",
    "NaN",
    "Infinity",
    "null",
    "true",
    "[]",
    "{}",
    "2026-02-30T00:00:00Z",
    "2026-03-12T09:15:47",
    "9999-12-31T23:59:59+14:00",
    "0001-01-01T00:00:00-01:00",
    "1" * 30,
    "99999999999999999999",
    "a@b",
    "x" * 600,
    "\u202e\ufeff",
]

TRICKY_NUMBERS = [0, 10, -1, 11, 2**63, -(2**63), 10**30, 1e308, -0.0, 0.5, 9.999999]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(TRICKY_NUMBERS)
    | st.text(max_size=20)
    | st.sampled_from(TRICKY_STRINGS)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)
form_values = st.text(max_size=30) | st.sampled_from(TRICKY_STRINGS)


# Mutations ----------------------------------------------------------------------------


@st.composite
def byte_mutations(draw: st.DrawFn, body: bytes) -> bytes:
    """Flip, delete, insert, repeat or cut bytes of `body` a few times."""
    data = bytearray(body)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["flip", "delete", "insert", "repeat", "truncate"]))
        if kind == "flip" and position < len(data):
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "delete":
            del data[position : position + draw(st.integers(1, 16))]
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "repeat":
            data[position:position] = data[position : position + draw(st.integers(1, 64))]
        elif kind == "truncate":
            del data[position:]
    return bytes(data)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            paths.extend(_paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            paths.extend(_paths(child, (*prefix, index)))
    return paths


@st.composite
def json_mutations(draw: st.DrawFn, document: Any) -> Any:
    """Replace, delete or wrap a few values anywhere in a copy of `document`."""
    document = json.loads(json.dumps(document))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(document)))
        if not path:
            document = draw(json_values)
            continue
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1]
        kind = draw(st.sampled_from(["replace", "delete", "wrap", "stringify"]))
        if kind == "replace":
            parent[last] = draw(json_values)
        elif kind == "delete":
            del parent[last]
        elif kind == "wrap":
            parent[last] = draw(st.sampled_from([[parent[last]], {"value": parent[last]}]))
        else:
            parent[last] = json.dumps(parent[last])
    return document


def dump_json(document: Any, ascii_only: bool) -> bytes:
    return json.dumps(document, ensure_ascii=ascii_only).encode("utf-8", errors="surrogatepass")


@st.composite
def json_body_mutations(draw: st.DrawFn, body: bytes) -> bytes:
    document = draw(json_mutations(json.loads(body)))
    return dump_json(document, draw(st.booleans()))


@st.composite
def form_mutations(draw: st.DrawFn, body: bytes) -> bytes:
    """Replace, drop or repeat form fields; a field that holds JSON (Qualtrics' MSG) gets
    its JSON mutated instead, half of the time."""
    fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    for _ in range(draw(st.integers(1, 3))):
        if not fields:
            fields.append((draw(form_values), draw(form_values)))
            continue
        index = draw(st.integers(0, len(fields) - 1))
        name, value = fields[index]
        kind = draw(st.sampled_from(["replace", "drop", "repeat", "json"]))
        if kind == "replace":
            fields[index] = (name, draw(form_values))
        elif kind == "drop":
            del fields[index]
        elif kind == "repeat":
            fields.insert(index, (name, draw(form_values)))
        else:
            try:
                document = json.loads(value)
            except ValueError:
                continue
            mutated = draw(json_mutations(document))
            fields[index] = (name, json.dumps(mutated, ensure_ascii=draw(st.booleans())))
    return urlencode(fields, errors="surrogatepass").encode()


def _multipart_parts(sample: Sample) -> list[tuple[str, bytes]]:
    content_type = sample.headers["Content-Type"].encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type + b"\r\n\r\n" + sample.body
    )
    parts = []
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        parts.append((str(part.get_param("name", header="content-disposition")), payload))
    return parts


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogatepass")


def multipart_body(parts: list[tuple[str, bytes]], boundary: str) -> bytes:
    chunks = []
    for name, payload in parts:
        disposition = f'Content-Disposition: form-data; name="{name}"'.encode()
        chunks.append(b"--" + boundary.encode() + b"\r\n" + disposition + b"\r\n\r\n" + payload)
    return b"\r\n".join(chunks) + b"\r\n--" + boundary.encode() + b"--\r\n"


@st.composite
def multipart_mutations(draw: st.DrawFn, sample: Sample) -> bytes:
    """Replace, drop or repeat parts; the JSON part (Jotform's rawRequest) gets its JSON
    mutated instead, half of the time."""
    parts = _multipart_parts(sample)
    boundary = sample.headers["Content-Type"].split("boundary=", 1)[1]
    for _ in range(draw(st.integers(1, 3))):
        index = draw(st.integers(0, len(parts) - 1))
        name, payload = parts[index]
        kind = draw(st.sampled_from(["replace", "drop", "repeat", "json"]))
        if kind == "replace":
            parts[index] = (name, draw(st.binary(max_size=40) | form_values.map(_utf8)))
        elif kind == "drop" and len(parts) > 1:
            del parts[index]
        elif kind == "repeat":
            parts.insert(index, (name, _utf8(draw(form_values))))
        elif kind == "json":
            try:
                document = json.loads(payload)
            except ValueError:
                continue
            parts[index] = (name, dump_json(draw(json_mutations(document)), draw(st.booleans())))
    return multipart_body(parts, boundary)


def payloads(target: Target) -> st.SearchStrategy[bytes]:
    """Bodies for `target`: random bytes, byte mutations and structural mutations of its
    recorded sample, and the sample itself."""
    body = target.sample.body
    structural: st.SearchStrategy[bytes]
    if target.shape == "json":
        structural = json_body_mutations(body)
    elif target.shape == "form":
        structural = form_mutations(body)
    else:
        structural = multipart_mutations(target.sample)
    return st.one_of(
        st.just(body),
        st.binary(max_size=512),
        byte_mutations(body),
        structural,
        structural,
    )


def delivery_headers(target: Target) -> Headers:
    """The sample's headers with lower-case names, as the service passes them to adapters."""
    return {name.lower(): value for name, value in target.sample.headers.items()}
