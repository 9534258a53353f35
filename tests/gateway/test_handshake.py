"""Connecting: the token is checked before the upgrade; a refusal is a real HTTP answer."""

from __future__ import annotations

from hub.gateway.protocol import Tracked
from tests.conftest import TenantHandle
from tests.gateway._client import Client, refused


async def test_valid_token_connects_and_answers_newest_seq(tenant: TenantHandle) -> None:
    (alice,) = await tenant.users("alice")
    c = await Client.open(tenant.server.ws_url, "alice", alice)
    try:
        reply = await c.request(1001, {}, operation_id="op-heartbeat")
        assert reply["errCode"] == 0, reply
        assert reply["reqIdentifier"] == 1001
        assert reply["operationID"] == "op-heartbeat"
        assert set(reply["data"]) == {"maxSeqs", "minSeqs"}
        # The server runs the tracked protocol, as `imhub serve` does.
        conn = tenant.server.hub.presence.local.get(tenant.tenant_id, "alice", 1)
        assert conn is not None and isinstance(conn._proto, Tracked)
    finally:
        await c.close()


async def test_bad_tokens_are_refused_with_401_before_the_upgrade(
        sqlite_tenant: TenantHandle) -> None:
    t = sqlite_tenant
    url = t.server.ws_url
    alice, _bob = await t.users("alice", "bob")
    cases = {
        "garbage": ("sendID=alice&platformID=1&token=u.nope.nope", 401, 1501),
        "missing": ("sendID=alice&platformID=1", 401, 1501),
        "other user's": (f"sendID=bob&platformID=1&token={alice}", 401, 1501),
        "other platform's": (f"sendID=alice&platformID=2&token={alice}", 401, 1501),
        "admin token": (f"sendID=alice&platformID=1&token={t.admin}", 401, 1501),
        "tampered": (f"sendID=alice&platformID=1&token={alice[:-2]}xx", 401, 1501),
    }
    for name, (query, status, code) in cases.items():
        got_status, body = await refused(url, query)
        assert (got_status, body["errCode"]) == (status, code), (name, got_status, body)
        assert set(body) == {"errCode", "errMsg", "errDlt", "data"}
    # A token replaced by a re-login answers 1502, over the gateway as over HTTP.
    await t.login("alice", 1)
    status, body = await refused(url, f"sendID=alice&platformID=1&token={alice}")
    assert (status, body["errCode"]) == (401, 1502)


async def test_bad_query_is_400(sqlite_tenant: TenantHandle) -> None:
    (alice,) = await sqlite_tenant.users("alice")
    url = sqlite_tenant.server.ws_url
    for query in (f"platformID=1&token={alice}", f"sendID=alice&platformID=x&token={alice}",
                  f"sendID=alice&platformID=99&token={alice}", f"sendID=alice&token={alice}",
                  f"sendID=alice&platformID=1&token={alice}&operationID=a%00b"):
        status, body = await refused(url, query)
        assert (status, body["errCode"]) == (400, 1001), (query, body)
