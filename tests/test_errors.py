"""Every client error is an RFC 9457 problem document that names what was wrong."""

import base64
import json
from typing import Any

import httpx
import pytest

from tests.helpers import PROBLEM_JSON, assert_problem

JSON_HEADERS = {"Content-Type": "application/json"}
GENERAL_BODY_LIMIT = 10 * 1024 * 1024

# Every write endpoint that takes a JSON body from API clients.
WRITE_ROUTES = [
    ("PATCH", "/v1/tenant"),
    ("PUT", "/v1/accounts/ACME-001"),
    ("POST", "/v1/revenue-updates"),
    ("POST", "/v1/responses"),
    ("POST", "/v1/webhook-endpoints"),
]

VALID_UPDATE = {
    "account_external_id": "ACME-001",
    "amount": "10.00",
    "currency": "USD",
    "effective_at": "2026-01-01T00:00:00Z",
}
VALID_RESPONSE = {
    "source": "native",
    "response_id": "r1",
    "score": 9,
    "submitted_at": "2026-02-01T12:00:00Z",
}


def error_locations(problem: dict[str, Any]) -> list[str]:
    return [error["location"] for error in problem["errors"]]


class TestProblemDocuments:
    async def test_unauthorized(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/tenant")

        assert_problem(response, 401)

    @pytest.mark.parametrize("path", ["/v1/nope", "/nope", "/v1/accounts/A/extra", "/v1/tenant/"])
    async def test_unknown_route(self, api: httpx.AsyncClient, path: str) -> None:
        response = await api.get(path)

        problem = assert_problem(response, 404)
        assert path in problem["detail"]

    async def test_unknown_account(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/v1/accounts/NOPE")

        assert_problem(response, 404)

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("DELETE", "/v1/tenant"),
            ("POST", "/v1/tenant"),
            ("GET", "/v1/revenue-updates"),
            ("DELETE", "/v1/accounts/ACME-001"),
            ("PUT", "/v1/webhooks/wh_x"),
        ],
    )
    async def test_wrong_method(self, api: httpx.AsyncClient, method: str, path: str) -> None:
        response = await api.request(method, path)

        problem = assert_problem(response, 405)
        assert method in problem["detail"]

    # RFC 9110 section 15.5.6 requires a 405 to list every supported method in `Allow`.
    @pytest.mark.parametrize(
        ("path", "allowed"),
        [
            ("/v1/tenant", {"GET", "PATCH"}),
            ("/v1/revenue-updates", {"POST"}),
            ("/v1/accounts/ACME-001", {"GET", "PUT"}),
        ],
    )
    async def test_allow_lists_every_method(
        self, api: httpx.AsyncClient, path: str, allowed: set[str]
    ) -> None:
        response = await api.delete(path)

        assert response.status_code == 405, response.text
        allow = {part.strip() for part in response.headers["allow"].split(",")}
        assert allowed <= allow

    async def test_body_over_general_limit(self, api: httpx.AsyncClient) -> None:
        padding = "x" * GENERAL_BODY_LIMIT
        body = '{"updates": [], "padding": "' + padding + '"}'

        response = await api.post("/v1/revenue-updates", content=body, headers=JSON_HEADERS)

        assert_problem(response, 413)


