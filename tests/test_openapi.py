"""The OpenAPI document: every operation has a summary, a description, its scopes, examples
and error responses, grouped by described tags, and each example fits its models."""

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, TypeAdapter

from app.accounts.schemas import RevenueImportResult
from app.api_docs import SCOPES_EXTENSION
from app.api_examples import EXAMPLES
from app.errors import PROBLEM_MEDIA_TYPE
from tests.test_scopes import EXPECTED_SCOPES, PUBLIC_ROUTES

Operation = tuple[str, str, dict[str, Any]]


@pytest.fixture(scope="module")
def schema(app: FastAPI) -> dict[str, Any]:
    document: dict[str, Any] = app.openapi()
    return document


def operations(schema: dict[str, Any]) -> Iterator[Operation]:
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, operation


def api_routes(app: FastAPI) -> Iterator[tuple[str, str, APIRoute]]:
    """Yield each method, path and route that the OpenAPI document lists."""
    for context in iter_route_contexts(app.routes):
        route = getattr(context, "original_route", None)
        if isinstance(route, APIRoute) and route.include_in_schema:
            for method in sorted(route.methods or ()):
                yield method, route.path, route


def missing(schema: dict[str, Any], check: Any) -> list[str]:
    """List the operations for which `check(method, path, operation)` is false."""
    return sorted(
        f"{method} {path}"
        for method, path, operation in operations(schema)
        if not check(method, path, operation)
    )


def has_success_content(operation: dict[str, Any]) -> bool:
    return any(
        code.startswith("2") and response.get("content")
        for code, response in operation["responses"].items()
    )


class TestDocument:
    async def test_served_document_is_extended(
        self, client: httpx.AsyncClient, schema: dict[str, Any]
    ) -> None:
        response = await client.get("/openapi.json")

        assert response.status_code == 200
        assert response.json() == schema
        assert response.json()["paths"]["/v1/coverage"]["get"][SCOPES_EXTENSION] == ["read"]


class TestOperations:
    def test_every_operation_has_summary(self, schema: dict[str, Any]) -> None:
        assert missing(schema, lambda method, path, operation: operation.get("summary")) == []

    def test_every_operation_has_description(self, schema: dict[str, Any]) -> None:
        def described(method: str, path: str, operation: dict[str, Any]) -> bool:
            # The text beyond the scope sentence that every description ends with.
            text = operation.get("description", "").rsplit("\n\nNeeds ", 1)[0]
            return len(text) > 20

        assert missing(schema, described) == []

    def test_scopes_match_routes(self, schema: dict[str, Any]) -> None:
        for method, path, operation in operations(schema):
            expected = (
                [EXPECTED_SCOPES[(method, path)]] if (method, path) in EXPECTED_SCOPES else []
            )
            assert operation[SCOPES_EXTENSION] == expected, f"{method} {path}"
            if expected:
                assert f"the `{expected[0]}` scope" in operation["description"], path
            else:
                assert (method, path) in PUBLIC_ROUTES, path
                assert "Needs no API key." in operation["description"], path

    def test_every_operation_tagged(self, schema: dict[str, Any]) -> None:
        described = {tag["name"] for tag in schema["tags"] if tag.get("description")}

        def tagged(method: str, path: str, operation: dict[str, Any]) -> bool:
            tags = operation.get("tags", [])
            return len(tags) == 1 and tags[0] in described

        assert missing(schema, tagged) == []

    def test_every_tag_used(self, schema: dict[str, Any]) -> None:
        used = {tag for _, _, operation in operations(schema) for tag in operation["tags"]}

        assert {tag["name"] for tag in schema["tags"]} == used

    def test_error_responses_are_problems(self, schema: dict[str, Any]) -> None:
        def documents_errors(method: str, path: str, operation: dict[str, Any]) -> bool:
            errors = {
                code: response
                for code, response in operation["responses"].items()
                if code.startswith(("4", "5"))
            }
            problems = [
                code
                for code, response in errors.items()
                if PROBLEM_MEDIA_TYPE in response.get("content", {})
            ]
            # / and /healthz fail only with the process; /readyz has its own 503 body.
            return "500" in problems and (path in {"/", "/healthz"} or len(errors) >= 2)

        assert missing(schema, documents_errors) == []

    def test_public_routes_omit_key_errors(self, schema: dict[str, Any]) -> None:
        for method, path, operation in operations(schema):
            if (method, path) in PUBLIC_ROUTES:
                assert "403" not in operation["responses"], f"{method} {path}"

    def test_request_bodies_have_examples(self, schema: dict[str, Any]) -> None:
        def exemplified(method: str, path: str, operation: dict[str, Any]) -> bool:
            content = operation.get("requestBody", {}).get("content", {})
            json_body = content.get("application/json", {})
            if content and "example" not in json_body and "examples" not in json_body:
                return False
            return all("example" in media for name, media in content.items() if name == "text/csv")

        assert missing(schema, exemplified) == []

    def test_success_responses_have_examples(self, schema: dict[str, Any]) -> None:
        def exemplified(method: str, path: str, operation: dict[str, Any]) -> bool:
            if not has_success_content(operation):
                return True
            return all(
                "example" in media or "examples" in media
                for code, response in operation["responses"].items()
                if code.startswith("2")
                for media in response.get("content", {}).values()
            )

        assert missing(schema, exemplified) == []

    def test_parameter_examples_named(self, schema: dict[str, Any]) -> None:
        for method, path, operation in operations(schema):
            names = {parameter["name"] for parameter in operation.get("parameters", [])}
            recorded = set(EXAMPLES.get((method, path), {}).get("parameters", {}))
            assert recorded <= names, f"{method} {path}"


