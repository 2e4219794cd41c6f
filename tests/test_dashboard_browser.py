"""The dashboard in headless Chromium against a real `revcov serve` loaded by `revcov demo`.

The test drives Debian's `chromium` over the Chrome DevTools Protocol with the `websockets`
package, so nothing is downloaded at test time. It skips when no Chromium binary is found.
Screenshots go to test-artifacts/ at the repository root.
"""

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from app.widgets.formatting import compact_money, percent

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
BUCKETS = ("at_risk", "passive", "safe", "unaccounted")
START_TIMEOUT = 180.0
PAGE_TIMEOUT = 60.0


def find_chromium() -> str | None:
    configured = os.environ.get("REVCOV_TEST_CHROMIUM")
    if configured:
        return shutil.which(configured)
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return found
    return None


CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium binary found: install Debian's `chromium` package, or set "
    "REVCOV_TEST_CHROMIUM to the path of a Chromium or Chrome binary",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def stop_process(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Service:
    base_url: str
    api_key: str


@pytest.fixture(scope="module")
def demo_service() -> Iterator[Service]:
    """A `revcov serve` on a loopback port with its own embedded PostgreSQL, loaded by
    `revcov demo`."""
    revcov = str(Path(sys.executable).with_name("revcov"))
    # A short directory, because the embedded server's Unix socket path has a length limit.
    data_dir = tempfile.mkdtemp(prefix="rcv-ui-")
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("REVCOV_") or key == "REVCOV_TEST_CHROMIUM"
    }
    env.update(
        REVCOV_DATA_DIR=data_dir,
        REVCOV_HOST="127.0.0.1",
        REVCOV_PORT=str(port),
        REVCOV_LOG_LEVEL="warning",
        REVCOV_LOG_FORMAT="json",
    )
    log_path = Path(data_dir) / "serve.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen([revcov, "serve"], env=env, stdout=log, stderr=log)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if server.poll() is not None:
                pytest.fail(f"revcov serve exited early:\n{log_path.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"revcov serve was not ready in time:\n{log_path.read_text()}")
            time.sleep(0.5)

        demo = subprocess.run(
            [revcov, "demo", "--url", base_url, "--accounts", "200", "--seed", "20261205"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert demo.returncode == 0, demo.stderr + demo.stdout
        match = re.search(r"API key\s+(\S+)", demo.stdout)
        assert match is not None, demo.stdout
        yield Service(base_url=base_url, api_key=match[1])
    finally:
        stop_process(server)
        shutil.rmtree(data_dir, ignore_errors=True)


@dataclass
class Page:
    """One browser tab driven over the Chrome DevTools Protocol."""

    connection: ClientConnection
    pending: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    next_id: int = 0

    async def read_messages(self) -> None:
        async for raw in self.connection:
            message = json.loads(raw)
            if "id" in message:
                future = self.pending.pop(message["id"], None)
                if future is not None and not future.done():
                    future.set_result(message)
            elif message.get("method") == "Runtime.exceptionThrown":
                details = message["params"]["exceptionDetails"]
                self.problems.append(f"exception: {details.get('exception', details)}")
            elif message.get("method") == "Log.entryAdded":
                entry = message["params"]["entry"]
                if entry["level"] == "error":
                    self.problems.append(f"{entry['source']}: {entry['text']}")

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = future
        await self.connection.send(
            json.dumps({"id": self.next_id, "method": method, "params": params})
        )
        message = await asyncio.wait_for(future, PAGE_TIMEOUT)
        if "error" in message:
            raise AssertionError(f"{method} failed: {message['error']}")
        result: dict[str, Any] = message["result"]
        return result

    async def evaluate(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression} threw {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, description: str) -> Any:
        deadline = time.monotonic() + PAGE_TIMEOUT
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                body = await self.evaluate("document.body.innerText")
                raise AssertionError(f"timed out waiting for {description}; page text:\n{body}")
            await asyncio.sleep(0.2)

    async def screenshot(
        self, name: str, width: int, *, mobile: bool, height: int | None = None
    ) -> Path:
        """Save a screenshot of the whole page, or of its top `height` pixels."""
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=900,
            deviceScaleFactor=1,
            mobile=mobile,
        )
        if height is None:
            height = await self.evaluate("document.documentElement.scrollHeight")
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=int(height),
            deviceScaleFactor=1,
            mobile=mobile,
        )
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        path.write_bytes(base64.b64decode(shot["data"]))
        # Printed on purpose: the screenshot is the artefact a reviewer opens.
        print(f"dashboard screenshot saved to {path}")  # noqa: T201
        return path


@pytest.fixture
def devtools_port() -> Iterator[int]:
    """Start headless Chromium with an empty profile and return its DevTools port."""
    assert CHROMIUM is not None
    profile = tempfile.mkdtemp(prefix="rcv-chromium-")
    browser = subprocess.Popen(
        [
            CHROMIUM,
            "--headless=new",
            # CI runs as root, and Chromium refuses to start as root with its sandbox on.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "--window-size=1280,900",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    drain = None
    try:
        assert browser.stderr is not None
        output = []
        for line in browser.stderr:
            output.append(line)
            if match := re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line):
                break
        else:
            pytest.fail("Chromium exited without a DevTools port:\n" + "".join(output))
        # Chromium keeps writing to stderr, and a full pipe would block it.
        drain = threading.Thread(target=browser.stderr.read, daemon=True)
        drain.start()
        yield int(match[1])
    finally:
        stop_process(browser)
        if drain is not None:
            # The thread ends at end of file, once Chromium has exited.
            drain.join(timeout=10)
        if browser.stderr is not None:
            browser.stderr.close()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
async def page(devtools_port: int) -> AsyncIterator[Page]:
    async with httpx.AsyncClient() as client:
        targets = (await client.get(f"http://127.0.0.1:{devtools_port}/json/list")).json()
    websocket_url = next(
        target["webSocketDebuggerUrl"] for target in targets if target["type"] == "page"
    )
    async with connect(websocket_url, max_size=64 * 1024 * 1024) as connection:
        tab = Page(connection)
        reader = asyncio.create_task(tab.read_messages())
        for domain in ("Page", "Runtime", "Log"):
            await tab.send(f"{domain}.enable")
        try:
            yield tab
        finally:
            reader.cancel()


SHOWN_FIGURES = """JSON.stringify({
  coverage: document.getElementById("coverage-text").textContent,
  coverageValue: document.getElementById("coverage-text").dataset.value,
  total: document.getElementById("total-revenue").textContent,
  totalValue: document.getElementById("total-revenue").dataset.value,
  accounts: document.getElementById("total-accounts").textContent,
  periodLabel: document.getElementById("period-label").textContent,
  buckets: Object.fromEntries(Array.from(document.querySelectorAll("#legend li")).map((item) => [
    item.dataset.bucket,
    {
      revenue: item.querySelector(".legend-revenue").textContent,
      revenueValue: item.querySelector(".legend-revenue").dataset.value,
      share: item.querySelector(".legend-share").textContent,
      accounts: item.querySelector(".legend-accounts").dataset.value,
    },
  ])),
  barSegments: document.querySelectorAll("#revenue-bar rect[data-bucket]").length,
  gaugeArc: document.getElementById("gauge-arc").getAttribute("d"),
})"""


async def get_report(service: Service, path: str, params: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=service.base_url) as client:
        response = await client.get(
            path, params=params, headers={"Authorization": f"Bearer {service.api_key}"}
        )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def coverage(service: Service, period: str, rollup: str) -> dict[str, Any]:
    return await get_report(service, "/v1/coverage", {"period": period, "rollup": rollup})


def expected_figures(report: dict[str, Any]) -> dict[str, Any]:
    currency = report["currency"]
    return {
        "coverage": percent(report["coverage"]),
        "coverageValue": str(report["coverage"]),
        "total": compact_money(report["total_revenue"], currency),
        "totalValue": report["total_revenue"],
        "accounts": str(report["accounts"]["total"]),
        "periodLabel": report["period"]["label"],
        "buckets": {
            name: {
                "revenue": compact_money(report["buckets"][name]["revenue"], currency),
                "revenueValue": report["buckets"][name]["revenue"],
                "share": percent(report["buckets"][name]["share"]),
                "accounts": str(report["buckets"][name]["accounts"]),
            }
            for name in BUCKETS
        },
    }


async def shown_figures(page: Page, period: str, rollup: str) -> dict[str, Any]:
    await page.wait_for(
        f"document.getElementById('report').dataset.loaded === {json.dumps(period + '|' + rollup)}",
        f"the report of {period} under {rollup}",
    )
    figures: dict[str, Any] = json.loads(await page.evaluate(SHOWN_FIGURES))
    assert figures.pop("barSegments") == 4
    assert figures.pop("gaugeArc")
    return figures


SHOWN_LISTS = """(() => {
  const rows = (table) => Array.from(document.querySelectorAll("#" + table + " tbody tr"));
  return JSON.stringify({
    atRisk: rows("at-risk-table").map((row) => row.dataset.account),
    surveyNext: rows("survey-next-table").map((row) => row.dataset.account),
    targetRow: rows("survey-next-table").findIndex((row) => row.matches(".target-row")),
    segments: rows("segments-table").map((row) => row.dataset.segment),
  });
})()"""


async def expected_lists(service: Service, period: str, rollup: str) -> dict[str, Any]:
    at_risk = await get_report(
        service, "/v1/reports/at-risk", {"period": period, "rollup": rollup, "limit": 10}
    )
    survey_next = await get_report(
        service, "/v1/reports/survey-next", {"period": period, "limit": 100}
    )
    segments = await get_report(
        service, "/v1/coverage/segments", {"period": period, "rollup": rollup, "by": "tier"}
    )
    reaches = [item["reaches_target"] for item in survey_next["items"]]
    return {
        "atRisk": [item["account_external_id"] for item in at_risk["items"]],
        "surveyNext": [item["account_external_id"] for item in survey_next["items"]],
        "targetRow": reaches.index(True) if True in reaches else -1,
        "segments": [
            segment["segment"] for segment in segments["segments"] if segment["accounts"]["total"]
        ],
    }


async def choose(page: Page, select_id: str, value: str) -> None:
    await page.evaluate(
        f"""(() => {{
          const select = document.getElementById({json.dumps(select_id)});
          select.value = {json.dumps(value)};
          select.dispatchEvent(new Event("change", {{bubbles: true}}));
        }})()"""
    )


async def sign_in(page: Page, service: Service) -> None:
    await page.send("Page.navigate", url=f"{service.base_url}/dashboard")
    await page.wait_for(
        "document.activeElement && document.activeElement.id === 'api-key'",
        "the focused API key field",
    )
    await page.send("Input.insertText", text=service.api_key)
    for event in ("keyDown", "keyUp"):
        await page.send(
            "Input.dispatchKeyEvent",
            type=event,
            key="Enter",
            code="Enter",
            windowsVirtualKeyCode=13,
            text="\r" if event == "keyDown" else "",
        )


class TestDashboardInBrowser:
    async def test_figures_follow_controls(self, demo_service: Service, page: Page) -> None:
        await sign_in(page, demo_service)
        period = await page.wait_for(
            "!document.getElementById('report').hidden && document.getElementById('period').value",
            "the signed-in report",
        )
        rollup = await page.evaluate("document.getElementById('rollup').value")

        first = await shown_figures(page, period, rollup)
        assert first == expected_figures(await coverage(demo_service, period, rollup))
        lists = json.loads(await page.evaluate(SHOWN_LISTS))
        assert lists == await expected_lists(demo_service, period, rollup)
        assert lists["atRisk"]
        assert lists["targetRow"] >= 0
        stored = await page.evaluate("sessionStorage.getItem('revcov.apiKey')")
        assert stored == demo_service.api_key
        assert await page.evaluate("localStorage.length") == 0
        await page.screenshot("dashboard.png", 1280, mobile=False)

        previous = await page.evaluate(
            "document.querySelector('#period option:nth-child(2)').value"
        )
        await choose(page, "period", previous)
        second = await shown_figures(page, previous, rollup)
        assert second == expected_figures(await coverage(demo_service, previous, rollup))
        assert second != first

        await choose(page, "rollup", "lowest")
        third = await shown_figures(page, previous, "lowest")
        assert third == expected_figures(await coverage(demo_service, previous, "lowest"))
        assert third["buckets"] != second["buckets"]

        await page.send(
            "Emulation.setDeviceMetricsOverride",
            width=390,
            height=900,
            deviceScaleFactor=1,
            mobile=True,
        )
        await choose(page, "period", "last-90d")
        phone = await shown_figures(page, "last-90d", "lowest")
        assert phone == expected_figures(await coverage(demo_service, "last-90d", "lowest"))
        assert await page.evaluate("location.hash") == "#period=last-90d&rollup=lowest&by=tier"
        await page.screenshot("dashboard-phone.png", 390, mobile=True)
        assert page.problems == []

    async def test_wrong_key_stays_signed_out(self, demo_service: Service, page: Page) -> None:
        wrong = demo_service.api_key[:-6] + "XXXXXX"

        await sign_in(page, Service(demo_service.base_url, wrong))
        message = await page.wait_for(
            "document.getElementById('sign-in-error').textContent", "the sign-in error"
        )

        assert "rejected" in message or "failed" in message
        assert await page.evaluate("document.getElementById('report').hidden")
        assert await page.evaluate("sessionStorage.getItem('revcov.apiKey')") is None

    async def test_widget_shows_with_share_token(self, demo_service: Service, page: Page) -> None:
        async with httpx.AsyncClient(base_url=demo_service.base_url) as client:
            created = await client.post(
                "/v1/share-tokens",
                json={"name": "browser test"},
                headers={"Authorization": f"Bearer {demo_service.api_key}"},
            )
        assert created.status_code == 201, created.text
        token = created.json()["share_token"]
        report = await coverage(demo_service, "last-90d", "latest")

        await page.send(
            "Page.navigate",
            url=f"{demo_service.base_url}/v1/widgets/coverage.svg?period=last-90d"
            f"&rollup=latest&token={token}",
        )
        await page.wait_for(
            "document.documentElement && document.documentElement.localName === 'svg'",
            "the widget SVG",
        )
        coverage_text = await page.evaluate("document.getElementById('coverage-value').textContent")
        await page.screenshot("widget.png", 640, mobile=False, height=220)

        assert coverage_text == percent(report["coverage"])
        assert page.problems == []