class TestMalformedBody:
    @pytest.mark.parametrize(("method", "path"), WRITE_ROUTES)
    @pytest.mark.parametrize(
        "body", ['{"updates": [', "not json", '{"a": 1,}', "{'a': 1}", '{"a": NaN}']
    )
    async def test_invalid_json(
        self, api: httpx.AsyncClient, method: str, path: str, body: str
    ) -> None:
        response = await api.request(method, path, content=body, headers=JSON_HEADERS)

        problem = assert_problem(response, 422)
        assert error_locations(problem) == ["body"]
        assert "JSON" in problem["detail"]

    async def test_invalid_json_position_named(self, api: httpx.AsyncClient) -> None:
        # The missing colon is the 27th character.
        body = '{"updates": [\n  {"amount" "1"}]}'

        response = await api.post("/v1/revenue-updates", content=body, headers=JSON_HEADERS)

        problem = assert_problem(response, 422)
        assert "invalid JSON at character 27: Expecting ':' delimiter" in problem["detail"]

    @pytest.mark.parametrize(("method", "path"), WRITE_ROUTES)
    async def test_body_not_utf8(self, api: httpx.AsyncClient, method: str, path: str) -> None:
        # A Latin-1 "é" as the 11th byte.
        body = b'{"name": "\xe9"}'

        response = await api.request(method, path, content=body, headers=JSON_HEADERS)

        problem = assert_problem(response, 422)
        assert error_locations(problem) == ["body"]
        assert "invalid JSON at character 11: not valid UTF-8" in problem["detail"]

    @pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-32-le"])
    async def test_utf16_and_utf32_bodies_rejected(
        self, api: httpx.AsyncClient, encoding: str
    ) -> None:
        body = '{"name": "ACME"}'.encode(encoding)

        response = await api.put("/v1/accounts/ACME-001", content=body, headers=JSON_HEADERS)

        problem = assert_problem(response, 422)
        assert error_locations(problem) == ["body"]
        assert "contains a NUL byte, as UTF-16 or UTF-32 text does" in problem["detail"]
        assert (await api.get("/v1/accounts/ACME-001")).status_code == 404

    async def test_byte_order_mark_of_utf8_accepted(self, api: httpx.AsyncClient) -> None:
        body = b"\xef\xbb\xbf" + b'{"name": "ACME"}'

        response = await api.put("/v1/accounts/ACME-001", content=body, headers=JSON_HEADERS)

        assert response.status_code in (200, 201), response.text

    async def test_repeated_key_rejected(self, api: httpx.AsyncClient) -> None:
        body = '{"name": "First", "region": "EMEA", "name": "Second"}'

        response = await api.put("/v1/accounts/ACME-001", content=body, headers=JSON_HEADERS)

        problem = assert_problem(response, 422)
        assert error_locations(problem) == ["body"]
        assert 'character 37: the key "name" occurs more than once' in problem["detail"]
        assert (await api.get("/v1/accounts/ACME-001")).status_code == 404

    async def test_repeated_amount_rejected(self, api: httpx.AsyncClient) -> None:
        # The fast path for revenue batches must not keep the last value either.
        body = (
            '{"updates": [{"account_external_id": "ACME-001", "amount": "-5", '
            '"amount": "10.00", "currency": "USD", "effective_at": "2026-02-01T00:00:00Z"}]}'
        )

        response = await api.post("/v1/revenue-updates", content=body, headers=JSON_HEADERS)

        problem = assert_problem(response, 422)
        assert 'the key "amount" occurs more than once' in problem["detail"]
        assert (await api.get("/v1/accounts/ACME-001")).status_code == 404

    async def test_utf8_error_position_in_characters(self, api: httpx.AsyncClient) -> None:
        # Ten two-byte "é" come first, so the bad byte is the 21st character but the 31st byte.
        body = '{"name": "éééééééééé'.encode() + b'\xff"}'

        response = await api.put("/v1/accounts/ACME-001", content=body, headers=JSON_HEADERS)

        problem = assert_problem(response, 422)
        assert "invalid JSON at character 21: not valid UTF-8" in problem["detail"]

    @pytest.mark.parametrize(("method", "path"), WRITE_ROUTES)
    @pytest.mark.parametrize(
        ("body", "reason"),
        [
            (b'{"name": ' + b"9" * 5000 + b"}", "a number of 5000 digits"),
            (b"[" * 100_000 + b"]" * 100_000, "nest too deeply"),
            (b'{"name": 1e99999999999999999999}', "exponent too large"),
        ],
        ids=["long number", "deep nesting", "huge exponent"],
    )
    async def test_unreadable_json_is_422(
        self, api: httpx.AsyncClient, method: str, path: str, body: bytes, reason: str
    ) -> None:
        response = await api.request(method, path, content=body, headers=JSON_HEADERS)

        problem = assert_problem(response, 422)
        assert error_locations(problem) == ["body"]
        assert reason in problem["detail"]

    @pytest.mark.parametrize(("method", "path"), WRITE_ROUTES)
    @pytest.mark.parametrize("body", ["[]", "null", '"text"', "42", ""])
    async def test_not_an_object(
        self, api: httpx.AsyncClient, method: str, path: str, body: str
    ) -> None:
        response = await api.request(method, path, content=body, headers=JSON_HEADERS)

        assert_problem(response, 422)

    async def test_not_json_content_type(self, api: httpx.AsyncClient) -> None:
        body = '{"updates": []}'

        response = await api.post(
            "/v1/revenue-updates", content=body, headers={"Content-Type": "text/plain"}
        )

        assert response.status_code in (415, 422), response.text
        assert response.headers["content-type"] == PROBLEM_JSON

    @pytest.mark.parametrize(
        ("path", "accepted"),
        [
            ("/v1/revenue-updates", "application/json or text/csv"),
            ("/v1/responses", "application/json."),
        ],
    )
    async def test_unsupported_media_type_names_accepted(
        self, api: httpx.AsyncClient, path: str, accepted: str
    ) -> None:
        response = await api.post(
            path, content=b"account,amount", headers={"Content-Type": "text/plain"}
        )

        problem = assert_problem(response, 415)
        assert accepted in problem["detail"]


