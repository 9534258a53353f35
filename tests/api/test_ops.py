from __future__ import annotations

from hub.api.registry import ROUTES
from tests.conftest import Server


async def test_health_ready_metrics(server: Server) -> None:
    r = await server.http.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    r = await server.http.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"]["database"] is True
    r = await server.http.get("/metrics")
    assert r.status_code == 200
    assert "imhub_http_requests_total" in r.text


async def test_openapi_covers_every_route_with_its_schema(sqlite_server: Server) -> None:
    doc = (await sqlite_server.http.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    for route in ROUTES:
        op = doc["paths"][route.path]["post"]
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        name = ref.rsplit("/", 1)[-1]
        schema = doc["components"]["schemas"][name]
        assert set(schema.get("properties", {})) == set(route.body.model_fields), route.path
