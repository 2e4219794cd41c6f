"""Request and response examples of every API operation, shown in the OpenAPI document.

Each example was recorded from the service and is validated against the operation's
models by tests/test_openapi.py, so an example that no longer fits its schema fails there.
"""

from typing import Any

ENDPOINT_ID = "wh_15b3021bbbe742258b04e966347bd300_7c0eff6b97da8fffa61d7ef1f447696d"
WEBHOOK_URL = f"https://revcov.example.com/v1/webhooks/{ENDPOINT_ID}"
NEW_API_KEY = "rcv_15b3021bbbe742258b04e966347bd300_9jaWzd5bDkS1UQDdd7Pt9Ek2P9jvPtUXc8asDEruF6E"
# SHA-256 of the erased email, which the audit log keeps in its place.
ERASED_EMAIL_SHA256 = "7bb9e30283184c3b4bbbf2262a600be7165d7e6f50e424a611aa64394e7ecdb5"

NEW_SHARE_TOKEN = "rcs_15b3021bbbe742258b04e966347bd300_Zq1x8TgQ0rM3pVd7nKcE2wYhA5uJfLb9sR4tN6oXiHe"
SHARE_TOKEN: dict[str, Any] = {
    "id": "5f0c1a8e-2d4b-4c6f-9a7e-3b1d8e6f2a90",
    "name": "lobby-screen",
    "prefix": "rcs_15b3021bbbe742258b04e966347bd300_Zq1x8T",
    "created_at": "2026-03-02T09:15:00Z",
    "revoked_at": None,
}
# The start of a widget image; the whole image also draws the gauge and the legend.
WIDGET_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 640 220" role="img" '
    'aria-labelledby="widget-title"><title id="widget-title">Revenue coverage 2026-Q1: '
    "62.5% of $2.0M, target 80.0%</title>...</svg>"
)

PERIOD_2025_Q4: dict[str, Any] = {
    "label": "2025-Q4",
    "start": "2025-10-01T00:00:00Z",
    "end": "2026-01-01T00:00:00Z",
    "timezone": "UTC",
}
PERIOD_2026_Q1: dict[str, Any] = {
    "label": "2026-Q1",
    "start": "2026-01-01T00:00:00Z",
    "end": "2026-04-01T00:00:00Z",
    "timezone": "UTC",
}
CONTACT_LINK: dict[str, Any] = {
    "account_external_id": "ACME-001",
    "role": "decision_maker",
    "created_at": "2026-03-02T09:15:00Z",
    "updated_at": "2026-03-02T09:15:00Z",
}
RESPONSE_R1001: dict[str, Any] = {
    "source": "csv-import",
    "response_id": "r-1001",
    "account_external_id": "ACME-001",
    "matched_by": "account_external_id",
    "email": "jane@acme.com",
    "score": 9,
    "comment": "Fast support.",
    "submitted_at": "2026-02-10T09:30:00Z",
    "updated_at": None,
    "received_at": "2026-03-02T09:15:00Z",
    "erased_at": None,
}
ENDPOINT: dict[str, Any] = {
    "id": ENDPOINT_ID,
    "source": "typeform",
    "url": WEBHOOK_URL,
    "account_field": "account_id",
    "score_field": None,
    "comment_field": None,
    "timezone": "UTC",
    "api_base_url": None,
    "secret_count": 1,
    "has_token": False,
    "has_api_token": False,
    "created_at": "2026-03-02T09:15:00Z",
}
DELIVERY: dict[str, Any] = {
    "id": 1,
    "endpoint_id": ENDPOINT_ID,
    "source": "typeform",
    "delivery_key": "01JPB6W3ZQ4K8M2N7R5T9V1XYA",
    "event_type": "form_response",
    "status": "processed",
    "error": None,
    "response_id": "01JPB6W3ZQ4K8M2N7R5T9V1XYA",
    "attempts": 0,
    "next_attempt_at": None,
    "received_at": "2026-03-02T09:15:00Z",
}
COVERAGE_2026_Q1: dict[str, Any] = {
    "period": PERIOD_2026_Q1,
    "currency": "USD",
    "rollup": "latest",
    "level": "account",
    "target": 0.8,
    "total_revenue": "2100000.00",
    "covered_revenue": "1620000.00",
    "coverage": 0.7714,
    "meets_target": False,
    "buckets": {
        "at_risk": {"revenue": "1320000.00", "accounts": 1, "share": 0.6286},
        "passive": {"revenue": "0.00", "accounts": 0, "share": 0.0},
        "safe": {"revenue": "300000.00", "accounts": 1, "share": 0.1429},
        "unaccounted": {"revenue": "480000.00", "accounts": 1, "share": 0.2286},
    },
    "accounts": {"total": 3, "covered": 2},
    "responses": {"scored": 3, "unmatched": 0},
    "nps": {"respondent": 33.33, "account": 0.0, "revenue_weighted": -62.96, "null_reasons": {}},
    "accounts_for_half_revenue": {"at_risk": 1, "passive": 0, "safe": 1, "unaccounted": 1},
}