class TestWrongTypes:
    @pytest.mark.parametrize(
        ("method", "path", "body", "location"),
        [
            ("PATCH", "/v1/tenant", {"timezone": 5}, "body.timezone"),
            ("PATCH", "/v1/tenant", {"coverage_target": "most"}, "body.coverage_target"),
            ("PUT", "/v1/accounts/ACME-001", {"name": 5}, "body.name"),
            ("PUT", "/v1/accounts/ACME-001", {"attributes": []}, "body.attributes"),
            ("PUT", "/v1/accounts/ACME-001", {"revenue": "100"}, "body.revenue"),
            ("POST", "/v1/revenue-updates", {"updates": "all"}, "body.updates"),
            ("POST", "/v1/revenue-updates", {"updates": [1]}, "body.updates[0]"),
            (
                "POST",
                "/v1/revenue-updates",
                {"updates": [{**VALID_UPDATE, "effective_at": "yesterday"}]},
                "body.updates[0].effective_at",
            ),
            ("POST", "/v1/responses", {"responses": {}}, "body.responses"),
            (
                "POST",
                "/v1/responses",
                {"responses": [{**VALID_RESPONSE, "submitted_at": "2026-02-30T12:00:00Z"}]},
                "body.responses[0].submitted_at",
            ),
            (
                "POST",
                "/v1/responses",
                {"responses": [{**VALID_RESPONSE, "response_id": 17}]},
                "body.responses[0].response_id",
            ),
            ("POST", "/v1/webhook-endpoints", {"source": ["typeform"]}, "body.source"),
        ],
    )
    async def test_wrong_type_named(
        self,
        api: httpx.AsyncClient,
        method: str,
        path: str,
        body: dict[str, Any],
        location: str,
    ) -> None:
        response = await api.request(method, path, json=body)

        problem = assert_problem(response, 422)
        assert location in error_locations(problem)

    @pytest.mark.parametrize(
        ("path", "body", "location"),
        [
            ("/v1/revenue-updates", {}, "body.updates"),
            ("/v1/responses", {}, "body.responses"),
            ("/v1/webhook-endpoints", {}, "body.source"),
        ],
    )
    async def test_missing_field_named(
        self, api: httpx.AsyncClient, path: str, body: dict[str, Any], location: str
    ) -> None:
        response = await api.post(path, json=body)

        problem = assert_problem(response, 422)
        assert error_locations(problem) == [location]


