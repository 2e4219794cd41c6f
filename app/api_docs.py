"""The OpenAPI document: tag descriptions, operation descriptions, the scope each operation
needs, request and response examples, and the error responses every route can return.

The scopes come from the routes' own dependencies, so the document cannot drift from what
the service enforces. tests/test_openapi.py fails for an operation that lacks any part.
"""

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts

from app.accounts.schemas import RevenueImportResult
from app.api_examples import EXAMPLES
from app.errors import PROBLEM_MEDIA_TYPE, PROBLEM_RESPONSES, problem_content
from app.tenancy.dependencies import RequireScope, RequireScopeOrShareToken, get_caller

# Scope extension of each operation: the scopes an API key needs, empty for public routes.
SCOPES_EXTENSION = "x-required-scopes"

API_TAGS: list[dict[str, str]] = [
    {
        "name": "reports",
        "description": "Revenue coverage, revenue by NPS bucket, segments, trends, the "
        "at-risk and survey-next lists and the flow between buckets, for a period.",
    },
    {
        "name": "accounts",
        "description": "Accounts from your CRM and their effective-dated revenue, as JSON "
        "or CSV. Money is an exact decimal string.",
    },
    {
        "name": "responses",
        "description": "Survey responses in the service's own format, the responses that "
        "count for no account, manual assignment and deletion.",
    },
    {
        "name": "contacts",
        "description": "People linked to accounts by email, so that responses without an "
        "account id still count for the right account.",
    },
    {
        "name": "webhooks",
        "description": "Webhook endpoints for survey platforms (Typeform, Qualtrics, "
        "SurveyMonkey and others), the deliveries they receive, and replay.",
    },
    {
        "name": "fx-rates",
        "description": "Exchange rates into the reporting currency, for revenue in other "
        "currencies.",
    },
    {"name": "tenant", "description": "The tenant's settings: time zone, currency, target."},
    {"name": "api-keys", "description": "API keys and their scopes: read, ingest, admin."},
    {
        "name": "share-tokens",
        "description": "Read-only, revocable tokens that open the coverage widget, and "
        "nothing else, for wall displays.",
    },
    {
        "name": "widgets",
        "description": "The coverage gauge and revenue bar as an SVG image for an `<img>` element.",
    },
    {
        "name": "privacy",
        "description": "Erasure of a person's personal data and the audit log of deletions.",
    },
    {
        "name": "health",
        "description": "The service index, and liveness and readiness probes for orchestrators.",
    },
    {"name": "operations", "description": "Metrics for Prometheus."},
]

