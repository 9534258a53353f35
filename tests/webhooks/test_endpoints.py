"""Webhook endpoint routes: add, update, delete, list, rotate_secret; the SSRF guard at
registration and at connect time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from hub.webhooks.endpoints import sync_config_endpoint
from tests.conftest import Database, Server, TenantHandle

from .receiver import Receiver, serve_receiver
from .test_delivery import delivery_settings, events, register


@pytest.fixture
async def allowed(sqlite_database: Database, make_server: Callable[..., Awaitable[Server]],
                  make_tenant: Callable[..., Awaitable[TenantHandle]]) -> TenantHandle:
    """A tenant on a server whose operator allows loopback receivers."""
    return await make_tenant(await make_server(delivery_settings(sqlite_database)))


@pytest.fixture
async def guarded(database: Database, make_server: Callable[..., Awaitable[Server]],
                  make_tenant: Callable[..., Awaitable[TenantHandle]]) -> TenantHandle:
    """A tenant on a server with the default guard: no private networks at all."""
    return await make_tenant(await make_server(delivery_settings(database, allow=False)))


async def call(t: TenantHandle, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return await t.server.post(path, body, t.admin)


async def test_crud_and_list(allowed: TenantHandle) -> None:
    t = allowed
    a = await t.server.ok("/webhook/endpoint/add", {
        "url": "http://127.0.0.1:9/a", "events": ["afterSendSingleMsg",
                                                  "callbackAfterUserRegisterCommand"],
        "ordering": "key", "rateLimit": 5, "maxConcurrency": 3}, t.admin)
    b = await t.server.ok("/webhook/endpoint/add", {"url": "http://localhost:9/b"}, t.admin)
    assert a["endpointID"] != b["endpointID"] and a["secret"] != b["secret"]
    listed = await t.server.ok("/webhook/endpoint/list", {}, t.admin)
    assert listed["total"] == 2
    va, vb = listed["endpoints"]
    assert va["endpointID"] == a["endpointID"]
    assert va["events"] == ["callbackAfterSendSingleMsgCommand",
                            "callbackAfterUserRegisterCommand"]
    assert (va["ordering"], va["rateLimit"], va["maxConcurrency"]) == ("key", 5, 3)
    assert vb["events"] is None and vb["ordering"] == "none" and vb["successRate"] is None
    assert "secret" not in va  # shown at creation and rotation only
    updated = await t.server.ok("/webhook/endpoint/update", {
        "endpointID": a["endpointID"], "url": "http://127.0.0.1:9/c", "events": [],
        "ordering": "none", "rateLimit": 0}, t.admin)
    assert updated["url"] == "http://127.0.0.1:9/c" and updated["events"] is None
    assert updated["ordering"] == "none" and updated["rateLimit"] is None
    assert updated["maxConcurrency"] == 3
    await t.server.ok("/webhook/endpoint/delete", {"endpointID": b["endpointID"]}, t.admin)
    listed = await t.server.ok("/webhook/endpoint/list", {}, t.admin)
    assert [e["endpointID"] for e in listed["endpoints"]] == [a["endpointID"]]
    for path in ("/webhook/endpoint/update", "/webhook/endpoint/delete",
                 "/webhook/endpoint/rotate_secret"):
        status, env = await call(t, path, {"endpointID": b["endpointID"]})
        assert (status, env["errCode"]) == (404, 1004), path


@pytest.mark.parametrize("body", [
    {"url": "ftp://127.0.0.1/x"},
    {"url": "not a url"},
    {"url": "http://127.0.0.1:9", "events": ["beforeSendSingleMsg"]},
    {"url": "http://127.0.0.1:9", "events": ["afterNothing"]},
    {"url": "http://127.0.0.1:9", "ordering": "fifo"},
    {"url": "http://127.0.0.1:9", "rateLimit": "5"},
    {"url": "http://127.0.0.1:9", "maxConcurrency": 0},
    {"events": ["afterUserRegister"]},
])
async def test_add_refuses_bad_arguments(allowed: TenantHandle, body: dict[str, Any]) -> None:
    status, env = await call(allowed, "/webhook/endpoint/add", body)
    assert (status, env["errCode"]) == (400, 1001), env


async def test_routes_are_admin_only(allowed: TenantHandle) -> None:
    (token,) = await allowed.users("u1")
    for path in ("/webhook/endpoint/add", "/webhook/endpoint/list",
                 "/webhook/endpoint/rotate_secret", "/webhook/events/list", "/webhook/replay"):
        status, env = await allowed.server.post(path, {"url": "http://127.0.0.1:9"}, token)
        assert (status, env["errCode"]) == (403, 1002), (path, env)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hook",
    "http://localhost:8080/hook",  # a DNS name that resolves to loopback
    "http://10.1.2.3/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://[::1]:8080/hook",
    "http://2130706433/hook",  # 127.0.0.1 spelled as a number
])
async def test_registration_refuses_private_addresses(guarded: TenantHandle, url: str
                                                      ) -> None:
    status, env = await call(guarded, "/webhook/endpoint/add", {"url": url})
    assert (status, env["errCode"]) == (400, 1001), env
    assert "refused" in env["errMsg"] or "resolve" in env["errMsg"]
    listed = await guarded.server.ok("/webhook/endpoint/list", {}, guarded.admin)
    assert listed["endpoints"] == []


async def test_update_is_guarded_too(guarded: TenantHandle) -> None:
    ep = await guarded.server.ok("/webhook/endpoint/add", {"url": "http://93.184.215.14/hook"},
                                 guarded.admin)
    status, env = await call(guarded, "/webhook/endpoint/update",
                             {"endpointID": ep["endpointID"], "url": "http://localhost:1/x"})
    assert (status, env["errCode"]) == (400, 1001) and "loopback" in env["errMsg"]
    # Names the config key an operator would set to permit it.
    assert "webhooks.allowNetworks" in env["errMsg"]
    (view,) = (await guarded.server.ok("/webhook/endpoint/list", {}, guarded.admin))["endpoints"]
    assert view["url"] == "http://93.184.215.14/hook"


async def test_connect_time_guard_blocks_what_registration_did_not_see(
        guarded: TenantHandle) -> None:
    """A name that resolved elsewhere when it was stored and to loopback now (DNS
    rebinding) is refused when connecting: the attempt fails, nothing is sent."""
    async with serve_receiver() as receiver:
        async with guarded.server.hub.sessions() as s, s.begin():
            await sync_config_endpoint(s, guarded.tenant_id,
                                       f"http://localhost:{receiver.port}")
        await register(guarded, "a")
        for _ in range(100):
            evs = await events(guarded)
            if evs and evs[0]["deliveries"] and evs[0]["deliveries"][0]["attempts"]:
                break
            await asyncio.sleep(0.05)
        attempt = evs[0]["deliveries"][0]["attempts"][0]
        assert attempt["statusCode"] == 0
        assert attempt["error"].startswith("blocked:") and "loopback" in attempt["error"]
        await asyncio.sleep(0.2)
        assert receiver.hits == []


async def test_success_rate_and_last_error(allowed: TenantHandle, receiver: Receiver) -> None:
    from starlette.responses import Response

    t = allowed
    await t.server.ok("/webhook/set_config", {"config": {
        "afterUserRegister": {"enable": True}, "retrySchedule": [0, 0.1]}}, t.admin)
    receiver.answer = lambda hit: (Response("teapot", status_code=418)
                                   if len(receiver.hits) == 0 else None)
    await t.server.ok("/webhook/endpoint/add", {"url": receiver.url}, t.admin)
    await register(t, "a")
    await receiver.wait_for(lambda r: len(r.ok()) == 1)
    for _ in range(50):
        (view,) = (await t.server.ok("/webhook/endpoint/list", {}, t.admin))["endpoints"]
        if view["attempts"] == 2:
            break
        await asyncio.sleep(0.05)
    assert (view["successes"], view["failures"], view["successRate"]) == (1, 1, 0.5)
    assert view["lastError"] == "HTTP 418" and view["lastStatus"] == 200
    assert view["pending"] == 0


@pytest.fixture
async def receiver() -> Any:
    async with serve_receiver() as r:
        yield r
