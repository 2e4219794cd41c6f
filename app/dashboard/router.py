"""The coverage dashboard: one HTML page with its script and stylesheet, served as files.

The page signs in with an API key, which it keeps in the tab's sessionStorage, and reads
the report endpoints with it, so the routes here serve only static files and need no key.
"""

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PATH = "/dashboard/static"

# Everything the page loads comes from this service, and nothing runs inline.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Browsers revalidate with the ETag on every load, so an upgrade never pairs a cached
    # old script with a new page.
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.api_route("/dashboard", methods=["GET", "HEAD"])
async def get_dashboard() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers=SECURITY_HEADERS)


class DashboardFiles(StaticFiles):
    """Static files with the dashboard's security headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


async def redirect_to_dashboard(request: Request) -> RedirectResponse:
    return RedirectResponse("/dashboard", status_code=308)


def install_dashboard(app: FastAPI) -> None:
    """Add the dashboard page and its static files to `app`."""
    app.include_router(router)
    # The app does not redirect trailing slashes, so the usual spelling gets its own route.
    app.add_route("/dashboard/", redirect_to_dashboard, include_in_schema=False)
    app.mount(STATIC_PATH, DashboardFiles(directory=STATIC_DIR), name="dashboard-static")