def _by_field_name(model: Any, example: Any) -> Any:
    """Rename a response example's serialization aliases (`from`) to field names, and fail
    for a key that the model does not have."""
    if not (isinstance(model, type) and issubclass(model, BaseModel) and isinstance(example, dict)):
        return example
    names = {field.serialization_alias or name: name for name, field in model.model_fields.items()}
    assert set(example) <= set(names), (model.__name__, set(example) - set(names))
    return {names[key]: value for key, value in example.items()}


class TestExamples:
    def test_every_example_is_an_operation(self, schema: dict[str, Any]) -> None:
        listed = {(method, path) for method, path, _ in operations(schema)}

        assert set(EXAMPLES) - listed == set()

    def test_examples_fit_models(self, app: FastAPI) -> None:
        checked = 0
        for method, path, route in api_routes(app):
            examples = EXAMPLES.get((method, path))
            if examples is None:
                continue
            if route.body_field is not None and "request" in examples:
                annotation = route.body_field.field_info.annotation
                assert annotation is not None, route.path
                TypeAdapter(annotation).validate_python(examples["request"])
            if route.response_model is not None:
                response = _by_field_name(route.response_model, examples["response"])
                TypeAdapter(route.response_model).validate_python(response)
            checked += 1

        assert checked == len(EXAMPLES)

    def test_csv_import_result_documented(self, schema: dict[str, Any]) -> None:
        success = schema["paths"]["/v1/revenue-updates"]["post"]["responses"]["200"]
        content = success["content"]["application/json"]

        refs = [option["$ref"] for option in content["schema"]["anyOf"]]
        assert refs == [
            "#/components/schemas/RevenueUpdateResult",
            "#/components/schemas/RevenueImportResult",
        ]
        assert "RevenueImportLineError" in schema["components"]["schemas"]
        csv_example = content["examples"]["csv"]["value"]
        RevenueImportResult.model_validate(csv_example)

    def test_status_is_documented(self, schema: dict[str, Any]) -> None:
        for method, path, operation in operations(schema):
            examples = EXAMPLES.get((method, path))
            if examples is not None:
                assert str(examples["status"]) in operation["responses"], f"{method} {path}"


class TestDocsPages:
    @pytest.mark.parametrize("page", ["/docs", "/redoc"])
    async def test_docs_page_loads_only_local_assets(
        self, client: httpx.AsyncClient, page: str
    ) -> None:
        response = await client.get(page)

        assert response.status_code == 200
        assert "https://" not in response.text
        assets = re.findall(r'(?:src|href)="(/[^"]+)"', response.text)
        assert assets
        for asset in assets:
            loaded = await client.get(asset)
            assert loaded.status_code == 200, asset
            assert len(loaded.content) > 1000, asset
