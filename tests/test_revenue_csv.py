"""CSV revenue imports through POST /v1/revenue-updates (text/csv) and `revcov import-revenue`:
declared separators, header mapping, line-numbered rejections and all-or-nothing writes."""

import asyncio
import json
import os
import random
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.accounts.revenue_csv import parse_amount
from tests.conftest import make_tenant
from tests.helpers import assert_problem, client_with_key

CSV = {"Content-Type": "text/csv"}
ROWS_100K = 100_000
EUROPEAN_OPTIONS = ("--delimiter", ";", "--decimal", ",", "--thousands", ".")


async def post_csv(
    api: httpx.AsyncClient, text: str | bytes, **params: str | list[str]
) -> httpx.Response:
    body = text.encode() if isinstance(text, str) else text
    return await api.post("/v1/revenue-updates", content=body, headers=CSV, params=params)


async def account(api: httpx.AsyncClient, external_id: str) -> dict[str, Any]:
    response = await api.get(f"/v1/accounts/{external_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def total_revenue_q1(api: httpx.AsyncClient) -> tuple[Decimal, int]:
    response = await api.get("/v1/coverage", params={"period": "2026-Q1"})
    assert response.status_code == 200, response.text
    report = response.json()
    return Decimal(report["total_revenue"]), report["accounts"]["total"]


def european(amount: Decimal) -> str:
    """Write an amount as European exports do: 1.234.567,89."""
    whole, fraction = f"{amount:.2f}".split(".")
    groups: list[str] = []
    while len(whole) > 3:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    groups.insert(0, whole)
    return ".".join(groups) + "," + fraction


def european_file(rows: int, seed: int) -> tuple[str, Decimal]:
    """A semicolon-delimited CSV of `rows` accounts with European amounts, and their sum."""
    generator = random.Random(seed)
    lines = ["Account ID;Account Name;Revenue;Currency;Effective Date"]
    total = Decimal(0)
    for index in range(rows):
        cents = generator.randrange(1, 10**11)
        amount = Decimal(cents).scaleb(-2)
        total += amount
        lines.append(f"EU-{index:06d};Kunde {index};{european(amount)};USD;2026-01-01")
    return "\n".join(lines) + "\n", total


class TestParseAmount:
    @pytest.mark.parametrize(
        ("text", "decimal", "thousands", "expected"),
        [
            ("1234.56", ".", None, "1234.56"),
            ("1,234.56", ".", ",", "1234.56"),
            ("1.234.567,89", ",", ".", "1234567.89"),
            ("1 234 567,89", ",", " ", "1234567.89"),
            ("1\u202f234,50", ",", " ", "1234.50"),
            ("1'234'567.5", ".", "'", "1234567.5"),
            ("1234", ",", ".", "1234"),
            ("1.234", ",", ".", "1234"),
            ("0,5", ",", None, "0.5"),
            (" 42 ", ".", None, "42"),
        ],
    )
    def test_declared_separators_read(
        self, text: str, decimal: str, thousands: str | None, expected: str
    ) -> None:
        assert parse_amount(text, decimal, thousands) == Decimal(expected)

    @pytest.mark.parametrize(
        ("text", "decimal", "thousands", "reason"),
        [
            ("1,234", ".", None, "declared separators"),
            ("1.234", ",", None, "declared separators"),
            ("1,234.56", ",", ".", "after the decimal separator"),
            ("1.234,56", ".", ",", "after the decimal separator"),
            ("12,34,567", ".", ",", "wrong places"),
            ("1,23", ".", ",", "wrong places"),
            ("1234,567.89", ".", ",", "wrong places"),
            ("1.2.3", ".", None, "more than once"),
            ("12,", ",", None, "both sides"),
            (",5", ",", None, "both sides"),
            ("$100", ".", None, "not a number"),
            ("1e5", ".", None, "not a number"),
            ("", ".", None, "empty"),
        ],
    )
    def test_undeclared_forms_rejected(
        self, text: str, decimal: str, thousands: str | None, reason: str
    ) -> None:
        with pytest.raises(ValueError, match=reason):
            parse_amount(text, decimal, thousands)


class TestCsvApi:
    async def test_small_file_imported(self, api: httpx.AsyncClient) -> None:
        text = (
            "account_external_id,account_name,amount,currency,effective_at\n"
            "ACME-1,Acme,250000.00,USD,2026-01-01T00:00:00Z\n"
            "\n"
            "GLOBEX-7,Globex,1200000,EUR,2026-01-01\n"
        )

        response = await post_csv(api, text)

        assert response.status_code == 200, response.text
        summary = response.json()
        assert summary["lines"] == 2
        assert summary["accepted"] == 2
        assert summary["rejected"] == 0
        assert summary["created"] == 2
        assert summary["accounts_created"] == 2
        assert summary["errors"] == []
        acme = await account(api, "ACME-1")
        assert acme["name"] == "Acme"
        assert acme["revenue"]["amount"] == "250000.00"
        globex = await account(api, "GLOBEX-7")
        assert globex["revenue"]["currency"] == "EUR"
        assert globex["revenue"]["effective_at"] == "2026-01-01T00:00:00Z"

    async def test_zeros_past_minor_unit_stored(self, api: httpx.AsyncClient) -> None:
        # 17,000 zeros after the point: more than PostgreSQL's NUMERIC takes as they are.
        text = (
            "account_external_id,amount,currency,effective_at\n"
            f"ACME-1,0.{'0' * 17000},USD,2026-01-01T00:00:00Z\n"
            f"ACME-2,12.{'0' * 17000},USD,2026-01-01T00:00:00Z\n"
        )

        response = await post_csv(api, text)
        stored = [(await api.get(f"/v1/accounts/ACME-{n}")).json() for n in (1, 2)]

        assert response.status_code == 200, response.text
        assert [account["revenue"]["amount"] for account in stored] == ["0.00", "12.00"]

    async def test_date_is_tenant_midnight(self, api: httpx.AsyncClient) -> None:
        await api.patch("/v1/tenant", json={"timezone": "Europe/Berlin"})

        response = await post_csv(
            api, "account_id,amount,currency,date\nACME-1,10.00,USD,2026-01-01\n"
        )

        assert response.status_code == 200, response.text
        revenue = (await account(api, "ACME-1"))["revenue"]
        assert revenue["effective_at"] == "2025-12-31T23:00:00Z"

    async def test_mapping_and_default_currency(self, api: httpx.AsyncClient) -> None:
        text = "Customer;ARR (EUR);Since\nACME-1;1.234.567,89;2026-01-01\n"

        response = await post_csv(
            api,
            text,
            delimiter=";",
            decimal=",",
            thousands=".",
            currency="EUR",
            column=["account_external_id=Customer", "amount=ARR (EUR)", "effective_at=Since"],
        )

        assert response.status_code == 200, response.text
        revenue = (await account(api, "ACME-1"))["revenue"]
        assert revenue["amount"] == "1234567.89"
        assert revenue["currency"] == "EUR"

    async def test_ambiguous_value_rejects_file(self, api: httpx.AsyncClient) -> None:
        text = (
            "account_id,amount,currency,effective_at\n"
            "ACME-1,1000.00,USD,2026-01-01\n"
            'ACME-2,"1,234",USD,2026-01-01\n'
            "ACME-3,2000.00,USD,2026-01-01\n"
        )

        response = await post_csv(api, text)

        problem = assert_problem(response, 422)
        assert problem["type"] == "urn:revcov:problem:csv-lines-rejected"
        assert "1 of 3 lines" in problem["detail"]
        assert "line 3, column amount" in problem["detail"]
        assert problem["errors"][0]["location"] == "line 3, column amount"
        assert "'1,234'" in problem["errors"][0]["message"]
        assert_problem(await api.get("/v1/accounts/ACME-1"), 404)
        assert_problem(await api.get("/v1/accounts/ACME-3"), 404)

    async def test_skip_imports_valid_lines(self, api: httpx.AsyncClient) -> None:
        text = (
            "account_id,amount,currency,effective_at\n"
            "ACME-1,1000.00,USD,2026-01-01\n"
            "ACME-2,12.345,USD,2026-01-01\n"
            "ACME-3,5,XXX,2026-01-01\n"
            "ACME-4,7,USD,2026-01-01T00:00:00\n"
            "ACME-5,8,USD\n"
        )

        response = await post_csv(api, text, on_error="skip")

        assert response.status_code == 200, response.text
        summary = response.json()
        assert summary["lines"] == 5
        assert summary["accepted"] == 1
        assert summary["rejected"] == 4
        errors = {error["line"]: error for error in summary["errors"]}
        assert errors[3]["column"] == "amount"
        assert "more decimal places" in errors[3]["message"]
        assert errors[4]["column"] == "currency"
        assert errors[5]["column"] == "effective_at"
        assert "no UTC offset" in errors[5]["message"]
        assert errors[6]["column"] is None
        assert "has 3 fields" in errors[6]["message"]
        assert (await account(api, "ACME-1"))["revenue"]["amount"] == "1000.00"
        assert_problem(await api.get("/v1/accounts/ACME-2"), 404)

    async def test_invalid_account_id_quoted(self, api: httpx.AsyncClient) -> None:
        text = "account_id,amount,currency,date\nACME/1,1,USD,2026-01-01\n"

        response = await post_csv(api, text)

        problem = assert_problem(response, 422)
        assert problem["errors"][0]["location"] == "line 2, column account_id"
        assert problem["errors"][0]["message"].startswith("'ACME/1' is invalid")

    async def test_missing_column_named(self, api: httpx.AsyncClient) -> None:
        response = await post_csv(api, "account_id,revenue,when\nACME-1,1,2026-01-01\n")

        problem = assert_problem(response, 422)
        assert problem["type"] == "urn:revcov:problem:invalid-csv"
        assert "effective_at" in problem["detail"]
        assert "currency" in problem["detail"]
        assert "effective_date" in problem["detail"]

    async def test_semicolon_file_hints_delimiter(self, api: httpx.AsyncClient) -> None:
        text = "account_id;amount;currency;effective_at\nACME-1;1;USD;2026-01-01\n"

        response = await post_csv(api, text)

        problem = assert_problem(response, 422)
        assert problem["type"] == "urn:revcov:problem:invalid-csv"
        assert "set delimiter to ;" in problem["detail"]

    async def test_two_columns_for_field_rejected(self, api: httpx.AsyncClient) -> None:
        text = "account_id,external_id,amount,currency,date\nA,B,1,USD,2026-01-01\n"

        response = await post_csv(api, text)

        problem = assert_problem(response, 422)
        assert "2 columns for account_external_id" in problem["detail"]

    async def test_invalid_options_rejected(self, api: httpx.AsyncClient) -> None:
        response = await post_csv(
            api, "account_id\n", decimal=";", thousands=".", currency="EURO", column=["amount"]
        )

        problem = assert_problem(response, 422)
        locations = [error["location"] for error in problem["errors"]]
        assert locations == ["query.decimal", "query.currency", "query.column"]
        assert "ISO 4217" in problem["errors"][1]["message"]

    async def test_same_separators_rejected(self, api: httpx.AsyncClient) -> None:
        response = await post_csv(api, "account_id\n", decimal=",", thousands=",")

        problem = assert_problem(response, 422)
        assert problem["errors"][0]["location"] == "query.thousands"

    async def test_invalid_utf8_names_line(self, api: httpx.AsyncClient) -> None:
        body = b"account_id,amount,currency,date\nM\xfcller,1,EUR,2026-01-01\n"

        response = await post_csv(api, body)

        problem = assert_problem(response, 422)
        assert "Line 2 is not valid UTF-8" in problem["detail"]

    async def test_other_charset_rejected(self, api: httpx.AsyncClient) -> None:
        response = await api.post(
            "/v1/revenue-updates",
            content=b"account_id\n",
            headers={"Content-Type": "text/csv; charset=latin-1"},
        )

        problem = assert_problem(response, 415)
        assert "UTF-8" in problem["detail"]

    async def test_empty_file_rejected(self, api: httpx.AsyncClient) -> None:
        problem = assert_problem(await post_csv(api, ""), 422)

        assert "empty" in problem["detail"]

    async def test_over_body_cap_rejected(self, api: httpx.AsyncClient) -> None:
        header = b"account_id,amount,currency,date\n"
        line = b"ACME-1,1,USD,2026-01-01\n"
        body = header + line * (10 * 1024 * 1024 // len(line) + 1)

        response = await post_csv(api, body)

        assert_problem(response, 413)
        assert_problem(await api.get("/v1/accounts/ACME-1"), 404)

    async def test_replay_changes_nothing(self, api: httpx.AsyncClient) -> None:
        text = "account_id,amount,currency,date\nACME-1,1,USD,2026-01-01\n"
        await post_csv(api, text)

        response = await post_csv(api, text)

        assert response.json()["unchanged"] == 1
        assert response.json()["created"] == 0

    async def test_json_body_still_accepted(self, api: httpx.AsyncClient) -> None:
        update = {
            "account_external_id": "ACME-1",
            "amount": "1.00",
            "currency": "USD",
            "effective_at": "2026-01-01T00:00:00Z",
        }

        response = await api.post("/v1/revenue-updates", json={"updates": [update]})

        assert response.status_code == 200, response.text
        assert response.json() == {
            "created": 1,
            "updated": 0,
            "unchanged": 0,
            "accounts_created": 1,
        }

    async def test_csv_options_on_json_rejected(self, api: httpx.AsyncClient) -> None:
        update = {
            "account_external_id": "ACME-1",
            "amount": "1.00",
            "currency": "USD",
            "effective_at": "2026-01-01T00:00:00Z",
        }

        response = await api.post(
            "/v1/revenue-updates", params={"on_error": "skip"}, json={"updates": [update]}
        )

        problem = assert_problem(response, 422)
        assert [error["location"] for error in problem["errors"]] == ["query.on_error"]
        assert "text/csv" in problem["errors"][0]["message"]
        assert (await api.get("/v1/accounts/ACME-1")).status_code == 404


class TestLargeEuropeanFile:
    async def test_api_imports_exactly(self, api: httpx.AsyncClient) -> None:
        text, expected_total = european_file(ROWS_100K, seed=7)

        response = await post_csv(api, text, delimiter=";", decimal=",", thousands=".")

        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == ROWS_100K
        assert response.json()["created"] == ROWS_100K
        total, accounts = await total_revenue_q1(api)
        assert total == expected_total
        assert accounts == ROWS_100K

    async def test_api_rejects_ambiguous_line(self, api: httpx.AsyncClient) -> None:
        text, _ = european_file(ROWS_100K, seed=8)
        lines = text.splitlines()
        lines[76_543] = "EU-076542;Kunde 76542;1,234.56;USD;2026-01-01"
        text = "\n".join(lines) + "\n"

        response = await post_csv(api, text, delimiter=";", decimal=",", thousands=".")

        problem = assert_problem(response, 422)
        assert problem["errors"] == [
            {
                "location": "line 76544, column Revenue",
                "message": problem["errors"][0]["message"],
            }
        ]
        assert "1 of 100000 lines" in problem["detail"]
        assert await total_revenue_q1(api) == (Decimal(0), 0)


async def run_import(database_url: str, *args: str, path: Path) -> tuple[int, str, str]:
    """Run `revcov import-revenue` in a subprocess against the test database."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("REVCOV_")}
    env.update(
        REVCOV_DATABASE_URL=database_url, REVCOV_ENVIRONMENT="test", REVCOV_LOG_FORMAT="json"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from app.cli import main; main()",
        "import-revenue",
        str(path),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=300)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


class TestImportCommand:
    async def test_large_european_file_exact(
        self, app: FastAPI, database_url: str, tmp_path: Path
    ) -> None:
        tenant_id, key = await make_tenant(app)
        text, expected_total = european_file(ROWS_100K, seed=9)
        path = tmp_path / "revenue.csv"
        path.write_text(text)

        code, stdout, stderr = await run_import(
            database_url,
            "--tenant",
            str(tenant_id),
            *EUROPEAN_OPTIONS,
            path=path,
        )

        assert code == 0, stderr
        summary = json.loads(stdout)
        assert summary["accepted"] == ROWS_100K
        assert summary["rejected"] == 0
        async with client_with_key(app, key) as api:
            total, accounts = await total_revenue_q1(api)
        assert total == expected_total
        assert accounts == ROWS_100K

    async def test_ambiguous_value_rejects_file(
        self, app: FastAPI, database_url: str, tmp_path: Path
    ) -> None:
        tenant_id, key = await make_tenant(app)
        text, _ = european_file(ROWS_100K, seed=10)
        lines = text.splitlines()
        lines[98_765] = "EU-098764;Kunde 98764;1.23,45;USD;2026-01-01"
        path = tmp_path / "revenue.csv"
        path.write_text("\n".join(lines) + "\n")

        code, stdout, stderr = await run_import(
            database_url,
            "--tenant",
            str(tenant_id),
            *EUROPEAN_OPTIONS,
            path=path,
        )

        assert code == 1
        assert "1 of 100000 lines are invalid, so nothing was imported" in stderr
        assert (
            "line 98766, column Revenue: '1.23,45' has thousands separators '.' in the wrong"
            in stderr
        )
        assert json.loads(stdout)["rejected"] == 1
        async with client_with_key(app, key) as api:
            assert await total_revenue_q1(api) == (Decimal(0), 0)

    async def test_unknown_tenant_fails(self, database_url: str, tmp_path: Path) -> None:
        path = tmp_path / "revenue.csv"
        path.write_text("account_id,amount,currency,date\n")

        code, _, stderr = await run_import(
            database_url, "--tenant", "0b7befcb-a761-43ca-9005-f05f9c77db3c", path=path
        )

        assert code == 1
        assert "no tenant 0b7befcb-a761-43ca-9005-f05f9c77db3c" in stderr

    async def test_invalid_option_exits_2(self, database_url: str, tmp_path: Path) -> None:
        path = tmp_path / "revenue.csv"
        path.write_text("account_id,amount,currency,date\n")

        code, _, stderr = await run_import(
            database_url,
            "--tenant",
            "0b7befcb-a761-43ca-9005-f05f9c77db3c",
            "--decimal",
            ";",
            path=path,
        )

        assert code == 2
        assert "--decimal must be . or ," in stderr
