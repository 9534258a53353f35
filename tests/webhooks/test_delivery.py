"""After-event delivery end to end: a real imhub server, a real receiver on another
loopback port, real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
import yaml
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.responses import Response

from hub.metrics import REGISTRY
from tests.conftest import Database, Server, TenantHandle, settings_for

from .receiver import Hit, Receiver, serve_receiver

FAST = [0, 0.2, 0.2, 0.2]


def delivery_settings(db: Database, allow: bool = True, **delivery: Any) -> Any:
    return settings_for(db, webhooks={
        "allowNetworks": ["127.0.0.0/8"] if allow else [],
        "delivery": {"timeout": 2, "pollSeconds": 0.1, "leaseSeconds": 10, **delivery}})


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver() as r:
        yield r


@pytest.fixture
async def hub_server(database: Database, make_server: Callable[..., Awaitable[Server]]
                     ) -> Server:
    return await make_server(delivery_settings(database))


@pytest.fixture
async def tenant(hub_server: Server, make_tenant: Callable[..., Awaitable[TenantHandle]]
                 ) -> TenantHandle:
    return await make_tenant(hub_server)


@pytest.fixture
async def sq_tenant(sqlite_database: Database, make_server: Callable[..., Awaitable[Server]],
                    make_tenant: Callable[..., Awaitable[TenantHandle]]) -> TenantHandle:
    """For tests whose subject does not depend on the backend's SQL."""
    return await make_tenant(await make_server(delivery_settings(sqlite_database)))