# Descriptions of the operations whose route declares none.
DESCRIPTIONS: dict[tuple[str, str], str] = {
    ("GET", "/"): "Returns the service's version and the paths of its API documentation, "
    "OpenAPI schema, dashboard and probes.",
    ("HEAD", "/"): "Returns 200 while the service answers, with no body.",
    ("GET", "/healthz"): "Returns 200 while the process runs; it does not check the database.",
    ("HEAD", "/healthz"): "The same check as `GET /healthz`, for monitors that send HEAD.",
    ("HEAD", "/readyz"): "Returns the status of `GET /readyz` (200 or 503) with no body, for "
    "monitors that send HEAD.",
    ("GET", "/readyz"): "Returns 200 when the database is reachable and migrated to the "
    "newest revision, and 503 with the same fields otherwise. Route traffic to the service "
    "only while it returns 200.",
    ("GET", "/v1/tenant"): "The settings that every report of the tenant uses.",
    ("PATCH", "/v1/tenant"): "Changes only the fields sent. `revenue_tiers` is replaced as a "
    "whole. A new reporting currency needs exchange rates quoted in it.",
    ("GET", "/v1/api-keys"): "Every key of the tenant with its prefix and scopes; the keys "
    "themselves are never shown again.",
    ("POST", "/v1/api-keys"): "Store the `api_key` of the response, because the service keeps "
    "only its SHA-256 digest.",
    ("DELETE", "/v1/api-keys/{key_id}"): "Requests with the key get 401 once the revocation "
    "commits. The tenant's last active admin key cannot be revoked (409).",
    ("GET", "/v1/share-tokens"): "Every share token of the tenant with its prefix; the tokens "
    "themselves are never shown again.",
    ("DELETE", "/v1/share-tokens/{token_id}"): "The widget answers 401 to the token once the "
    "revocation commits. Revoking a revoked token changes nothing.",
    ("GET", "/v1/accounts"): "Accounts in external id order with the revenue in force now.",
    ("GET", "/v1/accounts/{external_id}"): "The account with the revenue in force now and "
    "every revenue record, newest effective first.",
    ("PUT", "/v1/accounts/{external_id}"): "Replaces the descriptive fields and domains as a "
    "whole and adds the optional revenue record to the history. 201 when the account is "
    "new, 200 when it existed.",
    ("POST", "/v1/revenue-updates"): "Applies the batch in one transaction: a rejected batch "
    "writes nothing, unknown accounts are created, and replaying an update changes "
    "nothing. With `Content-Type: text/csv` the body is a CSV export instead, read with "
    "the `decimal`, `thousands`, `delimiter`, `currency`, `column` and `on_error` query "
    "parameters, up to 10 MiB. The response then counts the lines read, accepted and "
    "rejected. An invalid line rejects the whole file with 422 and its line number "
    "unless `on_error=skip`.",
    ("GET", "/v1/contacts"): "Contacts in email order, each with the accounts it is linked to.",
    ("GET", "/v1/contacts/{email}"): "The contact with each account it is linked to and its "
    "role there. The email is compared without case.",
    ("DELETE", "/v1/contacts/{email}/accounts/{account_external_id}"): "Responses of the "
    "contact are matched again by the remaining rules. 404 when the link does not exist.",
    ("POST", "/v1/responses"): "Stores the batch in one transaction. A response repeated "
    "with the same `source` and `response_id` replaces the stored one only when its "
    "`updated_at` is later, so replays change nothing.",
    ("GET", "/v1/responses"): "Stored responses in id order, filtered by account, source or "
    "whether they are matched.",
    ("GET", "/v1/responses/{source}/{response_id}"): "The response with the account it "
    "counts for and the rule that matched it.",
    ("GET", "/v1/audit-events"): "Each deletion and erasure with its time and counts. An "
    "erased email appears only as its SHA-256 digest.",
    ("POST", "/v1/webhook-endpoints"): "Returns the endpoint's URL to paste into the survey "
    "platform and, once only, its signing secret. Without `secret`, one is generated in "
    "the platform's format.",
    ("GET", "/v1/webhook-endpoints"): "Endpoints with their URL and mapping, without secrets.",
    ("GET", "/v1/webhook-endpoints/{endpoint_id}"): "The endpoint with its URL and mapping, "
    "without secrets.",
    ("PATCH", "/v1/webhook-endpoints/{endpoint_id}"): "Changes only the fields sent. Send "
    "`secrets` with the old and the new secret to rotate without losing deliveries. "
    "Replay failed deliveries after fixing a mapping.",
    ("GET", "/v1/webhooks/{endpoint_id}"): "Returns 200 when the endpoint exists, as "
    "Qualtrics checks before it sends deliveries.",
    ("HEAD", "/v1/webhooks/{endpoint_id}"): "Returns 200 when the endpoint exists, as "
    "SurveyMonkey checks before it sends deliveries.",
    ("GET", "/v1/webhook-deliveries"): "Stored deliveries, newest first, with their status: "
    "`processed`, `pending` (a response to fetch), `ignored`, `failed` (with `error`).",
    ("GET", "/v1/webhook-deliveries/{delivery_id}"): "The delivery's status, error and "
    "fetch attempts.",
    ("POST", "/v1/webhook-deliveries/{delivery_id}/replay"): "Maps the stored body again "
    "with the endpoint's current settings, such as after a fix of `score_field`. The "
    "signature is not checked again.",
    ("GET", "/v1/accounts/{external_id}/classification"): "The responses of the account in "
    "the period and how the roll-up rule turns them into its bucket.",
    ("PUT", "/v1/fx-rates"): "Stores the rates in one transaction. A rate holds from its "
    "`effective_at` until the next rate of the same currency.",
    ("GET", "/v1/fx-rates"): "Rates in currency and time order.",
}

# Query parameters of POST /v1/revenue-updates that apply to a text/csv body.
CSV_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "decimal",
        "in": "query",
        "description": "text/csv only: decimal separator of amounts, `.` or `,`.",
        "schema": {"type": "string", "enum": [".", ","], "default": "."},
    },
    {
        "name": "thousands",
        "in": "query",
        "description": "text/csv only: thousands separator, `none`, `,`, `.`, `space` or `'`.",
        "schema": {"type": "string", "default": "none"},
    },
    {
        "name": "delimiter",
        "in": "query",
        "description": "text/csv only: field delimiter, `,`, `;`, `|` or `tab`.",
        "schema": {"type": "string", "default": ","},
    },
    {
        "name": "currency",
        "in": "query",
        "description": "text/csv only: currency of lines without one.",
        "schema": {"type": "string"},
    },
    {
        "name": "column",
        "in": "query",
        "description": "text/csv only: `FIELD=HEADER` to read a field from another header; "
        "repeatable.",
        "schema": {"type": "array", "items": {"type": "string"}},
    },
    {
        "name": "on_error",
        "in": "query",
        "description": "text/csv only: `reject` the file for an invalid line, or `skip` it.",
        "schema": {"type": "string", "enum": ["reject", "skip"], "default": "reject"},
    },
]
CSV_EXAMPLE = (
    "Account ID;Account Name;Revenue;Currency;Effective Date\n"
    "ACME-001;Acme Corp;1.234.567,89;EUR;2026-01-01\n"
)
CSV_IMPORT_RESULT: dict[str, Any] = {
    "lines": 1,
    "accepted": 1,
    "rejected": 0,
    "created": 1,
    "updated": 0,
    "unchanged": 0,
    "accounts_created": 1,
    "errors": [],
}
COMPONENT_REF = "#/components/schemas/"

