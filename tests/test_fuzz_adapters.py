"""Fuzz every adapter's parser with random bytes and mutated recorded payloads.

An adapter may reject input only with InvalidSignatureError (verify) or MappingError
(map, fetch). Any other exception is a parser fault, and `delivery_key` never raises.
"""

import asyncio
import json
from datetime import UTC, datetime
from typing import cast
from urllib.parse import parse_qsl

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.responses.schemas import ResponseIn
from app.webhooks.adapters import ADAPTERS
from app.webhooks.adapters.base import (
    EndpointConfig,
    FetchingAdapter,
    InboundDelivery,
    MappedDelivery,
)
from app.webhooks.errors import InvalidSignatureError, MappingError
from tests.fuzz_payloads import TARGETS, Target, delivery_headers, json_mutations, payloads
from tests.test_adapter_surveymonkey import survey_details
from tests.thin_payloads import load_api_body
from tests.webhook_samples import load_sample

RECEIVED_AT = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
API_BASE_URL = "https://api.example.test"

FUZZ_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def endpoint_config(target: Target) -> EndpointConfig:
    adapter = ADAPTERS[target.source]
    return EndpointConfig(
        source=target.source,
        secrets=(target.secret,) if target.secret else (),
        token=target.url_token,
        account_field=adapter.default_account_field,
        api_base_url=API_BASE_URL,
        api_token="fuzz-api-token",
        score_field=target.mapping.get("score_field"),
        comment_field=target.mapping.get("comment_field"),
    )


def signed_delivery(target: Target, body: bytes) -> tuple[InboundDelivery, bool]:
    """Sign `body` for the target. The flag is True when the signature can be valid."""
    headers = delivery_headers(target)
    if target.secret is not None:
        body, headers = target.sign(body, headers, target.secret, RECEIVED_AT)
    query = {} if target.url_token is None else {"token": target.url_token}
    delivery = InboundDelivery(body=body, headers=headers, received_at=RECEIVED_AT, query=query)
    return delivery, target.source != "qualtrics" or _has_one_message(body)


def _has_one_message(body: bytes) -> bool:
    # A Qualtrics body carries its signature of the MSG field, so it needs exactly one.
    try:
        fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        return False
    return [name for name, _ in fields].count("MSG") == 1


def test_every_adapter_fuzzed() -> None:
    assert {target.source for target in TARGETS} == set(ADAPTERS)


def test_every_adapter_authenticated() -> None:
    # Each sample is fuzzed with its signing secret or, for unsigned platforms, its token.
    unauthenticated = [
        target.source for target in TARGETS if target.secret is None and target.url_token is None
    ]

    assert unauthenticated == []


@pytest.mark.parametrize("target", TARGETS, ids=lambda target: target.source)
@FUZZ_SETTINGS
@given(data=st.data())
def test_parser_raises_only_rejections(target: Target, data: st.DataObject) -> None:
    adapter = ADAPTERS[target.source]
    config = endpoint_config(target)
    body = data.draw(payloads(target), label="body")
    delivery, signable = signed_delivery(target, body)

    try:
        adapter.verify(delivery, config)
        verified = True
    except InvalidSignatureError:
        verified = False
    key = adapter.delivery_key(delivery)
    try:
        mapped: MappedDelivery | MappingError = adapter.map(delivery, config)
    except MappingError as error:
        mapped = error

    assert verified or not signable
    assert isinstance(key, str)
    assert key
    if isinstance(mapped, MappingError):
        assert mapped.reason
    elif mapped.response is not None:
        assert isinstance(mapped.response, ResponseIn)


# Thin payloads: `fetch` parses the platform API's response body.

THIN_TARGETS = {
    "qualtrics": ("qualtrics-completedResponse", "qualtrics-response.api"),
    "surveymonkey": ("surveymonkey-response_completed", "surveymonkey-response_details.api"),
}


def _recorded_fetch(source: str) -> tuple[dict[str, str], EndpointConfig]:
    target = next(target for target in TARGETS if target.source == source)
    config = endpoint_config(target)
    sample = load_sample(THIN_TARGETS[source][0])
    delivery = InboundDelivery(
        body=sample.body, headers=delivery_headers(target), received_at=RECEIVED_AT
    )
    mapped = ADAPTERS[source].map(delivery, config)
    assert mapped.fetch is not None
    return mapped.fetch, config


# SurveyMonkey's survey details are constructed by its adapter tests, not recorded.
SURVEY_DETAILS = json.dumps(survey_details()).encode()


@st.composite
def api_bodies(draw: st.DrawFn, recorded: bytes) -> bytes:
    document = json.loads(recorded)
    choice = draw(st.sampled_from(["mutated", "random", "recorded"]))
    if choice == "random":
        return draw(st.binary(max_size=256))
    if choice == "recorded":
        return recorded
    mutated = draw(json_mutations(document))
    return json.dumps(mutated, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


def run_fetch(source: str, details: bytes, survey: bytes) -> ResponseIn | MappingError | None:
    """Run the adapter's fetch of the recorded delivery against a platform API that
    returns `details` for the response and `survey` for the survey's details."""
    adapter = cast(FetchingAdapter, ADAPTERS[source])
    fetch, config = _recorded_fetch(source)
    survey_path = f"/surveys/{fetch['survey_id']}/details"

    def reply(request: httpx.Request) -> httpx.Response:
        body = survey if request.url.path.endswith(survey_path) else details
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    async def run() -> ResponseIn | MappingError | None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(reply)) as client:
            try:
                return await adapter.fetch(client, fetch, config)
            except MappingError as error:
                return error

    return asyncio.run(run())


@pytest.mark.parametrize("source", sorted(THIN_TARGETS))
@FUZZ_SETTINGS
@given(data=st.data())
def test_fetch_parser_raises_only_rejections(source: str, data: st.DataObject) -> None:
    recorded, _ = load_api_body(THIN_TARGETS[source][1])
    details = data.draw(api_bodies(recorded), label="response")
    survey = data.draw(api_bodies(SURVEY_DETAILS), label="survey")

    result = run_fetch(source, details, survey)

    if isinstance(result, MappingError):
        assert result.reason
    else:
        assert result is None or isinstance(result, ResponseIn)


@pytest.mark.parametrize("source", sorted(THIN_TARGETS))
def test_fetch_parser_maps_recorded_answer(source: str) -> None:
    # The fuzzed fetches start from API responses that map to a survey response.
    recorded, _ = load_api_body(THIN_TARGETS[source][1])

    assert isinstance(run_fetch(source, recorded, SURVEY_DETAILS), ResponseIn)


def test_fetch_reads_list_collection_mode() -> None:
    # Found by the fuzzing above: an unhashable value used to raise TypeError.
    recorded, _ = load_api_body(THIN_TARGETS["surveymonkey"][1])
    details = json.loads(recorded)
    details["collection_mode"] = ["default"]

    result = run_fetch("surveymonkey", json.dumps(details).encode(), SURVEY_DETAILS)

    assert isinstance(result, ResponseIn)