async def add_endpoint(t: TenantHandle, url: str, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = await t.server.ok("/webhook/endpoint/add", {"url": url, **fields},
                                             t.admin)
    return data


async def set_config(t: TenantHandle, **config: Any) -> None:
    await t.server.ok("/webhook/set_config", {"config": config}, t.admin)


async def register(t: TenantHandle, *user_ids: str) -> None:
    for uid in user_ids:
        await t.server.ok("/user/user_register",
                          {"users": [{"userID": uid, "nickname": uid}]}, t.admin)


async def events(t: TenantHandle, **query: Any) -> list[dict[str, Any]]:
    data = await t.server.ok("/webhook/events/list", query, t.admin)
    out: list[dict[str, Any]] = data["events"]
    return out


async def wait_status(t: TenantHandle, event_id: str, status: str,
                      timeout: float = 10.0) -> dict[str, Any]:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while True:
        evs = [e for e in await events(t) if e["eventID"] == event_id]
        if evs and evs[0]["deliveries"] and all(
                d["status"] == status for d in evs[0]["deliveries"]):
            return evs[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"event {event_id} never became {status}: {evs}")
        await asyncio.sleep(0.05)


def verify(secret: str, hit: Hit) -> dict[str, Any]:
    """Check a hit with the independent standardwebhooks package."""
    out: dict[str, Any] = Webhook(secret).verify(hit.body, hit.headers)
    return out


def metric(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_event_is_delivered_signed_with_contract_headers(
        tenant: TenantHandle, receiver: Receiver) -> None:
    ep = await add_endpoint(tenant, receiver.url + "/hooks")
    assert ep["secret"].startswith("whsec_")
    await register(tenant, "alice")
    await receiver.wait_for(lambda r: len(r.ok()) == 1, what="one delivery")
    hit = receiver.hits[0]
    assert hit.path == "/hooks/callbackAfterUserRegisterCommand"
    assert hit.headers["content-type"] == "application/json"
    assert hit.headers["operationid"]
    body = verify(ep["secret"], hit)
    assert body["callbackCommand"] == "callbackAfterUserRegisterCommand"
    assert body["tenantID"] == tenant.tenant_id
    assert body["eventID"] == hit.webhook_id
    assert body["operationID"] == hit.headers["operationid"]
    assert abs(int(hit.headers["webhook-timestamp"]) - time.time()) < 60
    assert [u["userID"] for u in body["users"]] == ["alice"]
    # A wrong secret does not verify: the signature really depends on the key.
    with pytest.raises(WebhookVerificationError):
        verify("whsec_" + "A" * 43 + "=", hit)
    ev = await wait_status(tenant, hit.webhook_id, "delivered")
    (delivery,) = ev["deliveries"]
    assert delivery["endpointID"] == ep["endpointID"]
    assert delivery["attempts"][0]["statusCode"] == 200
    assert delivery["attempts"][0]["response"] == "ok"


async def test_receiver_down_then_back_gets_everything(
        tenant: TenantHandle) -> None:
    await set_config(tenant, afterUserRegister={"enable": True},
                     retrySchedule=[0, 0.3, 0.3, 0.5, 0.5, 1, 1, 1, 1])
    async with serve_receiver() as first:
        port = first.port
        ep = await add_endpoint(tenant, first.url)
    # The receiver is gone: attempts are refused and rescheduled.
    await register(tenant, *[f"u{i}" for i in range(20)])
    await asyncio.sleep(0.8)
    async with serve_receiver(port) as back:
        await back.wait_for(lambda r: len(r.delivered_ids()) == 20, timeout=15,
                            what="all 20 events after the receiver came back")
        for hit in back.ok():
            verify(ep["secret"], hit)
    evs = await events(tenant, endpointID=ep["endpointID"])
    assert len(evs) == 20
    retried = [e for e in evs if e["deliveries"][0]["attemptCount"] > 1]
    assert retried, "the first attempts should have failed while the receiver was down"
    assert all(e["deliveries"][0]["status"] == "delivered" for e in evs)
    refused = retried[0]["deliveries"][0]["attempts"][0]
    assert refused["statusCode"] == 0 and refused["error"]


async def test_rotation_signs_with_both_secrets_during_grace_only(
        sq_tenant: TenantHandle, receiver: Receiver) -> None:
    ep = await add_endpoint(sq_tenant, receiver.url)
    old = ep["secret"]
    await register(sq_tenant, "a")
    await receiver.wait_for(lambda r: len(r.ok()) == 1)
    rotated = await sq_tenant.server.ok("/webhook/endpoint/rotate_secret",
                                     {"endpointID": ep["endpointID"], "graceSeconds": 1},
                                     sq_tenant.admin)
    new = rotated["secret"]
    assert new.startswith("whsec_") and new != old
    await register(sq_tenant, "b")
    await receiver.wait_for(lambda r: len(r.ok()) == 2)
    during = receiver.hits[1]
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    verify(old, during)
    verify(new, during)
    await asyncio.sleep(1.2)
    await register(sq_tenant, "c")
    await receiver.wait_for(lambda r: len(r.ok()) == 3)
    after = receiver.hits[2]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    verify(new, after)
    with pytest.raises(WebhookVerificationError):
        verify(old, after)


@pytest.mark.parametrize("code", [429, 503])
async def test_retry_after_is_honoured(sq_tenant: TenantHandle, receiver: Receiver,
                                       code: int) -> None:
    await set_config(sq_tenant, afterUserRegister={"enable": True}, retrySchedule=[0, 0.1, 0.1])

    def answer(hit: Hit) -> Response | None:
        if len(receiver.hits) == 0:
            return Response("slow down", status_code=code, headers={"Retry-After": "1"})
        return None

    receiver.answer = answer
    await add_endpoint(sq_tenant, receiver.url)
    await register(sq_tenant, "a")
    await receiver.wait_for(lambda r: len(r.ok()) == 1, what="the retry")
    first, second = receiver.hits
    assert first.status == code and first.webhook_id == second.webhook_id
    # The schedule says 0.1 s; Retry-After says at least a second.
    assert second.at - first.at >= 1.0


async def test_retries_go_out_when_due_not_at_the_next_poll(
        sqlite_database: Database, make_server: Callable[..., Awaitable[Server]],
        make_tenant: Callable[..., Awaitable[TenantHandle]]) -> None:
    """With the poll far apart (10 s), every retry of several endpoints still goes out
    within its schedule's ±20 % jitter: the node claims each when it falls due."""
    t = await make_tenant(await make_server(delivery_settings(sqlite_database,
                                                              pollSeconds=10)))
    await set_config(t, afterUserRegister={"enable": True}, retrySchedule=[0, 1.0, 1.0])

    def fails_twice(r: Receiver) -> Callable[[Hit], Response | None]:
        return lambda hit: Response("no", status_code=500) if len(r.hits) < 2 else None

    async with contextlib.AsyncExitStack() as stack:
        receivers = [await stack.enter_async_context(serve_receiver()) for _ in range(4)]
        for r in receivers:
            r.answer = fails_twice(r)
            await add_endpoint(t, r.url)
        await register(t, "a")
        for r in receivers:
            await r.wait_for(lambda r: len(r.ok()) == 1, what="the second retry", timeout=8)
            first, second, third = r.hits
            for before, after in ((first, second), (second, third)):
                # 0.8-1.2 s by the schedule; a little more for the recorder and a busy
                # machine, far less than the poll.
                assert 0.75 <= after.at - before.at <= 1.6, [h.at for h in r.hits]


async def test_410_disables_the_endpoint(tenant: TenantHandle, receiver: Receiver) -> None:
    receiver.answer = lambda hit: Response("gone", status_code=410)
    ep = await add_endpoint(tenant, receiver.url)
    await register(tenant, "a")
    await receiver.wait_for(lambda r: len(r.hits) == 1)
    ev = await wait_status(tenant, receiver.hits[0].webhook_id, "failed")
    assert ev["deliveries"][0]["attemptCount"] == 1
    listed = await tenant.server.ok("/webhook/endpoint/list", {}, tenant.admin)
    (view,) = listed["endpoints"]
    assert view["disabled"] is True and "410" in view["disabledReason"]
    # Disabled: new events are not sent to it at all.
    await register(tenant, "b")
    await asyncio.sleep(0.5)
    assert len(receiver.hits) == 1
    # Enabled again, it takes new events.
    receiver.answer = None
    await tenant.server.ok("/webhook/endpoint/update",
                           {"endpointID": ep["endpointID"], "disabled": False}, tenant.admin)
    await register(tenant, "c")
    await receiver.wait_for(lambda r: len(r.ok()) == 1)
    assert receiver.ok()[0].json["users"][0]["userID"] == "c"


async def test_exhausted_event_is_failed_listed_and_replayed(
        tenant: TenantHandle, receiver: Receiver) -> None:
    await set_config(tenant, afterUserRegister={"enable": True}, retrySchedule=[0, 0.1, 0.1])
    receiver.answer = lambda hit: Response("boom", status_code=500)
    ep = await add_endpoint(tenant, receiver.url)
    await register(tenant, "a", "b")
    await receiver.wait_for(lambda r: len(r.hits) == 6, what="3 attempts of 2 events")
    failed = []
    for hit in {h.webhook_id: h for h in receiver.hits}.values():
        failed.append(await wait_status(tenant, hit.webhook_id, "failed"))
    listed = await events(tenant, status="failed", endpointID=ep["endpointID"])
    assert {e["eventID"] for e in listed} == {e["eventID"] for e in failed}
    attempts = listed[0]["deliveries"][0]["attempts"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert all(a["statusCode"] == 500 and a["response"] == "boom" for a in attempts)
    view = (await tenant.server.ok("/webhook/endpoint/list", {}, tenant.admin))["endpoints"][0]
    assert view["successRate"] == 0 and view["lastError"] == "HTTP 500"
    # Replay one by ID, then the rest by endpoint.
    receiver.answer = None
    first = listed[0]["eventID"]
    out = await tenant.server.ok("/webhook/replay", {"eventIDs": [first]}, tenant.admin)
    assert out == {"requeued": 1}
    ev = await wait_status(tenant, first, "delivered")
    assert [a["attempt"] for a in ev["deliveries"][0]["attempts"]] == [1, 2, 3, 4]
    out = await tenant.server.ok("/webhook/replay",
                                 {"endpointID": ep["endpointID"], "status": "failed"},
                                 tenant.admin)
    assert out == {"requeued": 1}
    await wait_status(tenant, listed[1]["eventID"], "delivered")
    assert receiver.delivered_ids() == {e["eventID"] for e in listed}
    assert await events(tenant, status="failed") == []


async def test_key_ordering_holds_back_only_the_failing_key(
        tenant: TenantHandle, receiver: Receiver) -> None:
    await set_config(tenant, afterUpdateUserInfo={"enable": True},
                     retrySchedule=[0, 1.0, 1.0, 1.0])
    await register(tenant, "a", "b")
    failed_once: list[str] = []

    def answer(hit: Hit) -> Response | None:
        if hit.json["nickname"] == "a1" and not failed_once:
            failed_once.append(hit.webhook_id)
            return Response("not now", status_code=500)
        return None

    receiver.answer = answer
    await add_endpoint(tenant, receiver.url, ordering="key")
    for n in (1, 2, 3):
        for u in ("a", "b"):
            await tenant.server.ok("/user/update_user_info",
                                   {"userInfo": {"userID": u, "nickname": f"{u}{n}"}},
                                   tenant.admin)
    await receiver.wait_for(lambda r: len(r.ok()) == 6, what="all six updates")
    names = [h.json["nickname"] for h in receiver.hits]
    ok = [h.json["nickname"] for h in receiver.ok()]
    assert [n for n in ok if n.startswith("a")] == ["a1", "a2", "a3"]
    assert [n for n in ok if n.startswith("b")] == ["b1", "b2", "b3"]
    # a2 was never tried before a1 got through; b's events did not wait for a1.
    assert names.index("a2") > ok.index("a1")
    assert ok.index("b3") < ok.index("a1")


async def test_tenants_are_isolated(hub_server: Server, tenant: TenantHandle,
                                    make_tenant: Callable[..., Awaitable[TenantHandle]],
                                    receiver: Receiver) -> None:
    other = await make_tenant(hub_server)
    async with serve_receiver() as theirs:
        mine = await add_endpoint(tenant, receiver.url)
        their_ep = await add_endpoint(other, theirs.url)
        await register(tenant, "a")
        await register(other, "z")
        await receiver.wait_for(lambda r: len(r.ok()) == 1)
        await theirs.wait_for(lambda r: len(r.ok()) == 1)
        await asyncio.sleep(0.2)
        assert receiver.ok()[0].json["tenantID"] == tenant.tenant_id
        assert theirs.ok()[0].json["tenantID"] == other.tenant_id
        assert len(receiver.hits) == len(theirs.hits) == 1
        my_event = receiver.hits[0].webhook_id
    # The other admin sees none of it and can change none of it.
    listed = await other.server.ok("/webhook/endpoint/list", {}, other.admin)
    assert [e["endpointID"] for e in listed["endpoints"]] == [their_ep["endpointID"]]
    assert my_event not in {e["eventID"] for e in await events(other)}
    for path, body in [
        ("/webhook/endpoint/update", {"endpointID": mine["endpointID"], "url": theirs.url}),
        ("/webhook/endpoint/delete", {"endpointID": mine["endpointID"]}),
        ("/webhook/endpoint/rotate_secret", {"endpointID": mine["endpointID"]}),
        ("/webhook/replay", {"eventIDs": [my_event]}),
        ("/webhook/replay", {"endpointID": mine["endpointID"], "status": "failed"}),
        ("/webhook/events/list", {"endpointID": mine["endpointID"]}),
    ]:
        status, env = await other.server.post(path, body, other.admin)
        if path == "/webhook/events/list":
            assert env["errCode"] == 0 and env["data"]["events"] == [], env
        else:
            assert env["errCode"] == 1004, (path, env)
            assert status == 404
    # A user token of the tenant itself is not enough either.
    (user_token,) = await tenant.users("u1")
    status, env = await tenant.server.post("/webhook/endpoint/list", {}, user_token)
    assert env["errCode"] == 1002


async def test_misbehaving_receivers_are_failed_attempts(
        sqlite_database: Database, make_server: Callable[..., Awaitable[Server]],
        make_tenant: Callable[..., Awaitable[TenantHandle]], receiver: Receiver) -> None:
    srv = await make_server(delivery_settings(sqlite_database, timeout=0.5))
    t = await make_tenant(srv)
    await set_config(t, afterUserRegister={"enable": True}, retrySchedule=[0, 0.1])

    async def hang(hit: Hit) -> Response:
        await asyncio.sleep(1.5)
        return Response("late")

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(b"this is not HTTP at all\r\n\r\n")
        await writer.drain()
        writer.close()

    garbage_server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    garbage_port = garbage_server.sockets[0].getsockname()[1]
    async with serve_receiver() as hanging, serve_receiver() as redirecting:
        hanging.answer = hang
        redirecting.answer = lambda hit: (
            Response(status_code=307, headers={"Location": receiver.url + "/moved"}))
        for url in (hanging.url, redirecting.url, f"http://127.0.0.1:{garbage_port}",
                    receiver.url):
            await add_endpoint(t, url)
        await register(t, "a")
        await receiver.wait_for(lambda r: len(r.ok()) == 1)
        event_id = receiver.hits[0].webhook_id
        ev = None
        for _ in range(100):
            (ev,) = await events(t)
            if sorted(d["status"] for d in ev["deliveries"]) == [
                    "delivered", "failed", "failed", "failed"]:
                break
            await asyncio.sleep(0.1)
        assert ev is not None and ev["eventID"] == event_id
        errors = {d["endpointID"]: d["attempts"][0]["error"] for d in ev["deliveries"]
                  if d["status"] == "failed"}
        assert len(errors) == 3
        text = " | ".join(errors.values())
        assert "timed out" in text and "307" in text and "RemoteProtocolError" in text
        assert all(len(d["attempts"]) == 2 for d in ev["deliveries"]
                   if d["status"] == "failed")
        # The redirect was not followed.
        assert all(h.path != "/moved" for h in receiver.hits)
        garbage_server.close()
    # The server is fine afterwards.
    assert (await srv.http.get("/healthz")).status_code == 200


async def test_max_concurrency_and_rate_limit(sq_tenant: TenantHandle, receiver: Receiver
                                              ) -> None:
    active = 0
    peak = 0

    async def slow(hit: Hit) -> Response | None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.15)
        active -= 1
        return None

    receiver.answer = slow
    ep = await add_endpoint(sq_tenant, receiver.url, maxConcurrency=2)
    await register(sq_tenant, *[f"u{i}" for i in range(8)])
    await receiver.wait_for(lambda r: len(r.ok()) == 8, what="8 slow deliveries")
    assert peak == 2
    receiver.answer = None
    await sq_tenant.server.ok("/webhook/endpoint/update",
                           {"endpointID": ep["endpointID"], "rateLimit": 10,
                            "maxConcurrency": 50}, sq_tenant.admin)
    await register(sq_tenant, *[f"v{i}" for i in range(6)])
    await receiver.wait_for(lambda r: len(r.ok()) == 14, what="6 rate-limited deliveries")
    paced = receiver.ok()[8:]
    assert paced[-1].at - paced[0].at >= 0.45  # 6 requests at 10/s: 0.5 s apart end to end


async def test_tenant_config_decides_which_after_events_go_out(
        sq_tenant: TenantHandle, receiver: Receiver) -> None:
    await set_config(sq_tenant, afterUpdateUserInfo={"enable": True, "attentionIds": ["a"]})
    ep = await add_endpoint(sq_tenant, receiver.url)
    await register(sq_tenant, "a", "b")  # afterUserRegister is not enabled
    for u in ("b", "a"):
        await sq_tenant.server.ok("/user/update_user_info",
                               {"userInfo": {"userID": u, "nickname": u + "!"}}, sq_tenant.admin)
    await receiver.wait_for(lambda r: len(r.ok()) == 1)
    await asyncio.sleep(0.3)
    (hit,) = receiver.hits
    assert hit.json["callbackCommand"] == "callbackAfterUpdateUserInfoCommand"
    assert hit.json["userID"] == "a"
    # An endpoint's own events list narrows further.
    await sq_tenant.server.ok("/webhook/endpoint/update",
                           {"endpointID": ep["endpointID"], "events": ["afterUserRegister"]},
                           sq_tenant.admin)
    await sq_tenant.server.ok("/user/update_user_info",
                           {"userInfo": {"userID": "a", "nickname": "again"}}, sq_tenant.admin)
    await asyncio.sleep(0.4)
    assert len(receiver.hits) == 1


async def test_config_url_is_an_endpoint(hub_server: Server, tenant: TenantHandle,
                                         receiver: Receiver) -> None:
    from hub.webhooks.endpoints import sync_config_endpoint

    async with hub_server.hub.sessions() as s, s.begin():
        await sync_config_endpoint(s, tenant.tenant_id, receiver.url + "/openim")
    await register(tenant, "a")
    await receiver.wait_for(lambda r: len(r.ok()) == 1)
    assert receiver.hits[0].path == "/openim/callbackAfterUserRegisterCommand"
    listed = await tenant.server.ok("/webhook/endpoint/list", {}, tenant.admin)
    (view,) = listed["endpoints"]
    assert view["endpointID"] == "config" and view["implicit"] is True
    status, env = await tenant.server.post("/webhook/endpoint/delete",
                                           {"endpointID": "config"}, tenant.admin)
    assert env["errCode"] == 1001 and status == 400
    # Removing the url stops deliveries to it.
    async with hub_server.hub.sessions() as s, s.begin():
        await sync_config_endpoint(s, tenant.tenant_id, None)
    await register(tenant, "b")
    await asyncio.sleep(0.4)
    assert len(receiver.hits) == 1


async def test_metrics_follow_deliveries(sq_tenant: TenantHandle, receiver: Receiver) -> None:
    before = metric("imhub_deliveries_total", outcome="delivered")
    ep = await add_endpoint(sq_tenant, receiver.url)
    await register(sq_tenant, "a", "b")
    await receiver.wait_for(lambda r: len(r.ok()) == 2)
    for _ in range(50):
        if metric("imhub_deliveries_total", outcome="delivered") >= before + 2:
            break
        await asyncio.sleep(0.02)
    assert metric("imhub_deliveries_total", outcome="delivered") == before + 2
    engine = sq_tenant.server.hub.delivery
    assert engine is not None
    receiver.answer = lambda hit: Response(status_code=500)
    await sq_tenant.server.ok("/webhook/set_config", {"config": {
        "afterUserRegister": {"enable": True}, "retrySchedule": [0, 30]}}, sq_tenant.admin)
    await register(sq_tenant, "c")
    await receiver.wait_for(lambda r: len(r.hits) == 3)
    await asyncio.sleep(0.2)
    await engine.update_gauges()
    label = f"{sq_tenant.tenant_id}/{ep['endpointID']}"
    assert metric("imhub_delivery_queue_depth", endpoint=label) == 1
    assert metric("imhub_delivery_oldest_pending_seconds", endpoint=label) >= 0
    text = (await sq_tenant.server.http.get("/metrics")).text
    assert "imhub_deliveries_total" in text and label in text


async def test_outbox_rows_of_a_cold_tenant_go_out(sq_tenant: TenantHandle,
                                                   receiver: Receiver) -> None:
    """Nothing has read this tenant's webhook config yet (no request ran a hook): the
    dispatcher loads it itself, without waiting on its own transaction."""
    from hub.bus import hook
    from hub.context import Actor, Ctx
    from hub.tx import Tx

    await add_endpoint(sq_tenant, receiver.url)
    hub = sq_tenant.server.hub
    assert hub.webhook_configs.cached(sq_tenant.tenant_id) is None

    async def write(tx: Tx) -> None:
        tx.after(hook("afterUserRegister"), {"users": [{"userID": "x"}]}, key="x")

    await hub.write(Ctx(Actor(sq_tenant.tenant_id), "op-cold"), write)
    await receiver.wait_for(lambda r: len(r.ok()) == 1, timeout=5)
    assert receiver.hits[0].headers["operationid"] == "op-cold"


async def test_events_of_a_tenant_without_endpoints_are_stored_dispatched(
        sqlite_database: Database, make_server: Callable[..., Awaitable[Server]],
        make_tenant: Callable[..., Awaitable[TenantHandle]]) -> None:
    """On SQLite a batch stores the events of a tenant with no endpoint as dispatched
    (nothing would take them); a tenant with one, in the same batches, leaves its events
    to the dispatcher. No delivery workers run here, so the outbox shows what the
    batches wrote."""
    from sqlalchemy import select

    from hub.db.models import Event

    srv = await make_server(delivery_settings(sqlite_database, enabled=False))
    quiet, served = await make_tenant(srv), await make_tenant(srv)
    await add_endpoint(served, "http://127.0.0.1:9/hook")

    async def outbox(t: TenantHandle) -> list[int]:
        async with srv.hub.sessions() as s:
            return list((await s.execute(select(Event.dispatched).where(
                Event.tenant_id == t.tenant_id).order_by(Event.pos))).scalars())

    await asyncio.gather(*(register(t, f"u{i}") for i in range(4) for t in (quiet, served)))
    assert await outbox(quiet) == [1, 1, 1, 1]
    assert await outbox(served) == [0, 0, 0, 0]
    # From its first endpoint on, the quiet tenant's events wait for the dispatcher too.
    await add_endpoint(quiet, "http://127.0.0.1:9/hook")
    await register(quiet, "late")
    assert await outbox(quiet) == [1, 1, 1, 1, 0]


def _imhub(config: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import sys; from hub.cli import main; sys.exit(main())",
         *args, "--config", str(config)], capture_output=True, text=True, timeout=60)


async def test_cli_lists_and_replays_while_the_server_runs(
        sqlite_database: Database, make_server: Callable[..., Awaitable[Server]],
        make_tenant: Callable[..., Awaitable[TenantHandle]], receiver: Receiver,
        tmp_path: Any) -> None:
    srv = await make_server(delivery_settings(sqlite_database))
    t = await make_tenant(srv)
    await set_config(t, afterUserRegister={"enable": True}, retrySchedule=[0])
    receiver.answer = lambda hit: Response("down", status_code=500)
    ep = await add_endpoint(t, receiver.url)
    await register(t, "a", "b", "c")
    await receiver.wait_for(lambda r: len(r.hits) == 3)
    for hit in receiver.hits:
        await wait_status(t, hit.webhook_id, "failed")
    config = tmp_path / "cli.yml"
    config.write_text(yaml.safe_dump({"database": {"url": sqlite_database.url}}))

    async def imhub(*args: str) -> str:
        out = await asyncio.to_thread(_imhub, config, *args)
        assert out.returncode == 0, out.stderr
        return out.stdout

    listed = orjson.loads(await imhub("events", "list", "--tenant", t.tenant_id,
                                      "--status", "failed", "--json"))
    assert listed["total"] == 3
    assert {e["deliveries"][0]["status"] for e in listed["events"]} == {"failed"}
    receiver.answer = None
    one = listed["events"][0]["eventID"]
    out = await imhub("events", "replay", "--tenant", t.tenant_id, "--event", one)
    assert out.strip() == "requeued 1 deliveries"
    await receiver.wait_for(lambda r: r.delivered_ids() == {one})
    out = await imhub("events", "replay", "--tenant", t.tenant_id,
                      "--endpoint", ep["endpointID"], "--since", "0")
    assert out.strip() == "requeued 2 deliveries"
    await receiver.wait_for(lambda r: len(r.delivered_ids()) == 3)
    table = await imhub("events", "list", "--tenant", t.tenant_id)
    assert "3 events" in table and one in table
    bad = await asyncio.to_thread(_imhub, config, "events", "list", "--tenant", "nobody")
    assert bad.returncode == 2 and "tenant nobody not found" in bad.stderr


async def test_any_operation_id_reaches_the_receiver(sq_tenant: TenantHandle,
                                                     receiver: Receiver) -> None:
    """A WebSocket client may send any string as operationID, line breaks and non-Latin-1
    text included: the before hook and the after-event still go out, the header carrying it
    escaped and the body verbatim (a line break in a header would be refused every time)."""
    from tests.gateway._client import Client

    t = sq_tenant
    await set_config(t, url=receiver.url + "/cb", afterSendSingleMsg={"enable": True},
                     beforeSendSingleMsg={"enable": True, "timeout": 2})
    ep = await add_endpoint(t, receiver.url + "/events",
                            events=["callbackAfterSendSingleMsgCommand"])
    receiver.answer = lambda hit: Response(b'{"actionCode": 0}' if hit.path.startswith(
        "/cb/") else b"ok")
    alice, _ = await t.users("alice", "bob")
    op = "op\r\nX-Injected: 1 — опер"
    client = await Client.open(t.server.ws_url, "alice", alice, 1)
    try:
        reply = await client.request(1003, {
            "sendID": "alice", "recvID": "bob", "sessionType": 1, "contentType": 101,
            "content": '{"content": "hi"}'}, operation_id=op)
    finally:
        await client.close()
    assert reply["errCode"] == 0, reply
    assert reply["operationID"] == op
    # The config's URL is an endpoint as well: it gets the event too.
    await receiver.wait_for(lambda r: len(r.ok()) == 3, what="the before hook and the events")
    before = next(h for h in receiver.hits if "Before" in h.path)
    after = next(h for h in receiver.hits if h.path.startswith("/events/"))
    for hit in (before, after):
        assert hit.json["operationID"] == op
        assert "x-injected" not in hit.headers
        assert hit.headers["operationid"] == (
            "op%0D%0AX-Injected: 1 %E2%80%94 %D0%BE%D0%BF%D0%B5%D1%80")
    assert verify(ep["secret"], after)["seq"] == reply["data"]["seq"]
    await wait_status(t, after.webhook_id, "delivered")
