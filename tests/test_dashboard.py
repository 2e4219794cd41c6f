"""The dashboard page and its static files: served by the service, strict CSP, no outside assets."""

import re

import httpx
import pytest

from app.dashboard.router import STATIC_DIR

ASSETS = ("/dashboard/static/dashboard.js", "/dashboard/static/dashboard.css")


class TestDashboardPage:
    async def test_page_served_without_key(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/dashboard")

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert 'id="sign-in-form"' in response.text

    @pytest.mark.parametrize("path", ["/dashboard", *ASSETS])
    async def test_responses_carry_strict_csp(self, client: httpx.AsyncClient, path: str) -> None:
        response = await client.get(path)

        assert response.status_code == 200
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert "unsafe-eval" not in policy
        assert "frame-ancestors 'none'" in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-cache"

    async def test_assets_have_their_types(self, client: httpx.AsyncClient) -> None:
        script = await client.get(ASSETS[0])
        style = await client.get(ASSETS[1])

        assert script.headers["content-type"].startswith(
            ("text/javascript", "application/javascript")
        )
        assert style.headers["content-type"].startswith("text/css")

    async def test_trailing_slash_redirects(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/dashboard/")

        assert response.status_code == 308
        assert response.headers["location"] == "/dashboard"

    async def test_missing_asset_404(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/dashboard/static/missing.js")

        assert response.status_code == 404

    def test_page_loads_nothing_from_outside(self) -> None:
        page = (STATIC_DIR / "index.html").read_text()

        references = re.findall(r'(?:src|href)="([^"]*)"', page)

        assert references
        for reference in references:
            assert reference.startswith(("/dashboard/static/", "#", "data:")), reference

    def test_no_inline_script_or_style(self) -> None:
        page = (STATIC_DIR / "index.html").read_text()

        assert re.search(r"<script(?![^>]*\ssrc=)", page) is None
        assert "style=" not in page
        assert "<style" not in page

    def test_script_writes_no_markup_strings(self) -> None:
        script = (STATIC_DIR / "dashboard.js").read_text()

        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in script
        assert "localStorage" not in script