class TestHints:
    """Common client mistakes get a message that explains the fix."""

    @pytest.mark.parametrize(
        ("path", "item", "field"),
        [
            ("/v1/responses", VALID_RESPONSE, "responses"),
            ("/v1/revenue-updates", VALID_UPDATE, "updates"),
        ],
    )
    async def test_array_body_names_wrapper_field(
        self, api: httpx.AsyncClient, path: str, item: dict[str, Any], field: str
    ) -> None:
        response = await api.post(path, json=[item])

        problem = assert_problem(response, 422)
        assert problem["errors"] == [
            {
                "location": "body",
                "message": "expected a JSON object, got an array; "
                f'send the items as {{"{field}": [...]}}',
            }
        ]

    @pytest.mark.parametrize("amount", ["1,000", "1.000,50", "$1000", "1 000"])
    async def test_local_amount_notation_explained(
        self, api: httpx.AsyncClient, amount: str
    ) -> None:
        body = {"updates": [{**VALID_UPDATE, "amount": amount}]}

        response = await api.post("/v1/revenue-updates", json=body)

        problem = assert_problem(response, 422)
        assert error_locations(problem) == ["body.updates[0].amount"]
        message = problem["errors"][0]["message"]
        assert '"1234.56"' in message
        assert 'no "," between digits' in message
        assert repr(amount) in message
        assert_problem(await api.get("/v1/accounts/ACME-001"), 404)

    async def test_misspelt_field_suggests_missing(self, api: httpx.AsyncClient) -> None:
        update = {**VALID_UPDATE, "external_id": VALID_UPDATE["account_external_id"]}
        del update["account_external_id"]

        response = await api.post("/v1/revenue-updates", json={"updates": [update]})

        problem = assert_problem(response, 422)
        messages = {error["location"]: error["message"] for error in problem["errors"]}
        assert messages == {
            "body.updates[0].account_external_id": "field required",
            "body.updates[0].external_id": "unknown field; did you mean 'account_external_id'?",
        }

    @pytest.mark.parametrize(
        ("method", "path", "body", "location", "suggested"),
        [
            ("PUT", "/v1/accounts/ACME-001", {"regoin": "EMEA"}, "body.regoin", "region"),
            (
                "PATCH",
                "/v1/tenant",
                {"coverage_taget": 0.9},
                "body.coverage_taget",
                "coverage_target",
            ),
            (
                "POST",
                "/v1/revenue-updates",
                {"updates": [{**VALID_UPDATE, "curency": "USD"}]},
                "body.updates[0].curency",
                "currency",
            ),
        ],
    )
    async def test_misspelt_optional_field_suggested(
        self,
        api: httpx.AsyncClient,
        method: str,
        path: str,
        body: dict[str, Any],
        location: str,
        suggested: str,
    ) -> None:
        response = await api.request(method, path, json=body)

        problem = assert_problem(response, 422)
        messages = {error["location"]: error["message"] for error in problem["errors"]}
        assert messages[location] == f"unknown field; did you mean {suggested!r}?"

    async def test_timestamp_without_offset_explained(self, api: httpx.AsyncClient) -> None:
        update = {**VALID_UPDATE, "effective_at": "2026-01-01T00:00:00"}

        response = await api.post("/v1/revenue-updates", json={"updates": [update]})

        problem = assert_problem(response, 422)
        assert problem["errors"] == [
            {
                "location": "body.updates[0].effective_at",
                "message": "expected a timestamp with a UTC offset, such as "
                "2026-01-01T00:00:00Z or 2026-01-01T09:00:00+09:00 "
                "(got '2026-01-01T00:00:00')",
            }
        ]

    async def test_unrelated_field_suggests_nothing(self, api: httpx.AsyncClient) -> None:
        update = {key: value for key, value in VALID_UPDATE.items() if key != "currency"}

        response = await api.post(
            "/v1/revenue-updates", json={"updates": [{**update, "note": "x"}]}
        )

        problem = assert_problem(response, 422)
        messages = {error["location"]: error["message"] for error in problem["errors"]}
        assert messages["body.updates[0].note"] == "unknown field; remove it or check its spelling"

    async def test_missing_query_parameter_described(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/v1/coverage/segments", params={"period": "2026-Q1"})

        problem = assert_problem(response, 422)
        assert error_locations(problem) == ["query.by"]
        message = problem["errors"][0]["message"]
        assert message.startswith("field required. What splits accounts into segments: ")
        for accepted in ("`tier`", "`region`", "`industry`", "`owner`", "`attribute:<name>`"):
            assert accepted in message


class TestProblemSize:
    """A problem document stays small whatever the request carries."""

    async def test_huge_amount_cut_in_message(self, api: httpx.AsyncClient) -> None:
        amount = "9" * 300_000
        body = {"updates": [{**VALID_UPDATE, "amount": amount}]}

        response = await api.post("/v1/revenue-updates", json=body)

        problem = assert_problem(response, 422)
        assert len(response.content) < 5_000
        assert "40 digits" in problem["errors"][0]["message"]
        assert "..." in problem["errors"][0]["message"]

    async def test_huge_field_name_cut(self, api: httpx.AsyncClient) -> None:
        name = "x" * 1_000_000

        response = await api.patch("/v1/tenant", json={name: 1})

        problem = assert_problem(response, 422)
        assert len(response.content) < 5_000
        assert problem["errors"][0]["location"].startswith("body.xxx")

    async def test_many_invalid_fields_listed_first(self, api: httpx.AsyncClient) -> None:
        body = {f"unknown_{index}": index for index in range(250)}

        response = await api.patch("/v1/tenant", json=body)

        problem = assert_problem(response, 422)
        listed = len(problem["errors"])
        assert 0 < listed <= 100
        assert problem["errors"][0]["location"] == "body.unknown_0"
        assert f"The first {listed} of 250 errors are listed." in problem["detail"]

    async def test_escaped_field_names_bounded(self, api: httpx.AsyncClient) -> None:
        # A control character takes 6 bytes in JSON, a 6-fold growth of each listed name.
        body = {"\u0001" * 1000 + str(index): index for index in range(150)}

        response = await api.post("/v1/share-tokens", json=body)

        assert_problem(response, 422)
        assert len(response.content) < 16_384

    async def test_long_path_cut_in_instance(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/v1/nope/" + "%01" * 15_000)

        problem = assert_problem(response, 404)
        assert len(response.content) < 16_384
        assert len(problem["instance"]) <= 200


class TestUnknownFields:
    @pytest.mark.parametrize(
        ("method", "path", "body", "location"),
        [
            ("PATCH", "/v1/tenant", {"time_zone": "UTC"}, "body.time_zone"),
            ("PUT", "/v1/accounts/ACME-001", {"nmae": "Acme"}, "body.nmae"),
            (
                "PUT",
                "/v1/accounts/ACME-001",
                {
                    "revenue": {
                        "amount": "1.00",
                        "currency": "USD",
                        "effective_at": "2026-01-01T00:00:00Z",
                        "note": "x",
                    }
                },
                "body.revenue.note",
            ),
            (
                "POST",
                "/v1/revenue-updates",
                {"updates": [VALID_UPDATE], "dry_run": True},
                "body.dry_run",
            ),
            (
                "POST",
                "/v1/revenue-updates",
                {"updates": [{**VALID_UPDATE, "ammount": "1.00"}]},
                "body.updates[0].ammount",
            ),
            (
                "POST",
                "/v1/responses",
                {"responses": [{**VALID_RESPONSE, "nps": 9}]},
                "body.responses[0].nps",
            ),
            (
                "POST",
                "/v1/webhook-endpoints",
                {"source": "typeform", "form_id": "abc"},
                "body.form_id",
            ),
        ],
    )
    async def test_unknown_field_named(
        self,
        api: httpx.AsyncClient,
        method: str,
        path: str,
        body: dict[str, Any],
        location: str,
    ) -> None:
        response = await api.request(method, path, json=body)

        problem = assert_problem(response, 422)
        assert error_locations(problem) == [location]

    async def test_unknown_field_writes_nothing(self, api: httpx.AsyncClient) -> None:
        body = {"updates": [VALID_UPDATE, {**VALID_UPDATE, "account_external_id": "B", "x": 1}]}

        response = await api.post("/v1/revenue-updates", json=body)

        assert_problem(response, 422)
        assert_problem(await api.get("/v1/accounts/ACME-001"), 404)


class TestUnknownQueryParameters:
    async def test_misspelt_parameter_named(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/v1/coverage", params={"perod": "2026-Q1"})

        problem = assert_problem(response, 422)
        assert error_locations(problem) == ["query.perod"]
        assert "'perod'" in problem["detail"]
        assert "period" in problem["errors"][0]["message"]

    async def test_route_without_parameters(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/v1/tenant", params={"verbose": "1"})

        problem = assert_problem(response, 422)
        assert error_locations(problem) == ["query.verbose"]
        assert "accepts: none" in problem["detail"]

    async def test_unknown_parameter_writes_nothing(self, api: httpx.AsyncClient) -> None:
        body = {"updates": [VALID_UPDATE]}

        response = await api.post("/v1/revenue-updates", params={"dry_run": "1"}, json=body)

        assert_problem(response, 422)
        assert_problem(await api.get("/v1/accounts/ACME-001"), 404)

    async def test_authentication_checked_first(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/coverage", params={"perod": "2026-Q1"})

        assert_problem(response, 401)

    async def test_repeated_parameter_rejected(self, api: httpx.AsyncClient) -> None:
        params = [("period", "2026-Q1"), ("period", "2026-Q2"), ("perod", "x")]

        response = await api.get("/v1/coverage", params=params)

        problem = assert_problem(response, 422)
        assert error_locations(problem) == ["query.perod", "query.period"]
        assert "'period' is given 2 times" in problem["errors"][1]["message"]

    async def test_list_parameter_repeats(self, api: httpx.AsyncClient) -> None:
        params = [("column", "account_external_id=Customer"), ("column", "amount=ARR")]
        body = "Customer,ARR,currency,effective_at\nA-1,10.00,USD,2026-01-01\n"

        response = await api.post(
            "/v1/revenue-updates", params=params, content=body, headers={"Content-Type": "text/csv"}
        )

        assert response.status_code == 200, response.text

    async def test_dependency_parameters_accepted(self, api: httpx.AsyncClient) -> None:
        params = {"period": "2026-Q1", "rollup": "latest", "level": "account"}

        response = await api.get("/v1/coverage", params=params)

        assert response.status_code == 200, response.text


class TestBadPeriod:
    @pytest.mark.parametrize(
        "period", ["2026-Q5", "2026-Q0", "2026-13", "2026-00", "26-Q1", "Q1-2026", "2026-3", "soon"]
    )
    async def test_bad_label_named(self, api: httpx.AsyncClient, period: str) -> None:
        response = await api.get("/v1/coverage", params={"period": period})

        problem = assert_problem(response, 422)
        assert period in problem["detail"]
        assert error_locations(problem) == ["query.period"]
        assert "2026-Q1" in problem["detail"]

    async def test_bad_granularity_named_once(self, api: httpx.AsyncClient) -> None:
        params = {"from": "2026-Q1", "to": "2026-Q2", "granularity": "quarterly"}

        response = await api.get("/v1/coverage/trend", params=params)

        problem = assert_problem(response, 422)
        assert error_locations(problem) == ["query.granularity"]

    async def test_from_without_to(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/v1/coverage", params={"from": "2026-01-01"})

        problem = assert_problem(response, 422)
        assert error_locations(problem) == ["query.to"]

    async def test_to_without_from(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/v1/coverage", params={"to": "2026-04-01"})

        problem = assert_problem(response, 422)
        assert error_locations(problem) == ["query.from"]

    @pytest.mark.parametrize(
        ("start", "end"),
        [("2026-04-01", "2026-01-01"), ("2026-01-01", "2026-01-01")],
    )
    async def test_to_not_after_from(self, api: httpx.AsyncClient, start: str, end: str) -> None:
        response = await api.get("/v1/coverage", params={"from": start, "to": end})

        problem = assert_problem(response, 422)
        assert error_locations(problem) == ["query.to"]
        assert end in problem["detail"]

    @pytest.mark.parametrize("bound", ["2026-02-30", "tomorrow", "2026/01/01"])
    async def test_bad_timestamp_named(self, api: httpx.AsyncClient, bound: str) -> None:
        response = await api.get("/v1/coverage", params={"from": bound, "to": "2026-12-31"})

        problem = assert_problem(response, 422)
        assert error_locations(problem) == ["query.from"]
        assert bound in problem["detail"]

    async def test_period_and_range_conflict(self, api: httpx.AsyncClient) -> None:
        response = await api.get(
            "/v1/coverage",
            params={"period": "2026-Q1", "from": "2026-01-01", "to": "2026-04-01"},
        )

        assert_problem(response, 422)


def cursor_after(position: object) -> str:
    """A cursor in the service's own encoding, positioned after `position`."""
    raw = json.dumps({"after": position}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# PostgreSQL text and jsonb columns cannot hold U+0000, and asyncpg cannot send timestamps
# before year 1 in UTC. Such input needs a 4xx (or a 2xx), never a 500.
class TestNeverServerError:
    @pytest.mark.parametrize(
        ("method", "path", "body"),
        [
            ("PUT", "/v1/accounts/NUL-1", {"name": "Acme\u0000"}),
            ("PUT", "/v1/accounts/NUL-2", {"attributes": {"note": "a\u0000b"}}),
            ("PUT", "/v1/accounts/NUL-3", {"attributes": {"a\u0000b": 1}}),
            (
                "POST",
                "/v1/revenue-updates",
                {"updates": [{**VALID_UPDATE, "account_external_id": "A\u0000"}]},
            ),
            (
                "POST",
                "/v1/responses",
                {"responses": [{**VALID_RESPONSE, "response_id": "r\u0000"}]},
            ),
            ("POST", "/v1/responses", {"responses": [{**VALID_RESPONSE, "comment": "x\u0000y"}]}),
            ("POST", "/v1/webhook-endpoints", {"source": "typeform", "score_field": "n\u0000"}),
        ],
    )
    async def test_nul_character_in_body(
        self, api: httpx.AsyncClient, method: str, path: str, body: dict[str, Any]
    ) -> None:
        response = await api.request(method, path, json=body)

        assert response.status_code < 500, response.text

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("PUT", "/v1/accounts/A%00B"),
            ("GET", "/v1/accounts/A%00B"),
            ("GET", "/v1/responses/native/r%00"),
            ("GET", "/v1/responses?source=native%00"),
            ("GET", "/v1/responses?account=A%00B"),
        ],
    )
    async def test_nul_character_in_url(
        self, api: httpx.AsyncClient, method: str, path: str
    ) -> None:
        response = await api.request(method, path, json={} if method == "PUT" else None)

        assert response.status_code < 500, response.text

    @pytest.mark.parametrize(
        ("path", "position"),
        [
            ("/v1/responses", 10**30),
            ("/v1/accounts", "A\u0000"),
            ("/v1/webhook-endpoints", "wh\u0000"),
            ("/v1/contacts", "a\ud800@example.com"),
        ],
    )
    async def test_out_of_range_cursor(
        self, api: httpx.AsyncClient, path: str, position: object
    ) -> None:
        response = await api.get(path, params={"cursor": cursor_after(position)})

        problem = assert_problem(response, 422)
        assert problem["detail"].startswith("Invalid cursor")

    @pytest.mark.parametrize(
        ("sort", "value"),
        [
            ("score", "1" * 20),
            ("score", "5_0"),
            ("score", " 5 "),
            ("score", "\u0665"),
            ("-revenue", "1e999999"),
            ("-revenue", "1e-16384"),
            ("submitted_at", "0001-01-01T00:00:00+14:00"),
        ],
    )
    async def test_forged_list_cursor(self, api: httpx.AsyncClient, sort: str, value: str) -> None:
        position = json.dumps([sort, value, "ACME-001"])
        params = {"sort": sort, "cursor": cursor_after(position)}

        response = await api.get("/v1/reports/at-risk", params=params)

        problem = assert_problem(response, 422)
        assert problem["detail"].startswith("Invalid cursor")

    @pytest.mark.parametrize(
        "effective_at", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]
    )
    async def test_forged_rate_cursor(self, api: httpx.AsyncClient, effective_at: str) -> None:
        response = await api.get(
            "/v1/fx-rates", params={"cursor": cursor_after(f"USD|EUR|{effective_at}")}
        )

        problem = assert_problem(response, 422)
        assert problem["detail"].startswith("Invalid cursor")

    @pytest.mark.parametrize(
        "path",
        [
            "/v1/accounts",
            "/v1/contacts",
            "/v1/responses",
            "/v1/responses/unmatched",
            "/v1/audit-events",
            "/v1/webhook-endpoints",
            "/v1/webhook-deliveries",
            "/v1/fx-rates",
            "/v1/reports/at-risk",
            "/v1/reports/survey-next",
        ],
    )
    async def test_deeply_nested_cursor(self, api: httpx.AsyncClient, path: str) -> None:
        # JSON arrays nested 1,000 deep, past Python's recursion limit.
        nested = base64.urlsafe_b64encode(b"[" * 1000).decode().rstrip("=")

        response = await api.get(path, params={"cursor": nested})

        assert_problem(response, 422)

    @pytest.mark.parametrize("path", ["/v1/reports/at-risk", "/v1/reports/survey-next"])
    async def test_deeply_nested_list_position(self, api: httpx.AsyncClient, path: str) -> None:
        # These lists decode the cursor's string position as JSON once more.
        response = await api.get(path, params={"cursor": cursor_after("[" * 1000)})

        assert_problem(response, 422)

    @pytest.mark.parametrize(
        ("path", "body"),
        [
            (
                "/v1/revenue-updates",
                {"updates": [{**VALID_UPDATE, "effective_at": "0001-01-01T00:00:00+14:00"}]},
            ),
            (
                "/v1/responses",
                {"responses": [{**VALID_RESPONSE, "submitted_at": "0001-01-01T00:00:00+14:00"}]},
            ),
        ],
    )
    async def test_timestamp_before_year_1_utc(
        self, api: httpx.AsyncClient, path: str, body: dict[str, Any]
    ) -> None:
        response = await api.post(path, json=body)

        assert response.status_code < 500, response.text

    async def test_period_before_year_1_utc(self, api: httpx.AsyncClient) -> None:
        response = await api.get(
            "/v1/coverage", params={"from": "0001-01-01T00:00:00+14:00", "to": "2026-01-01"}
        )

        assert response.status_code < 500, response.text
