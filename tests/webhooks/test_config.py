"""Per-tenant webhook configuration: validation (every error names its key), storage
on both databases, tenant isolation, seeding from files, OpenIM's own file, and the
cache that other nodes' writes reach."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio
import yaml
from sqlalchemy import select

from hub.core import Hub
from hub.db.webhook_config import WebhookConfigRow
from hub.errors import ConfigError
from hub.settings import WebhookSettings
from hub.tenants import create_tenant
from hub.webhooks.before import callback_url
from hub.webhooks.config import (
    DEFAULT_RETRY_SCHEDULE,
    OPENIM_ONLY_KEYS,
    InvalidConfig,
    WebhookConfigs,
    parse_config,
)
from tests.conftest import (
    Database,
    Server,
    TenantHandle,
    pg_schema,
    settings_for,
    start_server,
)
from tests.webhooks.receiver import serve_receiver

# Tests on the server the module shares run in the module's event loop.
shared = pytest.mark.asyncio(loop_scope="module")

MakeServer = Callable[..., Awaitable[Server]]
MakeTenant = Callable[..., Awaitable[TenantHandle]]
LOOPBACK = {"allowNetworks": ["127.0.0.0/8"]}
PUBLIC_URL = "http://93.184.216.34/openim"  # an IP literal: nothing to resolve offline

# An OpenIM v3 webhooks.yml as operators have it: every key OpenIM's file has, empty
# values where OpenIM leaves them empty, ranges as strings. Only the url is templated.
OPENIM_FILE = """\
url: {url}
beforeSendSingleMsg:
  enable: true
  timeout: 5
  failedContinue: true
  # both forms: one content type, or a range
  allowedTypes: []
  deniedTypes: [110, "200-500"]
beforeUpdateUserInfoEx:
  enable: false
  timeout: 5
  failedContinue: true
afterUpdateUserInfoEx:
  enable: false
  timeout: 5
afterSendSingleMsg:
  enable: true
  timeout: 5
  attentionIds: []
  allowedTypes: []
  deniedTypes: []
beforeSendGroupMsg:
  enable: false
  timeout: 5
  failedContinue: true
  allowedTypes: []
  deniedTypes: []
beforeMsgModify:
  enable: false
  timeout: 5
  failedContinue: true
  allowedTypes: []
  deniedTypes: []
afterSendGroupMsg: {{enable: false, timeout: 5, allowedTypes: [], deniedTypes: []}}
afterMsgSaveDB: {{enable: false, timeout: 5}}
afterUserOnline: {{enable: false, timeout: 5}}
afterUserOffline: {{enable: false, timeout: 5}}
afterUserKickOff: {{enable: false, timeout: 5}}
beforeOfflinePush: {{enable: false, timeout: 5, failedContinue: true}}
beforeOnlinePush: {{enable: false, timeout: 5, failedContinue: true}}
beforeGroupOnlinePush: {{enable: false, timeout: 5, failedContinue: true}}
beforeAddFriend:
  enable: true
  timeout: 2
  failedContinue: false
beforeUpdateUserInfo: {{enable: false, timeout: 5, failedContinue: true}}
afterUpdateUserInfo: {{enable: false, timeout: 5}}
beforeCreateGroup: {{enable: false, timeout: 5, failedContinue: true}}
afterCreateGroup: {{enable: false, timeout: 5}}
beforeMemberJoinGroup: {{enable: false, timeout: 5, failedContinue: true}}
beforeSetGroupMemberInfo: {{enable: false, timeout: 5, failedContinue: true}}
afterSetGroupMemberInfo: {{enable: false, timeout: 5}}
afterQuitGroup: {{enable: false, timeout: 5}}
afterKickGroupMember: {{enable: false, timeout: 5}}
afterDismissGroup: {{enable: false, timeout: 5}}
beforeApplyJoinGroup: {{enable: false, timeout: 5, failedContinue: true}}
afterGroupMsgRead: {{enable: false, timeout: 5}}
afterSingleMsgRead: {{enable: false, timeout: 5}}
beforeUserRegister: {{enable: false, timeout: 5, failedContinue: true}}
afterUserRegister: {{enable: false, timeout: 5}}
afterTransferGroupOwner: {{enable: false, timeout: 5}}
beforeSetFriendRemark: {{enable: false, timeout: 5, failedContinue: true}}
afterSetFriendRemark: {{enable: false, timeout: 5}}
afterGroupMsgRevoke: {{enable: false, timeout: 5}}
afterJoinGroup: {{enable: false, timeout: 5}}
beforeInviteUserToGroup: {{enable: false, timeout: 5, failedContinue: true}}
afterSetGroupInfo: {{enable: false, timeout: 5}}
beforeSetGroupInfo: {{enable: false, timeout: 5, failedContinue: true}}
afterSetGroupInfoEx: {{enable: false, timeout: 5}}
beforeSetGroupInfoEx: {{enable: false, timeout: 5, failedContinue: true}}
afterRevokeMsg: {{enable: false, timeout: 5}}
beforeAddBlack:
  enable: false
  timeout: 5
  failedContinue:
