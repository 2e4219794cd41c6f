"""The coverage widget SVG and the share tokens that open it for wall displays."""

import xml.etree.ElementTree as ET
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.reports.schemas import CoverageReport
from app.widgets.formatting import compact_money, percent
from app.widgets.svg import render_coverage_svg
from tests.helpers import assert_problem, client_with_key
from tests.report_data import build_book, get_json, load_book

SVG = "{http://www.w3.org/2000/svg}"
BUCKETS = ("at_risk", "passive", "safe", "unaccounted")
WIDGET = "/v1/widgets/coverage.svg"


def parse_svg(response: httpx.Response) -> ET.Element:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/svg+xml"
    return ET.fromstring(response.text)


def bar_segments(svg: ET.Element) -> dict[str, ET.Element]:
    return {
        rect.attrib["data-bucket"]: rect
        for rect in svg.iter(f"{SVG}rect")
        if "data-revenue" in rect.attrib
    }


def legend_texts(svg: ET.Element) -> dict[str, str]:
    return {
        text.attrib["data-bucket"]: "".join(text.itertext())
        for text in svg.iter(f"{SVG}text")
        if "data-bucket" in text.attrib
    }


async def create_share_token(api: httpx.AsyncClient, name: str = "lobby") -> dict[str, Any]:
    response = await api.post("/v1/share-tokens", json={"name": name})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
async def loaded_api(api: httpx.AsyncClient) -> httpx.AsyncClient:
    await load_book(api, build_book())
    return api


@pytest.mark.parametrize(
    ("ratio", "text"),
    [
        (0.9997, "99.9%"),
        (0.9995, "99.9%"),
        (1.0, "100.0%"),
        (0.8145, "81.5%"),
        (0.0004, "0.1%"),
        (0.0, "0.0%"),
        (None, "n/a"),
    ],
)
def test_percent_never_rounds_to_whole(ratio: float | None, text: str) -> None:
    assert percent(ratio) == text


class TestCoverageSvg:
    @pytest.mark.parametrize(
        ("period", "rollup"),
        [("2026-Q1", None), ("2025-Q3", "lowest"), ("2026-Q2", "account_nps")],
    )
    async def test_figures_equal_coverage(
        self, loaded_api: httpx.AsyncClient, period: str, rollup: str | None
    ) -> None:
        params = {"period": period, "as_of": "2026-12-01T00:00:00Z"}
        if rollup is not None:
            params["rollup"] = rollup

        report = await get_json(loaded_api, "/v1/coverage", params)
        svg = parse_svg(await loaded_api.get(WIDGET, params=params))

        segments = bar_segments(svg)
        legend = legend_texts(svg)
        assert sorted(segments) == sorted(BUCKETS)
        for name in BUCKETS:
            bucket = report["buckets"][name]
            assert segments[name].attrib["data-revenue"] == bucket["revenue"]
            assert segments[name].attrib["data-share"] == str(bucket["share"])
            assert segments[name].attrib["data-accounts"] == str(bucket["accounts"])
            assert compact_money(bucket["revenue"], "USD") in legend[name]
            assert percent(bucket["share"]) in legend[name]
        assert svg.attrib["data-period"] == period
        assert svg.attrib["data-rollup"] == report["rollup"]
        gauge = svg.find(f".//{SVG}g[@id='gauge']")
        assert gauge is not None
        assert gauge.attrib["data-coverage"] == str(report["coverage"])
        coverage_text = svg.find(f".//{SVG}text[@id='coverage-value']")
        assert coverage_text is not None
        assert coverage_text.text == percent(report["coverage"])

    async def test_segment_widths_add_up(self, loaded_api: httpx.AsyncClient) -> None:
        svg = parse_svg(await loaded_api.get(WIDGET, params={"period": "2026-Q1"}))

        widths = [Decimal(rect.attrib["width"]) for rect in bar_segments(svg).values()]

        assert sum(widths) == pytest.approx(Decimal(390), abs=Decimal("0.05"))

    async def test_empty_tenant_renders(self, api: httpx.AsyncClient) -> None:
        svg = parse_svg(await api.get(WIDGET, params={"period": "2026-Q1"}))

        coverage_text = svg.find(f".//{SVG}text[@id='coverage-value']")
        assert coverage_text is not None
        assert coverage_text.text == "n/a"
        assert all(rect.attrib["width"] == "0" for rect in bar_segments(svg).values())

    async def test_text_is_escaped(self, loaded_api: httpx.AsyncClient) -> None:
        # Every text in the SVG comes from validated values today; the rendering must
        # stay well-formed whatever text it gets.
        report = await get_json(loaded_api, "/v1/coverage", {"period": "2026-Q1"})
        report["period"]["label"] = "<script>&'\""

        svg = ET.fromstring(render_coverage_svg(CoverageReport.model_validate(report)))

        assert svg.attrib["data-period"] == "<script>&'\""
        assert svg.find(f".//{SVG}script") is None

    async def test_headers_forbid_active_content(self, loaded_api: httpx.AsyncClient) -> None:
        response = await loaded_api.get(WIDGET, params={"period": "2026-Q1"})

        assert response.headers["content-security-policy"] == "default-src 'none'; sandbox"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "<script" not in response.text
        assert "href" not in response.text

    async def test_invalid_period_422(self, api: httpx.AsyncClient) -> None:
        response = await api.get(WIDGET, params={"period": "Q1-2026"})

        problem = assert_problem(response, 422)
        assert "Q1-2026" in problem["detail"]

    async def test_missing_credentials_401(self, client: httpx.AsyncClient) -> None:
        response = await client.get(WIDGET)

        problem = assert_problem(response, 401)
        assert "token" in problem["detail"]


