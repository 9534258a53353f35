"""Every route refuses bad input with a clear 4xx and errCode, never a 500, writing nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from hub.api.registry import ROUTES
from hub.db.models import Event, Message
from tests.conftest import Server, TenantHandle

PATHS = [r.path for r in ROUTES]


def _wrong(schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    """A value of the wrong JSON type for `schema`."""
    if "$ref" in schema:
        return _wrong(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    kinds = {schema.get("type")} | {s.get("type") for s in schema.get("anyOf", [])}
    if "string" in kinds:
        return 12345
    if kinds & {"integer", "number", "boolean"}:
        return "not a number"
    return "not an object or array"


async def _counts(srv: Server) -> tuple[int, int]:
    async with srv.hub.sessions() as s:
        events = (await s.execute(select(func.count()).select_from(Event))).scalar_one()
        msgs = (await s.execute(select(func.count()).select_from(Message))).scalar_one()
    return events, msgs


@pytest.fixture
async def t(sqlite_tenant: TenantHandle) -> TenantHandle:
    await sqlite_tenant.users("alice", "bob")
    return sqlite_tenant


async def _expect(srv: Server, path: str, body: Any, token: str, status: int, code: int
                  ) -> None:
    got_status, env = await srv.post(path, body, token)
    assert (got_status, env["errCode"]) == (status, code), (path, got_status, env)
    assert env["errMsg"], path


async def test_malformed_json_and_non_objects(t: TenantHandle) -> None:
    srv = t.server
    before = await _counts(srv)
    for path in PATHS:
        await _expect(srv, path, b'{"userID": ', t.admin, 400, 1001)
        await _expect(srv, path, b"[1, 2]", t.admin, 400, 1001)
        await _expect(srv, path, b"\xff\xfe", t.admin, 400, 1001)
    assert await _counts(srv) == before


async def test_wrong_types_and_missing_fields(t: TenantHandle) -> None:
    srv = t.server
    before = await _counts(srv)
    for r in ROUTES:
        schema = r.body.model_json_schema()
        defs = schema.get("$defs", {})
        props = schema.get("properties", {})
        if props:
            wrong = {name: _wrong(p, defs) for name, p in props.items()}
            await _expect(srv, r.path, wrong, t.admin, 400, 1001)
        if schema.get("required"):
            await _expect(srv, r.path, {}, t.admin, 400, 1001)
    assert await _counts(srv) == before


async def test_huge_body_is_413(t: TenantHandle) -> None:
    srv = t.server
    blob = b'{"x": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    for path in [*PATHS[:5], "/msg/send_msg"]:
        await _expect(srv, path, blob, t.admin, 413, 1001)


async def test_tokens(t: TenantHandle) -> None:
    srv = t.server
    body = {"userIDs": ["alice"]}
    await _expect(srv, "/user/get_users_info", body, "", 401, 1501)
    await _expect(srv, "/user/get_users_info", body, "garbage", 401, 1501)
    await _expect(srv, "/user/get_users_info", body, "adm.not-a-real-token", 401, 1501)
    forged = t.tokens["alice"][:-4] + ("AAAA" if not t.tokens["alice"].endswith("AAAA")
                                       else "BBBB")
    await _expect(srv, "/user/get_users_info", body, forged, 401, 1501)
    # A re-login on the same platform kicks the older token; force_logout kicks the newest.
    old = t.tokens["alice"]
    new = await t.login("alice")
    await _expect(srv, "/user/get_users_info", body, old, 401, 1502)
    assert await srv.ok("/user/get_users_info", body, new)
    other_platform = await t.login("alice", platform_id=2)
    await srv.ok("/auth/force_logout", {"userID": "alice", "platformID": 1}, t.admin)
    await _expect(srv, "/user/get_users_info", body, new, 401, 1502)
    assert await srv.ok("/user/get_users_info", body, other_platform)


async def test_admin_only_routes_refuse_user_tokens(t: TenantHandle) -> None:
    srv = t.server
    for r in ROUTES:
        if r.admin_only:
            status, env = await srv.post(r.path, {}, t.tokens["alice"])
            assert (status, env["errCode"]) == (403, 1002), (r.path, env)


async def test_unknown_route_and_wrong_method(t: TenantHandle) -> None:
    srv = t.server
    r = await srv.http.post("/no/such_route", json={}, headers={"token": t.admin})
    assert r.status_code == 404 and r.json()["errCode"] == 1004
    r = await srv.http.get("/user/get_users_info")
    assert r.status_code == 405 and r.json()["errCode"] == 1001


async def test_operation_id_longer_than_stored_is_refused(tenant: TenantHandle) -> None:
    """An operationID is stored with every event the action writes (128 characters): a
    longer one is a bad argument, as over the WebSocket, not a failed write."""
    srv = tenant.server
    before = await _counts(srv)
    body = {"users": [{"userID": "carol", "nickname": "Carol"}]}
    status, env = await srv.post("/user/user_register", body, tenant.admin,
                                 operation_id="x" * 129)
    assert (status, env["errCode"]) == (400, 1001), env
    assert "operationID" in env["errMsg"]
    assert await _counts(srv) == before
    status, env = await srv.post("/user/user_register", body, tenant.admin,
                                 operation_id="x" * 128)
    assert (status, env["errCode"]) == (200, 0), env


async def test_nul_in_any_string_is_refused(tenant: TenantHandle) -> None:
    """U+0000, which PostgreSQL's text cannot hold, is a bad argument named by its path on
    both backends, in values, keys and IDs alike; escaped inside a string it is text."""
    srv = tenant.server
    await tenant.users("alice", "bob")
    before = await _counts(srv)
    single = {"sendID": "alice", "recvID": "bob", "sessionType": 1, "contentType": 101,
              "content": '{"content": "x"}'}
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("/msg/send_msg", {**single, "ex": "a\x00b"}, "ex"),
        ("/user/update_user_info", {"userInfo": {"userID": "alice", "nickname": "a\x00"}},
         "userInfo.nickname"),
        ("/user/user_register", {"users": [{"userID": "z\x00z"}]}, "users.0.userID"),
        ("/group/create_group", {"ownerUserID": "alice", "groupInfo": {"groupName": "g\x00"}},
         "groupInfo.groupName"),
        ("/user/get_users_info", {"userIDs": ["alice\x00"]}, "userIDs.0"),
        ("/conversation/get_all_conversations", {"ownerUserID": "\x00"}, "ownerUserID"),
        ("/user/get_users_info", {"userIDs": ["alice"], "extra\x00": 1}, "extra"),
    ]
    for path, body, where in cases:
        status, env = await srv.post(path, body, tenant.admin)
        assert (status, env["errCode"]) == (400, 1001), (path, env)
        assert env["errMsg"].startswith(where) and "NUL" in env["errMsg"], (path, env)
    assert await _counts(srv) == before
    # A JSON escape inside the content string is text, not a NUL character.
    sent = await srv.ok("/msg/send_msg", {**single, "content": '{"content": "x\\u0000y"}'},
                        tenant.admin)
    assert sent["seq"] == 1


def _filled(schema: dict[str, Any], defs: dict[str, Any], big: int) -> Any:
    """A value for `schema` with every integer as near `big` as the field allows, every
    string an existing user's ID, every list of one such item, every object with all its
    fields."""
    if "$ref" in schema:
        return _filled(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, big)
    for key in ("enum", "const"):
        if key in schema:
            return schema[key][0] if key == "enum" else schema[key]
    options = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
    if options:
        return _filled(options[0], defs, big)
    kind = schema.get("type")
    if kind == "integer":
        return max(min(big, schema.get("maximum", big)), schema.get("minimum", big))
    if kind == "number":
        return float(big)
    if kind == "boolean":
        return True
    if kind == "array":
        return [_filled(schema.get("items", {}), defs, big)]
    if kind == "object" or "properties" in schema:
        return {name: _filled(p, defs, big) for name, p in schema.get("properties", {}).items()}
    return "alice"


@pytest.mark.parametrize("big", [2**31, 2**62, 2**63 - 1, 2**63, 2**64, 2**80])
async def test_huge_integers_are_refused_or_served_never_a_500(t: TenantHandle, big: int
                                                                ) -> None:
    """Every integer field of every route at once, with everything else filled in as a
    valid request would be: past what the database's 64-bit columns hold (seqs, times,
    a page's offset) is the client's 1001, never the driver's overflow as a 500."""
    srv = t.server
    for r in ROUTES:
        schema = r.body.model_json_schema()
        body = _filled(schema, schema.get("$defs", {}), big)
        status, env = await srv.post(r.path, body, t.admin)
        assert status < 500 and env["errCode"] != 500, (r.path, body, env)


@pytest.mark.parametrize(("path", "body"), [
    ("/friend/get_friend_list", {"userID": "alice", "pagination": {"pageNumber": 2**62}}),
    ("/msg/revoke_msg", {"userID": "alice", "conversationID": "si_alice_bob", "seq": 2**63}),
    ("/msg/pull_msg_by_seq", {"userID": "alice", "seqRanges": [
        {"conversationID": "si_alice_bob", "begin": 0, "end": 2**63}]}),
    ("/webhook/events/list", {"since": 2**63}),
])
async def test_numbers_past_64_bits_are_bad_arguments(t: TenantHandle, path: str,
                                                      body: dict[str, Any]) -> None:
    await _expect(t.server, path, body, t.admin, 400, 1001)