afterAddFriend: {{enable: false, timeout: 5}}
beforeAddFriendAgree: {{enable: false, timeout: 5, failedContinue: true}}
afterAddFriendAgree: {{enable: false, timeout: 5}}
afterDeleteFriend: {{enable: false, timeout: 5}}
beforeImportFriends: {{enable: false, timeout: 5, failedContinue: true}}
afterImportFriends: {{enable: false, timeout: 5}}
afterRemoveBlack: {{enable: false, timeout: 5}}
beforeCreateSingleChatConversations: {{enable: false, timeout: 5, failedContinue: false}}
afterCreateSingleChatConversations: {{enable: false, timeout: 5, failedContinue: false}}
beforeCreateGroupChatConversations: {{enable: false, timeout: 5, failedContinue: false}}
afterCreateGroupChatConversations: {{enable: false, timeout: 5, failedContinue: false}}
"""


# --- the model, on its own --------------------------------------------------------------

INVALID: list[tuple[Any, str, str]] = [
    ({"beforeSendSingleMessage": {}}, "beforeSendSingleMessage",
     "did you mean 'beforeSendSingleMsg'"),
    ({"callback": {"url": PUBLIC_URL}}, "callback", "top level"),
    ({"beforeAddFriend": {"enable": "yes"}}, "beforeAddFriend.enable", "boolean"),
    ({"beforeAddFriend": {"enable": 1}}, "beforeAddFriend.enable", "boolean"),
    ({"beforeAddFriend": {"timeout": "5"}}, "beforeAddFriend.timeout", "number"),
    ({"beforeAddFriend": {"timeout": 0}}, "beforeAddFriend.timeout", "greater than 0"),
    ({"beforeAddFriend": {"timeout": 61}}, "beforeAddFriend.timeout", "60"),
    ({"beforeAddFriend": {"failedContinue": "false"}}, "beforeAddFriend.failedContinue",
     "boolean"),
    ({"beforeAddFriend": {"attentionIds": []}}, "beforeAddFriend.attentionIds",
     "unknown key"),
    ({"afterAddFriend": {"failedContinue": True}}, "afterAddFriend.failedContinue",
     "unknown key"),
    ({"afterAddFriend": {"attentionIds": "alice"}}, "afterAddFriend.attentionIds", "list"),
    ({"afterAddFriend": {"attentionIds": ["alice", 7]}}, "afterAddFriend.attentionIds[1]",
     "string"),
    ({"beforeAddFriend": "on"}, "beforeAddFriend", "mapping"),
    ({"beforeSendSingleMsg": {"deniedTypes": [101, "x-y"]}},
     "beforeSendSingleMsg.deniedTypes[1]", "range"),
    ({"beforeSendSingleMsg": {"deniedTypes": ["300-200"]}},
     "beforeSendSingleMsg.deniedTypes[0]", "ends before it starts"),
    ({"beforeSendSingleMsg": {"allowedTypes": [True]}}, "beforeSendSingleMsg.allowedTypes[0]",
     "content type"),
    ({"beforeImportFriends": {"enable": "no"}}, "beforeImportFriends.enable", "boolean"),
    ({"retrySchedule": [0, -1]}, "retrySchedule[1]", "greater than or equal to 0"),
    ({"retrySchedule": []}, "retrySchedule", "at least 1"),
    ({"retrySchedule": "0,5"}, "retrySchedule", "list"),
    ({"retrySchedule": [0, 700000]}, "retrySchedule[1]", "604800"),
    ({"priority": "1"}, "priority", "integer"),
    ({"url": 5}, "url", "string"),
    ({"url": "ftp://backend.example/cb"}, "url", "http or https"),
    ({"url": "http://user:pw@backend.example/cb"}, "url", "credentials"),
    ({"url": "http://127.0.0.1:8080/cb"}, "url", "loopback"),
    ({"url": "http://169.254.169.254/latest"}, "url", "link-local"),
    ({"beforeAddFriend": {"enable": True}}, "url", "required when a before hook is enabled"),
    ({1: {}}, "1", "strings"),
    ([{"url": PUBLIC_URL}], "config", "object"),
]


@pytest.mark.parametrize(("data", "key", "words"), INVALID,
                         ids=[f"{i}-{k}" for i, (_, k, _) in enumerate(INVALID)])
def test_an_invalid_config_names_its_key(data: Any, key: str, words: str) -> None:
    from hub.webhooks.netguard import NetGuard

    with pytest.raises(InvalidConfig) as err:
        parse_config(data, NetGuard())
    assert err.value.key == key
    assert words in err.value.msg


def test_defaults_and_wire_form() -> None:
    config = parse_config({"url": PUBLIC_URL, "beforeAddFriend": {"enable": True},
                           "afterAddFriend": {"enable": True, "attentionIds": ["a"]},
                           "beforeAddBlack": {"enable": True, "failedContinue": None},
                           "afterDeleteFriend": None})
    assert config.wire() == {
        "url": PUBLIC_URL, "priority": 1000, "retrySchedule": list(DEFAULT_RETRY_SCHEDULE),
        "beforeAddFriend": {"enable": True, "timeout": 5, "failedContinue": True,
                            "allowedTypes": [], "deniedTypes": []},
        "afterAddFriend": {"enable": True, "timeout": 5, "attentionIds": ["a"],
                           "allowedTypes": [], "deniedTypes": []},
        "beforeAddBlack": {"enable": True, "timeout": 5, "failedContinue": True,
                           "allowedTypes": [], "deniedTypes": []},
    }
    assert parse_config(config.wire()) == config  # what is stored reads back the same


def test_enable_defaults_to_false_as_in_openim() -> None:
    config = parse_config({"url": PUBLIC_URL, "beforeAddFriend": {"timeout": 2},
                           "afterAddFriend": {"attentionIds": ["a"]}})
    assert config.before("beforeAddFriend") is None
    assert config.after("afterAddFriend") is None


def test_type_filters() -> None:
    config = parse_config({"url": PUBLIC_URL, "beforeSendSingleMsg": {
        "enable": True, "allowedTypes": [101, "105 - 110"], "deniedTypes": ["107-108"]}})
    hc = config.before("beforeSendSingleMsg")
    assert hc is not None
    taken = [t for t in range(100, 116) if hc.takes_type(t)]
    assert taken == [101, 105, 106, 109, 110]
    assert not parse_config({"url": PUBLIC_URL, "beforeSendSingleMsg": {"enable": True}}
                            ).hooks["beforeSendSingleMsg"].takes_type(113)  # never typing


def test_after_events_follow_enable_attention_ids_and_types() -> None:
    config = parse_config({
        "afterUpdateUserInfo": {"enable": True, "attentionIds": ["vip"]},
        "afterSendSingleMsg": {"enable": True, "deniedTypes": [102]},
        "afterAddFriend": {"enable": False},
    })
    assert config.wants_after("afterUpdateUserInfo", {"userID": "vip"})
    assert not config.wants_after("afterUpdateUserInfo", {"userID": "someone"})
    assert config.wants_after("afterSendSingleMsg", {"sendID": "a", "contentType": 101})
    assert not config.wants_after("afterSendSingleMsg", {"sendID": "a", "contentType": 102})
    assert not config.wants_after("afterAddFriend", {"fromUserID": "vip"})
    assert not config.wants_after("afterDeleteFriend", {"ownerUserID": "vip"})  # absent: off


def test_openim_only_keys_are_accepted_and_listed() -> None:
    data = yaml.safe_load(OPENIM_FILE.format(url=PUBLIC_URL))
    config = parse_config(data)
    assert set(config.ignored) == OPENIM_ONLY_KEYS
    assert config.before("beforeAddFriend") is not None
    assert config.hooks["beforeAddBlack"].failedContinue is True  # type: ignore[union-attr]
    assert config.after("afterSendSingleMsg") is not None


@pytest.mark.parametrize(("base", "url"), [
    ("http://b.example/cb", "http://b.example/cb/callbackX"),
    ("http://b.example/cb/", "http://b.example/cb/callbackX"),
    ("http://b.example", "http://b.example/callbackX"),
    ("http://b.example:8080/cb?key=k1", "http://b.example:8080/cb/callbackX?key=k1"),
])
def test_callback_url_appends_the_command_to_the_path(base: str, url: str) -> None:
    assert callback_url(base, "callbackX") == url


# --- over HTTP, on a server shared by the module -----------------------------------------

@pytest_asyncio.fixture(scope="module", loop_scope="module",
                        params=["sqlite", "postgresql"])
async def shared_server(request: pytest.FixtureRequest,
                        tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    """A server with the default SSRF guard (no private networks), on each database."""
    if request.param == "sqlite":
        db = Database(f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('config')}/imhub.db")
        srv, stop = await start_server(settings_for(db))
        yield srv
        await stop()
        return
    async with pg_schema() as pg:
        srv, stop = await start_server(settings_for(pg))
        yield srv
        await stop()


async def new_tenant(srv: Server, name: str | None = None) -> TenantHandle:
    async with srv.hub.sessions() as s, s.begin():
        t = await create_tenant(s, name or "tenant-" + secrets.token_hex(4))
    return TenantHandle(srv, t.tenant_id, t.admin_token)


@pytest_asyncio.fixture(loop_scope="module")
async def admin(shared_server: Server) -> TenantHandle:
    return await new_tenant(shared_server)


async def get_config(t: TenantHandle) -> dict[str, Any]:
    data: dict[str, Any] = await t.server.ok("/webhook/get_config", {}, t.admin)
    return data


@shared
async def test_set_then_get_round_trips_and_set_replaces(admin: TenantHandle) -> None:
    assert await get_config(admin) == {"config": None, "secret": None, "updatedAt": 0}
    body = {"url": PUBLIC_URL, "beforeAddFriend": {"enable": True, "timeout": 1.5},
            "afterSendSingleMsg": {"enable": True, "attentionIds": ["alice"],
                                   "deniedTypes": ["200-300"]},
            "retrySchedule": [0, 1, 2.5], "priority": 50, "beforeMsgModify": {"enable": True}}
    data = await admin.server.ok("/webhook/set_config", {"config": body}, admin.admin)
    assert data["ignoredKeys"] == ["beforeMsgModify"]
    assert data["secret"].startswith("whsec_")
    got = await get_config(admin)
    assert got["secret"] == data["secret"] and got["updatedAt"] == data["updatedAt"] > 0
    assert got["config"] == {
        "url": PUBLIC_URL, "priority": 50, "retrySchedule": [0, 1, 2.5],
        "beforeAddFriend": {"enable": True, "timeout": 1.5, "failedContinue": True,
                            "allowedTypes": [], "deniedTypes": []},
        "afterSendSingleMsg": {"enable": True, "timeout": 5, "attentionIds": ["alice"],
                               "allowedTypes": [], "deniedTypes": ["200-300"]},
    }
    # Replaced, not merged: what the new config leaves out is gone.
    await admin.server.ok("/webhook/set_config", {"config": {
        "url": PUBLIC_URL, "beforeSetFriendRemark": {"enable": True}}}, admin.admin)
    got2 = await get_config(admin)
    assert set(got2["config"]) == {"url", "priority", "retrySchedule", "beforeSetFriendRemark"}
    assert got2["secret"] == data["secret"]  # the secret survives a config change
    # Without a url there is nothing to sign for.
    await admin.server.ok("/webhook/set_config", {"config": {
        "afterAddFriend": {"enable": True}}}, admin.admin)
    assert (await get_config(admin))["secret"] is None


@shared
async def test_the_stored_row_is_the_wire_form(admin: TenantHandle) -> None:
    await admin.server.ok("/webhook/set_config", {"config": {
        "afterAddFriend": {"enable": True}}}, admin.admin)
    async with admin.server.hub.sessions() as s:
        row = await s.get(WebhookConfigRow, admin.tenant_id)
    assert row is not None
    assert orjson.loads(row.config) == (await get_config(admin))["config"]


@shared
@pytest.mark.parametrize(("config", "key"), [
    ({"beforeAddFriend": {"enable": "true"}}, "beforeAddFriend.enable"),
    ({"beforeAddFreind": {"enable": True}}, "beforeAddFreind"),
    ({"url": "http://127.0.0.1:9000/cb", "beforeAddFriend": {"enable": True}}, "url"),
    ({"url": "http://no-such-host.invalid/cb"}, "url"),
    ({"url": "http://localhost:9000/cb"}, "url"),  # a name that resolves to loopback
    ({"retrySchedule": [5, "300"]}, "retrySchedule[1]"),
])
async def test_set_config_refuses_bad_values_with_1001_naming_the_key(
        admin: TenantHandle, config: dict[str, Any], key: str) -> None:
    status, env = await admin.server.post("/webhook/set_config", {"config": config},
                                          admin.admin)
    assert (env["errCode"], status) == (1001, 400)
    assert f"'{key}'" in env["errMsg"]
    assert (await get_config(admin))["config"] is None  # nothing stored


@shared
async def test_set_config_explains_a_body_that_is_not_wrapped(admin: TenantHandle) -> None:
    status, env = await admin.server.post("/webhook/set_config",
                                          {"url": PUBLIC_URL, "beforeAddFriend": {}},
                                          admin.admin)
    assert (env["errCode"], status) == (1001, 400)
    assert '{"config": {...}}' in env["errMsg"]
    status, env = await admin.server.post("/webhook/set_config", {"config": "url: x"},
                                          admin.admin)
    assert (env["errCode"], status) == (1001, 400) and "config" in env["errMsg"]


@shared
async def test_each_admin_sees_and_replaces_its_own_tenants_config_only(
        shared_server: Server) -> None:
    a, b = await new_tenant(shared_server), await new_tenant(shared_server)
    await a.server.ok("/webhook/set_config", {"config": {
        "url": PUBLIC_URL, "beforeAddFriend": {"enable": True}}}, a.admin)
    mine = await get_config(a)
    assert (await get_config(b))["config"] is None
    # A tenantID in the body is ignored: the token decides whose config it is.
    await b.server.ok("/webhook/set_config", {"tenantID": a.tenant_id, "config": {
        "afterAddFriend": {"enable": True}}}, b.admin)
    assert await get_config(a) == mine
    assert set((await get_config(b))["config"]) == {"url", "priority", "retrySchedule",
                                                    "afterAddFriend"}


@shared
async def test_user_tokens_cannot_read_or_write_the_config(admin: TenantHandle) -> None:
    await admin.server.ok("/user/user_register", {"users": [{"userID": "u1"}]}, admin.admin)
    token = await admin.login("u1")
    for path, body in (("/webhook/get_config", {}),
                       ("/webhook/set_config", {"config": {}})):
        status, env = await admin.server.post(path, body, token)
        assert (env["errCode"], status) == (1002, 403)
    status, env = await admin.server.post("/webhook/get_config", {}, "adm.not-a-token")
    assert (env["errCode"], status) == (1501, 401)


@shared
async def test_an_openim_file_sent_as_json_is_accepted(admin: TenantHandle) -> None:
    data = yaml.safe_load(OPENIM_FILE.format(url=PUBLIC_URL))
    out = await admin.server.ok("/webhook/set_config", {"config": data}, admin.admin)
    assert set(out["ignoredKeys"]) == OPENIM_ONLY_KEYS
    config = (await get_config(admin))["config"]
    assert config["beforeSendSingleMsg"]["deniedTypes"] == [110, "200-500"]
    assert config["beforeAddBlack"]["failedContinue"] is True
    assert not OPENIM_ONLY_KEYS & set(config)


# --- servers of their own: seeding from files, the connect-time guard, the cache -------

def _write(directory: Path, name: str, text: str) -> None:
    (directory / name).write_text(text)


async def test_files_seed_tenants_without_a_config(
        sqlite_database: Database, make_server: MakeServer, tmp_path: Path) -> None:
    first, stop = await start_server(settings_for(sqlite_database))
    by_id, by_name, other, kept = [await new_tenant(first, n)
                                   for n in ("by-id", "acme", "other", "kept")]
    await first.ok("/webhook/set_config", {"config": {
        "afterAddFriend": {"enable": True}}}, kept.admin)
    await stop()

    seeds = tmp_path / "webhooks"
    seeds.mkdir()
    _write(seeds, f"{by_id.tenant_id}.yml", "afterUserRegister: {enable: true}\n")
    _write(seeds, "acme.yml", f"url: {PUBLIC_URL}\nbeforeAddFriend: {{enable: true}}\n")
    _write(seeds, "kept.yml", "afterDeleteFriend: {enable: true}\n")
    _write(seeds, "default.yml", "afterRemoveBlack: {enable: true}\nretrySchedule: [0, 1]\n")
    _write(seeds, "notes.txt", "not a config")
    srv = await make_server(settings_for(sqlite_database,
                                         webhooks={"config_dir": str(seeds)}))

    # Named tenants were seeded at start-up, before anyone asked.
    async with srv.hub.sessions() as s:
        seeded = set((await s.execute(select(WebhookConfigRow.tenant_id))).scalars())
    assert seeded == {by_id.tenant_id, by_name.tenant_id, kept.tenant_id}

    def hooks(data: dict[str, Any]) -> set[str]:
        return set(data["config"]) - {"url", "priority", "retrySchedule"}

    for t in (by_id, by_name, other, kept):
        t.server = srv
    assert hooks(await get_config(by_id)) == {"afterUserRegister"}
    named = await get_config(by_name)
    assert hooks(named) == {"beforeAddFriend"} and named["secret"].startswith("whsec_")
    assert hooks(await get_config(kept)) == {"afterAddFriend"}  # stored config stands
    default = await get_config(other)
    assert hooks(default) == {"afterRemoveBlack"}
    assert default["config"]["retrySchedule"] == [0, 1]
    # A tenant created later gets default.yml on first use.
    late = await new_tenant(srv)
    assert hooks(await get_config(late)) == {"afterRemoveBlack"}
    # Seeded is stored: set_config replaces it like any other.
    await srv.ok("/webhook/set_config", {"config": {}}, late.admin)
    assert hooks(await get_config(late)) == set()


async def test_an_openim_file_seeds_and_its_hooks_are_called(
        sqlite_database: Database, make_server: MakeServer, tmp_path: Path) -> None:
    async with serve_receiver() as receiver:
        seeds = tmp_path / "webhooks"
        seeds.mkdir()
        _write(seeds, "default.yml", OPENIM_FILE.format(url=receiver.url + "/callbackExample"))
        srv = await make_server(settings_for(sqlite_database,
                                             webhooks={**LOOPBACK, "config_dir": str(seeds)}))
        t = await new_tenant(srv)
        await srv.ok("/user/user_register", {"users": [{"userID": "a"}, {"userID": "b"}]},
                     t.admin)
        receiver.answer = lambda hit: None  # 200 "ok": not JSON, a failed hook
        status, env = await srv.post("/friend/add_friend", {"fromUserID": "a",
                                                            "toUserID": "b"}, t.admin)
        assert (env["errCode"], status) == (5001, 503)  # failedContinue: false in the file
        assert [h.path for h in receiver.hits] == [
            "/callbackExample/callbackBeforeAddFriendCommand"]


@pytest.mark.parametrize(("files", "words"), [
    ({"default.yml": "beforeAddFriend: {enable: yes-please}\n"},
     "default.yml': config key 'beforeAddFriend.enable'"),
    ({"acme.yml": "url: http://10.0.0.5/cb\n"}, "acme.yml': config key 'url'"),
    ({"acme.yml": "beforeAddFriend: [\n"}, "acme.yml' cannot be read"),
    ({"acme.yaml": "callback:\n  url: http://x.example\n"}, "config key 'callback'"),
])
async def test_a_bad_seed_file_stops_start_up_naming_file_and_key(
        sqlite_database: Database, tmp_path: Path, files: dict[str, str], words: str) -> None:
    for name, text in files.items():
        _write(tmp_path, name, text)
    with pytest.raises(ConfigError) as err:
        Hub(settings_for(sqlite_database, webhooks={"config_dir": str(tmp_path)}))
    assert words in str(err.value)


async def test_a_config_dir_that_is_not_there_is_a_config_error(
        sqlite_database: Database, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        Hub(settings_for(sqlite_database, webhooks={"config_dir": str(tmp_path / "nope")}))
    assert "webhooks.config_dir" in str(err.value)


async def test_a_seeded_name_that_resolves_to_loopback_is_refused_when_connecting(
        sqlite_database: Database, make_server: MakeServer, tmp_path: Path) -> None:
    # Seeding checks syntax and IP literals only, so "localhost" gets in; the guard on
    # every connection is what keeps it out.
    async with serve_receiver() as receiver:
        _write(tmp_path, "default.yml",
               f"url: http://localhost:{receiver.port}/cb\n"
               "beforeAddFriend: {enable: true, timeout: 2, failedContinue: false}\n")
        srv = await make_server(settings_for(sqlite_database,
                                             webhooks={"config_dir": str(tmp_path)}))
        t = await new_tenant(srv)
        await srv.ok("/user/user_register", {"users": [{"userID": "a"}, {"userID": "b"}]},
                     t.admin)
        status, env = await srv.post("/friend/add_friend", {"fromUserID": "a",
                                                            "toUserID": "b"}, t.admin)
        assert (env["errCode"], status) == (5001, 503)
        assert receiver.hits == []


async def test_another_nodes_write_shows_after_the_refresh_interval(
        sqlite_database: Database, make_server: MakeServer) -> None:
    srv = await make_server(settings_for(sqlite_database))
    t = await new_tenant(srv)
    # Two more nodes' caches over the same database: one re-reads every 50 ms, the
    # other not within this test.
    quick = WebhookConfigs(srv.hub.sessions, WebhookSettings(), refresh_after=0.05)
    slow = WebhookConfigs(srv.hub.sessions, WebhookSettings(), refresh_after=3600)
    for node in (quick, slow):
        assert (await node.get(t.tenant_id)).config is None
    await srv.ok("/webhook/set_config", {"config": {"afterAddFriend": {"enable": True}}},
                 t.admin)
    for _ in range(200):
        entry = await quick.get(t.tenant_id)  # never waits: a stale entry is re-read behind
        if entry.config is not None:
            break
        await asyncio.sleep(0.01)
    assert entry.config is not None and entry.config.after("afterAddFriend") is not None
    assert (await slow.get(t.tenant_id)).config is None
    slow.forget(t.tenant_id)
    assert (await slow.get(t.tenant_id)).config is not None
    for node in (quick, slow):
        await node.close()


async def test_get_now_never_waits_and_starts_a_due_refresh(
        sqlite_database: Database, make_server: MakeServer) -> None:
    # What a send asks on its way without a task (hub/domain/sending.py): a config never
    # read is None (the send then takes the waiting way, which reads it); a stale one is
    # served while it is read again behind.
    srv = await make_server(settings_for(sqlite_database))
    t = await new_tenant(srv)
    node = WebhookConfigs(srv.hub.sessions, WebhookSettings(), refresh_after=0.05)
    assert node.get_now(t.tenant_id) is None
    await asyncio.sleep(0.1)
    assert node.get_now(t.tenant_id) is None  # asking did not load it
    assert (await node.get(t.tenant_id)).config is None
    await srv.ok("/webhook/set_config", {"config": {"afterAddFriend": {"enable": True}}},
                 t.admin)
    for _ in range(200):
        entry = node.get_now(t.tenant_id)
        assert entry is not None
        if entry.config is not None:
            break
        await asyncio.sleep(0.01)
    assert entry.config is not None and entry.config.after("afterAddFriend") is not None
    await node.close()


def test_the_example_file_is_valid_and_names_every_hook() -> None:
    from hub.bus.catalogue import HOOKS

    path = Path(__file__).resolve().parents[2] / "config" / "webhooks.example.yml"
    data = yaml.safe_load(path.read_text())
    config = parse_config(data)
    assert set(config.hooks) == set(HOOKS)
    assert config.ignored == ()
    assert list(config.retry_schedule) == list(DEFAULT_RETRY_SCHEDULE)