EXAMPLES: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/v1/tenant"): {
        "status": 200,
        "response": {
            "id": "15b3021b-bbe7-4225-8b04-e966347bd300",
            "name": "acme",
            "timezone": "UTC",
            "reporting_currency": "USD",
            "coverage_target": 0.8,
            "default_rollup": "latest",
            "fiscal_year_start_month": 1,
            "account_nps_safe_above": 30,
            "account_nps_at_risk_below": 0,
            "revenue_tiers": [
                {"label": "under-25M", "min_revenue": "0"},
                {"label": "25M-250M", "min_revenue": "25000000"},
            ],
            "min_responses": 1,
        },
    },
    ("PATCH", "/v1/tenant"): {
        "request": {"timezone": "Europe/Berlin", "coverage_target": "0.75"},
        "status": 200,
        "response": {
            "id": "15b3021b-bbe7-4225-8b04-e966347bd300",
            "name": "acme",
            "timezone": "Europe/Berlin",
            "reporting_currency": "USD",
            "coverage_target": 0.75,
            "default_rollup": "latest",
            "fiscal_year_start_month": 1,
            "account_nps_safe_above": 30,
            "account_nps_at_risk_below": 0,
            "revenue_tiers": [
                {"label": "under-25M", "min_revenue": "0"},
                {"label": "25M-250M", "min_revenue": "25000000"},
            ],
            "min_responses": 1,
        },
    },
    ("POST", "/v1/api-keys"): {
        "request": {"name": "crm-sync", "scopes": ["ingest"]},
        "status": 201,
        "response": {
            "id": "dc396be0-ed5b-4e46-8339-06ce12b4b7b7",
            "name": "crm-sync",
            "prefix": "rcv_15b3021bbbe742258b04e966347bd300_9jaWzd",
            "scopes": ["ingest"],
            "created_at": "2026-03-02T09:15:00Z",
            "revoked_at": None,
            "api_key": NEW_API_KEY,
        },
    },
    ("GET", "/v1/api-keys"): {
        "status": 200,
        "response": [
            {
                "id": "b784b7be-0bb4-4e3e-bb4f-80ae65154144",
                "name": "initial",
                "prefix": "rcv_15b3021bbbe742258b04e966347bd300_vqgGoN",
                "scopes": ["ingest", "read"],
                "created_at": "2026-03-02T09:15:00Z",
                "revoked_at": None,
            },
            {
                "id": "dc396be0-ed5b-4e46-8339-06ce12b4b7b7",
                "name": "crm-sync",
                "prefix": "rcv_15b3021bbbe742258b04e966347bd300_9jaWzd",
                "scopes": ["ingest"],
                "created_at": "2026-03-02T09:15:00Z",
                "revoked_at": None,
            },
        ],
    },
    ("DELETE", "/v1/api-keys/{key_id}"): {
        "status": 200,
        "response": {
            "id": "dc396be0-ed5b-4e46-8339-06ce12b4b7b7",
            "name": "crm-sync",
            "prefix": "rcv_15b3021bbbe742258b04e966347bd300_9jaWzd",
            "scopes": ["ingest"],
            "created_at": "2026-03-02T09:15:00Z",
            "revoked_at": "2026-03-02T09:15:00Z",
        },
    },
    ("POST", "/v1/share-tokens"): {
        "request": {"name": "lobby-screen"},
        "status": 201,
        "response": {**SHARE_TOKEN, "share_token": NEW_SHARE_TOKEN},
    },
    ("GET", "/v1/share-tokens"): {"status": 200, "response": [SHARE_TOKEN]},
    ("DELETE", "/v1/share-tokens/{token_id}"): {
        "status": 200,
        "response": {**SHARE_TOKEN, "revoked_at": "2026-03-09T16:40:00Z"},
    },
    ("GET", "/v1/widgets/coverage.svg"): {
        "status": 200,
        "response": WIDGET_SVG,
        "parameters": {"period": "2026-Q1", "token": NEW_SHARE_TOKEN},
    },
    ("PUT", "/v1/accounts/{external_id}"): {
        "request": {
            "name": "Acme Corp",
            "region": "EMEA",
            "industry": "Manufacturing",
            "owner": "Dana Kim",
            "attributes": {"plan": "enterprise"},
            "domains": ["acme.com"],
            "revenue": {
                "amount": "250000.00",
                "currency": "USD",
                "effective_at": "2026-01-01T00:00:00Z",
            },
        },
        "status": 201,
        "response": {
            "external_id": "ACME-001",
            "parent_external_id": None,
            "merged_into_external_id": None,
            "merged_at": None,
            "name": "Acme Corp",
            "region": "EMEA",
            "industry": "Manufacturing",
            "owner": "Dana Kim",
            "attributes": {"plan": "enterprise"},
            "domains": ["acme.com"],
            "revenue": {
                "amount": "250000.00",
                "currency": "USD",
                "effective_at": "2026-01-01T00:00:00Z",
            },
            "created_at": "2026-03-02T09:15:00Z",
            "updated_at": "2026-03-02T09:15:00Z",
            "revenue_history": [
                {"amount": "250000.00", "currency": "USD", "effective_at": "2026-01-01T00:00:00Z"}
            ],
        },
    },
    ("POST", "/v1/accounts/{external_id}/merge"): {
        "request": {"into": "ACME-001", "effective_at": "2026-04-01T00:00:00Z"},
        "status": 200,
        "response": {
            "account_external_id": "ACME-EU-7",
            "into_external_id": "ACME-001",
            "survivor_external_id": "ACME-001",
            "effective_at": "2026-04-01T00:00:00Z",
            "moved": {"responses": 2, "contact_links": 1, "domains": 1, "children": 0},
            "replayed": False,
        },
        "parameters": {"external_id": "ACME-EU-7"},
    },
    ("POST", "/v1/revenue-updates"): {
        "request": {
            "updates": [
                {
                    "account_external_id": "ACME-001",
                    "amount": "300000.00",
                    "currency": "USD",
                    "effective_at": "2026-02-01T00:00:00Z",
                },
                {
                    "account_external_id": "GLOBEX-7",
                    "account_name": "Globex",
                    "amount": "1200000",
                    "currency": "EUR",
                    "effective_at": "2026-01-01T00:00:00Z",
                },
            ]
        },
        "status": 200,
        "response": {"created": 2, "updated": 0, "unchanged": 0, "accounts_created": 1},
    },
    ("PUT", "/v1/fx-rates"): {
        "request": {
            "rates": [{"currency": "EUR", "rate": "1.10", "effective_at": "2025-12-01T00:00:00Z"}]
        },
        "status": 200,
        "response": {"created": 1, "updated": 0, "unchanged": 0},
    },
    ("GET", "/v1/fx-rates"): {
        "status": 200,
        "response": {
            "items": [
                {
                    "currency": "EUR",
                    "reporting_currency": "USD",
                    "rate": "1.1",
                    "effective_at": "2025-12-01T00:00:00Z",
                }
            ],
            "next_cursor": None,
        },
    },
    ("GET", "/v1/accounts"): {
        "parameters": {"limit": 1},
        "status": 200,
        "response": {
            "items": [
                {
                    "external_id": "ACME-001",
                    "parent_external_id": None,
                    "merged_into_external_id": None,
                    "merged_at": None,
                    "name": "Acme Corp",
                    "region": "EMEA",
                    "industry": "Manufacturing",
                    "owner": "Dana Kim",
                    "attributes": {"plan": "enterprise"},
                    "domains": ["acme.com"],
                    "revenue": {
                        "amount": "300000.00",
                        "currency": "USD",
                        "effective_at": "2026-02-01T00:00:00Z",
                    },
                    "created_at": "2026-03-02T09:15:00Z",
                    "updated_at": "2026-03-02T09:15:00Z",
                }
            ],
            "next_cursor": "eyJhZnRlciI6IkFDTUUtMDAxIn0",
        },
    },
    ("GET", "/v1/accounts/{external_id}"): {
        "status": 200,
        "response": {
            "external_id": "ACME-001",
            "parent_external_id": None,
            "merged_into_external_id": None,
            "merged_at": None,
            "name": "Acme Corp",
            "region": "EMEA",
            "industry": "Manufacturing",
            "owner": "Dana Kim",
            "attributes": {"plan": "enterprise"},
            "domains": ["acme.com"],
            "revenue": {
                "amount": "300000.00",
                "currency": "USD",
                "effective_at": "2026-02-01T00:00:00Z",
            },
            "created_at": "2026-03-02T09:15:00Z",
            "updated_at": "2026-03-02T09:15:00Z",
            "revenue_history": [
                {"amount": "300000.00", "currency": "USD", "effective_at": "2026-02-01T00:00:00Z"},
                {"amount": "250000.00", "currency": "USD", "effective_at": "2026-01-01T00:00:00Z"},
            ],
        },
    },
    ("PUT", "/v1/contacts/{email}"): {
        "request": {"account_external_id": "ACME-001", "role": "decision_maker"},
        "status": 201,
        "response": {"email": "jane@acme.com", "accounts": [CONTACT_LINK]},
    },
    ("GET", "/v1/contacts"): {
        "status": 200,
        "response": {
            "items": [{"email": "jane@acme.com", "accounts": [CONTACT_LINK]}],
            "next_cursor": None,
        },
    },
    ("GET", "/v1/contacts/{email}"): {
        "status": 200,
        "response": {"email": "jane@acme.com", "accounts": [CONTACT_LINK]},
    },
    ("POST", "/v1/responses"): {
        "request": {
            "responses": [
                {
                    "source": "csv-import",
                    "response_id": "r-1001",
                    "account_external_id": "ACME-001",
                    "email": "jane@acme.com",
                    "score": 9,
                    "comment": "Fast support.",
                    "submitted_at": "2026-02-10T09:30:00Z",
                },
                {
                    "source": "csv-import",
                    "response_id": "r-1002",
                    "email": "sam@initech.example",
                    "score": 4,
                    "submitted_at": "2026-02-11T10:00:00Z",
                },
            ]
        },
        "status": 200,
        "response": {"created": 2, "updated": 0, "unchanged": 0},
    },
    ("GET", "/v1/responses"): {
        "parameters": {"limit": 1},
        "status": 200,
        "response": {"items": [RESPONSE_R1001], "next_cursor": "eyJhZnRlciI6MX0"},
    },
    ("GET", "/v1/responses/unmatched"): {
        "status": 200,
        "response": {
            "items": [
                {
                    "source": "csv-import",
                    "response_id": "r-1002",
                    "sent_account_external_id": None,
                    "reason": "no_match",
                    "email": "sam@initech.example",
                    "score": 4,
                    "comment": None,
                    "submitted_at": "2026-02-11T10:00:00Z",
                    "updated_at": None,
                    "received_at": "2026-03-02T09:15:00Z",
                }
            ],
            "next_cursor": None,
        },
    },
    ("GET", "/v1/responses/{source}/{response_id}"): {"status": 200, "response": RESPONSE_R1001},
    ("POST", "/v1/responses/{source}/{response_id}/assign"): {
        "request": {"account_external_id": "GLOBEX-7"},
        "status": 200,
        "response": {
            "source": "csv-import",
            "response_id": "r-1002",
            "account_external_id": "GLOBEX-7",
            "matched_by": "manual",
            "email": "sam@initech.example",
            "score": 4,
            "comment": None,
            "submitted_at": "2026-02-11T10:00:00Z",
            "updated_at": None,
            "received_at": "2026-03-02T09:15:00Z",
            "erased_at": None,
        },
    },
    ("POST", "/v1/webhook-endpoints"): {
        "request": {"source": "typeform", "secret": "tf_test_secret_5d1c9a7e"},
        "status": 201,
        "response": {
            "id": ENDPOINT_ID,
            "source": "typeform",
            "url": WEBHOOK_URL,
            "account_field": "account_id",
            "score_field": None,
            "comment_field": None,
            "timezone": "UTC",
            "api_base_url": None,
            "secret_count": 1,
            "has_token": False,
            "has_api_token": False,
            "created_at": "2026-03-02T09:15:00Z",
            "secret": "tf_test_secret_5d1c9a7e",
        },
    },
    ("GET", "/v1/webhook-endpoints"): {
        "status": 200,
        "response": {"items": [ENDPOINT], "next_cursor": None},
    },
    ("GET", "/v1/webhook-endpoints/{endpoint_id}"): {"status": 200, "response": ENDPOINT},
    ("PATCH", "/v1/webhook-endpoints/{endpoint_id}"): {
        "request": {"score_field": "nps_score"},
        "status": 200,
        "response": {
            "id": ENDPOINT_ID,
            "source": "typeform",
            "url": WEBHOOK_URL,
            "account_field": "account_id",
            "score_field": "nps_score",
            "comment_field": None,
            "timezone": "UTC",
            "api_base_url": None,
            "secret_count": 1,
            "has_token": False,
            "has_api_token": False,
            "created_at": "2026-03-02T09:15:00Z",
        },
    },
    ("POST", "/v1/webhooks/{endpoint_id}"): {
        "request": {
            "event_id": "01JPB6W3ZQ4K8M2N7R5T9V1XYA",
            "event_type": "form_response",
            "form_response": {
                "form_id": "lT4Z3j",
                "token": "01JPB6W3ZQ4K8M2N7R5T9V1XYA",
                "submitted_at": "2026-02-12T14:03:27Z",
                "hidden": {"account_id": "ACME-001", "email": "jane@acme.com"},
                "answers": [
                    {
                        "type": "number",
                        "number": 9,
                        "field": {"id": "nps1", "type": "opinion_scale"},
                    },
                    {
                        "type": "text",
                        "text": "Fast support.",
                        "field": {"id": "why1", "type": "long_text"},
                    },
                ],
            },
        },
        "status": 200,
        "response": {"status": "processed", "delivery_id": 1, "detail": None},
    },
    ("GET", "/v1/webhook-deliveries"): {
        "status": 200,
        "response": {"items": [DELIVERY], "next_cursor": None},
    },
    ("GET", "/v1/webhook-deliveries/{delivery_id}"): {"status": 200, "response": DELIVERY},
    ("POST", "/v1/webhook-deliveries/{delivery_id}/replay"): {
        "status": 200,
        "response": {"status": "processed", "delivery_id": 1, "detail": None},
    },
    ("GET", "/v1/coverage"): {
        "parameters": {"period": "2026-Q1"},
        "status": 200,
        "response": COVERAGE_2026_Q1,
    },
    ("GET", "/v1/coverage/segments"): {
        "parameters": {"period": "2026-Q1", "by": "region"},
        "status": 200,
        "response": {
            "by": "region",
            "segments": [
                {
                    "period": PERIOD_2026_Q1,
                    "currency": "USD",
                    "rollup": "latest",
                    "level": "account",
                    "target": 0.8,
                    "total_revenue": "1320000.00",
                    "covered_revenue": "1320000.00",
                    "coverage": 1.0,
                    "meets_target": True,
                    "buckets": {
                        "at_risk": {"revenue": "1320000.00", "accounts": 1, "share": 1.0},
                        "passive": {"revenue": "0.00", "accounts": 0, "share": 0.0},
                        "safe": {"revenue": "0.00", "accounts": 0, "share": 0.0},
                        "unaccounted": {"revenue": "0.00", "accounts": 0, "share": 0.0},
                    },
                    "accounts": {"total": 1, "covered": 1},
                    "responses": {"scored": 1, "unmatched": 0},
                    "nps": {
                        "respondent": -100.0,
                        "account": -100.0,
                        "revenue_weighted": -100.0,
                        "null_reasons": {},
                    },
                    "accounts_for_half_revenue": {
                        "at_risk": 1,
                        "passive": 0,
                        "safe": 0,
                        "unaccounted": 0,
                    },
                    "segment": "unassigned",
                    "unassigned": True,
                },
                {
                    "period": PERIOD_2026_Q1,
                    "currency": "USD",
                    "rollup": "latest",
                    "level": "account",
                    "target": 0.8,
                    "total_revenue": "480000.00",
                    "covered_revenue": "0.00",
                    "coverage": 0.0,
                    "meets_target": False,
                    "buckets": {
                        "at_risk": {"revenue": "0.00", "accounts": 0, "share": 0.0},
                        "passive": {"revenue": "0.00", "accounts": 0, "share": 0.0},
                        "safe": {"revenue": "0.00", "accounts": 0, "share": 0.0},
                        "unaccounted": {"revenue": "480000.00", "accounts": 1, "share": 1.0},
                    },
                    "accounts": {"total": 1, "covered": 0},
                    "responses": {"scored": 0, "unmatched": 0},
                    "nps": {
                        "respondent": None,
                        "account": None,
                        "revenue_weighted": None,
                        "null_reasons": {
                            "respondent": "no_data",
                            "account": "no_data",
                            "revenue_weighted": "no_data",
                        },
                    },
                    "accounts_for_half_revenue": {
                        "at_risk": 0,
                        "passive": 0,
                        "safe": 0,
                        "unaccounted": 1,
                    },
                    "segment": "NA",
                    "unassigned": False,
                },
            ],
        },
    },
    ("GET", "/v1/coverage/trend"): {
        "parameters": {"from": "2025-Q4", "to": "2026-Q1"},
        "status": 200,
        "response": {
            "granularity": "quarter",
            "periods": [
                {
                    "period": PERIOD_2025_Q4,
                    "currency": "USD",
                    "rollup": "latest",
                    "level": "account",
                    "target": 0.8,
                    "total_revenue": "480000.00",
                    "covered_revenue": "0.00",
                    "coverage": 0.0,
                    "meets_target": False,
                    "buckets": {
                        "at_risk": {"revenue": "0.00", "accounts": 0, "share": 0.0},
                        "passive": {"revenue": "0.00", "accounts": 0, "share": 0.0},
                        "safe": {"revenue": "0.00", "accounts": 0, "share": 0.0},
                        "unaccounted": {"revenue": "480000.00", "accounts": 1, "share": 1.0},
                    },
                    "accounts": {"total": 1, "covered": 0},
                    "responses": {"scored": 0, "unmatched": 0},
                    "nps": {
                        "respondent": None,
                        "account": None,
                        "revenue_weighted": None,
                        "null_reasons": {
                            "respondent": "no_data",
                            "account": "no_data",
                            "revenue_weighted": "no_data",
                        },
                    },
                    "accounts_for_half_revenue": {
                        "at_risk": 0,
                        "passive": 0,
                        "safe": 0,
                        "unaccounted": 1,
                    },
                },
                COVERAGE_2026_Q1,
            ],
        },
    },
    ("GET", "/v1/accounts/{external_id}/classification"): {
        "parameters": {"period": "2026-Q1"},
        "status": 200,
        "response": {
            "account_external_id": "ACME-001",
            "reported_as": "ACME-001",
            "period": PERIOD_2026_Q1,
            "rollup": "latest",
            "level": "account",
            "currency": "USD",
            "revenue": "300000.00",
            "bucket": "safe",
            "value": 9.0,
            "responses": [
                {
                    "source": "csv-import",
                    "response_id": "r-1001",
                    "email": "jane@acme.com",
                    "role": "decision_maker",
                    "score": 9,
                    "submitted_at": "2026-02-10T09:30:00Z",
                    "counted": False,
                },
                {
                    "source": "typeform",
                    "response_id": "01JPB6W3ZQ4K8M2N7R5T9V1XYA",
                    "email": "dana@example.com",
                    "role": None,
                    "score": 9,
                    "submitted_at": "2026-03-12T09:15:47Z",
                    "counted": True,
                },
            ],
        },
    },
    ("GET", "/v1/reports/at-risk"): {
        "csv_response": (
            "account_external_id,name,revenue,score,comment,email,submitted_at\r\n"
            "GLOBEX-7,Globex,1320000.00,4,,sam@initech.example,2026-02-11T10:00:00+00:00\r\n"
        ),
        "parameters": {"period": "2026-Q1"},
        "status": 200,
        "response": {
            "items": [
                {
                    "account_external_id": "GLOBEX-7",
                    "name": "Globex",
                    "revenue": "1320000.00",
                    "score": 4,
                    "comment": None,
                    "email": "sam@initech.example",
                    "submitted_at": "2026-02-11T10:00:00Z",
                }
            ],
            "next_cursor": None,
        },
    },
    ("GET", "/v1/reports/survey-next"): {
        "csv_response": (
            "account_external_id,name,revenue,cumulative_coverage,reaches_target,"
            "days_since_last_response,contacts\r\n"
            "INITECH-3,Initech,480000.00,1.0000,true,,\r\n"
        ),
        "parameters": {"period": "2026-Q1"},
        "status": 200,
        "response": {
            "items": [
                {
                    "account_external_id": "INITECH-3",
                    "name": "Initech",
                    "revenue": "480000.00",
                    "cumulative_coverage": 1.0,
                    "reaches_target": True,
                    "days_since_last_response": None,
                    "contacts": [],
                }
            ],
            "next_cursor": None,
        },
    },
    ("GET", "/v1/reports/flow"): {
        "parameters": {"from": "2025-Q4", "to": "2026-Q1"},
        "status": 200,
        "response": {
            "from": PERIOD_2025_Q4,
            "to": PERIOD_2026_Q1,
            "currency": "USD",
            "rollup": "latest",
            "level": "account",
            "flows": [
                {
                    "from_state": "unaccounted",
                    "to_state": "unaccounted",
                    "accounts": 1,
                    "revenue_from": "480000.00",
                    "revenue_to": "480000.00",
                },
                {
                    "from_state": "not_in_base",
                    "to_state": "at_risk",
                    "accounts": 1,
                    "revenue_from": "0.00",
                    "revenue_to": "1320000.00",
                },
            ],
        },
    },
    ("POST", "/v1/privacy/erase"): {
        "request": {"email": "jane@acme.com"},
        "status": 200,
        "response": {
            "responses": 1,
            "webhook_deliveries": 0,
            "contact_links": 1,
            "audit_event_id": 2,
        },
    },
    ("GET", "/v1/audit-events"): {
        "status": 200,
        "response": {
            "items": [
                {
                    "id": 1,
                    "action": "response.deleted",
                    "subject_sha256": None,
                    "source": "csv-import",
                    "response_id": "r-1002",
                    "actor_key_id": "b784b7be-0bb4-4e3e-bb4f-80ae65154144",
                    "object_id": None,
                    "counts": {"responses": 1},
                    "details": {},
                    "created_at": "2026-03-02T09:15:00Z",
                },
                {
                    "id": 2,
                    "action": "person.erased",
                    "subject_sha256": ERASED_EMAIL_SHA256,
                    "source": None,
                    "response_id": None,
                    "actor_key_id": "b784b7be-0bb4-4e3e-bb4f-80ae65154144",
                    "object_id": None,
                    "counts": {"responses": 1, "contact_links": 1, "webhook_deliveries": 0},
                    "details": {},
                    "created_at": "2026-03-02T09:15:00Z",
                },
            ],
            "next_cursor": None,
        },
    },
    ("GET", "/"): {
        "status": 200,
        "response": {
            "service": "revcov",
            "version": "0.1.0",
            "docs": "/docs",
            "redoc": "/redoc",
            "openapi": "/openapi.json",
            "dashboard": "/dashboard",
            "health": "/healthz",
            "readiness": "/readyz",
        },
    },
    ("GET", "/healthz"): {"status": 200, "response": {"status": "ok"}},
    ("GET", "/readyz"): {
        "status": 200,
        "response": {
            "ready": True,
            "database": "ok",
            "schema_revision": "4c8e2a17f3d9",
            "expected_revision": "4c8e2a17f3d9",
        },
    },
}