# Dependencies that check a scope: an API key's, or a share token in its place.
SCOPE_CHECKS = (RequireScope, RequireScopeOrShareToken)

INTERNAL_ERROR = problem_content(
    "The server failed; the error is logged with the id in the X-Request-ID header."
)


def _dependency_calls(dependant: Dependant) -> Iterator[Any]:
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _dependency_calls(dependency)


def route_scopes(app: FastAPI) -> dict[tuple[str, str], list[str]]:
    """Map each operation to the scopes its API key needs, an empty list for public ones."""
    scopes: dict[tuple[str, str], list[str]] = {}
    for context in iter_route_contexts(app.routes):
        dependant = getattr(context, "dependant", None)
        if not isinstance(dependant, Dependant) or context.path is None:
            continue
        calls = list(_dependency_calls(dependant))
        checks = [call for call in calls if isinstance(call, SCOPE_CHECKS)]
        needed = sorted({str(call.scope) for call in checks})
        for method in context.methods or ():
            scopes[(method, context.path)] = needed if get_caller in calls or checks else []
    return scopes


def _access(scopes: list[str]) -> str:
    if scopes:
        names = " or ".join(f"`{scope}`" for scope in scopes)
        return f"Needs an API key with the {names} scope."
    return "Needs no API key."


def _add_examples(operation: dict[str, Any], examples: dict[str, Any]) -> None:
    body = operation.get("requestBody", {}).get("content", {})
    if "request" in examples and "application/json" in body:
        body["application/json"]["example"] = examples["request"]
    if "text/csv" in body:
        body["text/csv"]["example"] = CSV_EXAMPLE

    # A route with two success codes (200 and 201 for PUT) returns the same body with both.
    for code, response in operation["responses"].items():
        content = response.get("content", {})
        if not code.startswith("2"):
            continue
        for media_type, media in content.items():
            if media_type == "text/csv":
                if "csv_response" in examples:
                    media["example"] = examples["csv_response"]
            elif media_type == "application/json" or isinstance(examples["response"], str):
                # A text response such as the widget's SVG has its example as a string.
                media["example"] = examples["response"]

    for parameter in operation.get("parameters", []):
        value = examples.get("parameters", {}).get(parameter["name"])
        if value is not None:
            parameter["example"] = value


def _document_errors(operation: dict[str, Any], scopes: list[str]) -> None:
    responses = operation["responses"]
    if not scopes:
        # Public routes share their router's problem responses, but check no API key.
        responses.pop("403", None)
        if responses.get("401", {}).get("description") == PROBLEM_RESPONSES[401]["description"]:
            del responses["401"]
    responses.setdefault("500", _openapi_problem(INTERNAL_ERROR))


def _openapi_problem(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": entry["description"],
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def document_operations(app: FastAPI, schema: dict[str, Any]) -> None:
    """Add descriptions, scopes, examples and error responses to every operation."""
    scopes = route_scopes(app)
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            key = (method.upper(), path)
            needed = scopes.get(key, [])
            description = operation.get("description") or DESCRIPTIONS.get(key, "")
            if description:
                operation["description"] = f"{description}\n\n{_access(needed)}"
            operation[SCOPES_EXTENSION] = needed
            if key in EXAMPLES:
                _add_examples(operation, EXAMPLES[key])
            _document_errors(operation, needed)
    if ("POST", "/v1/revenue-updates") in scopes:
        _document_csv_upload(schema, schema["paths"]["/v1/revenue-updates"]["post"])


def _document_csv_upload(schema: dict[str, Any], operation: dict[str, Any]) -> None:
    """Document the text/csv body of POST /v1/revenue-updates, which a hidden route of the
    same method and path handles, beside the JSON body."""
    operation.setdefault("parameters", []).extend(CSV_PARAMETERS)
    operation["requestBody"]["content"]["text/csv"] = {
        "schema": {"type": "string"},
        "example": CSV_EXAMPLE,
    }

    components = schema.setdefault("components", {}).setdefault("schemas", {})
    import_schema = RevenueImportResult.model_json_schema(
        ref_template=COMPONENT_REF + "{model}", mode="serialization"
    )
    components.update(import_schema.pop("$defs", {}))
    components[RevenueImportResult.__name__] = import_schema
    success = operation["responses"]["200"]
    success["description"] = (
        "The counts of the JSON batch, or for a text/csv body the lines read, accepted and "
        "rejected (`RevenueImportResult`)."
    )
    content = success["content"]["application/json"]
    content["schema"] = {
        "anyOf": [content["schema"], {"$ref": COMPONENT_REF + RevenueImportResult.__name__}]
    }
    content["examples"] = {
        "json": {"summary": "A JSON batch", "value": content.pop("example")},
        "csv": {"summary": "A text/csv body", "value": CSV_IMPORT_RESULT},
    }
    operation["responses"]["415"] = _openapi_problem(
        problem_content("The body is neither JSON nor CSV, or the CSV charset is not UTF-8.")
    )


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` return the document with the additions above."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document_operations(app, build())
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