class TestShareTokens:
    async def test_token_opens_widget(
        self, app: FastAPI, loaded_api: httpx.AsyncClient, client: httpx.AsyncClient
    ) -> None:
        params = {"period": "2026-Q1", "rollup": "average"}
        created = await create_share_token(loaded_api)

        with_token = await client.get(WIDGET, params={**params, "token": created["share_token"]})
        with_key = await loaded_api.get(WIDGET, params=params)

        assert with_token.status_code == 200, with_token.text
        assert with_token.text == with_key.text
        assert created["share_token"].startswith("rcs_")
        assert created["prefix"] == created["share_token"][: len(created["prefix"])]

    async def test_token_cannot_read_coverage(
        self, app: FastAPI, loaded_api: httpx.AsyncClient
    ) -> None:
        token = (await create_share_token(loaded_api))["share_token"]

        async with client_with_key(app, token) as client:
            as_bearer = await client.get("/v1/coverage", params={"period": "2026-Q1"})
            as_query = await client.get(
                "/v1/coverage", params={"period": "2026-Q1", "token": token}
            )
            accounts = await client.get("/v1/accounts", params={"token": token})

        assert_problem(as_bearer, 401)
        assert_problem(as_query, 401)
        assert_problem(accounts, 401)

    async def test_revoked_token_401(
        self, loaded_api: httpx.AsyncClient, client: httpx.AsyncClient
    ) -> None:
        created = await create_share_token(loaded_api)
        params = {"period": "2026-Q1", "token": created["share_token"]}
        before = await client.get(WIDGET, params=params)

        revoked = await loaded_api.delete(f"/v1/share-tokens/{created['id']}")
        after = await client.get(WIDGET, params=params)

        assert before.status_code == 200, before.text
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["revoked_at"] is not None
        problem = assert_problem(after, 401)
        assert problem["type"] == "urn:revcov:problem:invalid-share-token"
        assert created["share_token"] not in after.text

    async def test_revoke_twice_keeps_first_time(self, api: httpx.AsyncClient) -> None:
        created = await create_share_token(api)

        first = await api.delete(f"/v1/share-tokens/{created['id']}")
        second = await api.delete(f"/v1/share-tokens/{created['id']}")

        assert first.status_code == 200, first.text
        assert second.json()["revoked_at"] == first.json()["revoked_at"]

    async def test_list_shows_no_token(self, api: httpx.AsyncClient) -> None:
        created = await create_share_token(api, name="wall")

        listed = await api.get("/v1/share-tokens")

        assert listed.status_code == 200, listed.text
        assert [item["id"] for item in listed.json()] == [created["id"]]
        assert listed.json()[0]["name"] == "wall"
        assert created["share_token"] not in listed.text

    async def test_other_tenant_token_sees_own_tenant(
        self,
        loaded_api: httpx.AsyncClient,
        other_api: httpx.AsyncClient,
        client: httpx.AsyncClient,
    ) -> None:
        other_token = (await create_share_token(other_api))["share_token"]
        params = {"period": "2026-Q1", "as_of": "2026-12-01T00:00:00Z"}

        svg = parse_svg(await client.get(WIDGET, params={**params, "token": other_token}))
        own = parse_svg(await loaded_api.get(WIDGET, params=params))

        other_total = svg.find(f".//{SVG}g[@id='revenue-bar']")
        own_total = own.find(f".//{SVG}g[@id='revenue-bar']")
        assert other_total is not None
        assert own_total is not None
        assert other_total.attrib["data-total-revenue"] == "0.00"
        assert own_total.attrib["data-total-revenue"] != "0.00"

    async def test_other_tenant_cannot_revoke(
        self, api: httpx.AsyncClient, other_api: httpx.AsyncClient
    ) -> None:
        created = await create_share_token(api)

        response = await other_api.delete(f"/v1/share-tokens/{created['id']}")
        listed = await api.get("/v1/share-tokens")

        assert_problem(response, 404)
        assert listed.json()[0]["revoked_at"] is None

    async def test_forged_token_401(
        self, loaded_api: httpx.AsyncClient, client: httpx.AsyncClient
    ) -> None:
        token = (await create_share_token(loaded_api))["share_token"]
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")

        responses = [
            await client.get(WIDGET, params={"token": value})
            for value in (forged, "", "rcs_not-a-token", token.replace("rcs_", "rcv_", 1))
        ]

        for response in responses:
            assert_problem(response, 401)

    async def test_name_required(self, api: httpx.AsyncClient) -> None:
        response = await api.post("/v1/share-tokens", json={"name": ""})

        assert_problem(response, 422)
