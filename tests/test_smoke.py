import httpx
import pytest


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200


async def test_readyz(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["ready"] is True


async def test_index_links_resolve(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["service"] == "revcov"
    for key in ("docs", "redoc", "openapi", "dashboard", "health", "readiness"):
        linked = await client.get(body[key])
        assert linked.status_code == 200, (key, body[key])


@pytest.mark.parametrize(
    "path", ["/", "/healthz", "/readyz", "/docs", "/redoc", "/openapi.json", "/dashboard"]
)
async def test_head_probe_answers(client: httpx.AsyncClient, path: str) -> None:
    got = await client.get(path)
    response = await client.head(path)
    assert response.status_code == 200, path
    assert response.headers["content-type"] == got.headers["content-type"]
    assert response.headers["content-length"] == str(len(got.content))


async def test_tenant_settings(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/tenant")
    assert response.status_code == 200, response.text
    assert response.json()["timezone"] == "UTC"
