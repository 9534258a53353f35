"""The session across a server restart, a kick, and a refused token."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from hub.sdk import ConnState, NotLoggedIn, TokenError, single_conversation_id
from tests.conftest import Database, Server, TenantHandle, settings_for, start_server
from tests.sdk.conftest import ClientFactory
from tests.sdk.test_sync import send_http

CONV = single_conversation_id("alice", "bob")


class Servers:
    """Real servers on one database, each stoppable on its own; one may take a given port
    (conftest's start_server, with its port chosen for it)."""

    def __init__(self, db: Database) -> None:
        self.settings = settings_for(db)
        self._stops: dict[int, Callable[[], Awaitable[None]]] = {}

    async def start(self, port: int | None = None, *, avoid: int = 0) -> Server:
        pick = start_server.__globals__["free_port"]
        with pytest.MonkeyPatch.context() as mp:
            if port is not None:
                mp.setitem(start_server.__globals__, "free_port", lambda: port)
            elif avoid:
                mp.setitem(start_server.__globals__, "free_port",
                           lambda: next(p for p in iter(pick, None) if p != avoid))
            srv, stop = await start_server(self.settings)
        self._stops[srv.port] = stop
        return srv

    async def stop(self, srv: Server) -> None:
        await self._stops.pop(srv.port)()

    async def close(self) -> None:
        for port in list(self._stops):
            await self._stops.pop(port)()


@pytest.fixture
async def servers(tmp_path: Path) -> AsyncIterator[Servers]:
    s = Servers(Database(f"sqlite+aiosqlite:///{tmp_path}/restart.db"))
    yield s
    await s.close()


async def test_server_restart_reconnects_and_every_message_appears_once(
        servers: Servers, make_client: ClientFactory,
        make_tenant: Callable[[Server], Awaitable[TenantHandle]]) -> None:
    first = await servers.start()
    tenant = await make_tenant(first)
    admin = tenant.admin
    alice_tok, _ = await tenant.users("alice", "bob")
    # No routine heartbeat: what alice missed can only come from the reconnect's resync.
    alice, rec = await make_client(first, "alice", alice_tok, heartbeat_interval=60)
    await send_http(first, admin, "bob", "alice", 1)
    await rec.wait_for(lambda: len(rec.messages) == 1)

    await servers.stop(first)
    await rec.wait_for(lambda: ConnState.DISCONNECTED in rec.states)
    # Bob writes while alice is offline, through a server on another port, so that these
    # are stored before alice can possibly be back.
    side = await servers.start(avoid=first.port)
    for i in range(2, 6):
        await send_http(side, admin, "bob", "alice", i)
    await servers.stop(side)
    assert alice.state is not ConnState.CONNECTED
    mine = asyncio.create_task(alice.send_text("written offline", recv_id="bob"))
    syncing = asyncio.create_task(alice.sync())  # waits for the connection, as a send does

    again = await servers.start(port=first.port)
    sent = await mine  # waited for the reconnect, then went out once
    await asyncio.wait_for(syncing, 10)
    # Caught up as of the call: what bob wrote while alice was away is stored.
    assert [m.seq for m in await alice.get_history(CONV, 100)][:5] == [1, 2, 3, 4, 5]
    assert alice.session.connects == 2
    await send_http(again, admin, "bob", "alice", 7)  # pushed on the new connection
    await rec.wait_for(lambda: len(rec.messages) == 6)
    await alice.sync()

    assert sent.seq == 6
    assert rec.seqs(CONV) == [1, 2, 3, 4, 5, 7]
    assert [m.text for m in rec.messages] == ["m1", "m2", "m3", "m4", "m5", "m7"]
    history = await alice.get_history(CONV, 100)
    assert [m.seq for m in history] == [1, 2, 3, 4, 5, 6, 7]
    assert history[5].client_msg_id == sent.client_msg_id
    seqs = await again.ok("/msg/newest_seq", {"userID": "alice"}, admin)
    assert seqs["maxSeqs"][CONV] == 7
    assert rec.states.count(ConnState.CONNECTED) == 2


async def test_kick_reaches_the_listener_and_stops_reconnecting(
        sqlite_tenant: TenantHandle, make_client: ClientFactory, tmp_path: Path) -> None:
    srv = sqlite_tenant.server
    (old_tok,) = await sqlite_tenant.users("alice")
    alice, rec = await make_client(srv, "alice", old_tok, platform_id=1)

    new_tok = await sqlite_tenant.login("alice", 1)  # the same user+platform elsewhere

    await rec.wait_for(lambda: rec.kicks == 1)
    assert alice.state is ConnState.KICKED
    seen = list(rec.states)
    assert seen[-1] is ConnState.KICKED
    await asyncio.sleep(1.0)  # two reconnect_max periods: time enough to try again
    assert rec.states == seen, "the kicked session tried to reconnect"
    assert all(t.done() for t in alice.session.tasks if t.get_name() == "imhub-sdk-conn")
    with pytest.raises(TokenError) as info:
        await alice.send_text("still here?", recv_id="alice")
    assert info.value.kicked

    # The new login is left alone by the old one.
    other, other_rec = await make_client(srv, "alice", new_tok, platform_id=1,
                                         data_dir=tmp_path / "other")
    await asyncio.sleep(0.5)
    assert other.state is ConnState.CONNECTED
    assert other_rec.kicks == 0

    # The kicked client logs in again with a new token, as on_kicked says: no logout()
    # needed first (and it kicks `other` in turn).
    await alice.login("alice", await sqlite_tenant.login("alice", 1))
    assert alice.state is ConnState.CONNECTED
    await other_rec.wait_for(lambda: other_rec.kicks == 1)


async def test_refused_token_fails_login_and_leaves_nothing_running(
        sqlite_tenant: TenantHandle, make_client: ClientFactory) -> None:
    srv = sqlite_tenant.server
    (tok,) = await sqlite_tenant.users("alice")
    client, _ = await make_client(srv, "alice", tok, login=False)
    with pytest.raises(TokenError):
        await client.login("alice", tok[:-4] + "AAAA")
    with pytest.raises(NotLoggedIn):
        client.session  # noqa: B018 (nothing is left of the failed login)
    await client.login("alice", tok)  # the same client can then log in properly
    assert client.state is ConnState.CONNECTED


async def test_a_dropped_connection_comes_back_by_itself(
        sqlite_tenant: TenantHandle, make_client: ClientFactory) -> None:
    srv = sqlite_tenant.server
    alice_tok, _ = await sqlite_tenant.users("alice", "bob")
    alice, rec = await make_client(srv, "alice", alice_tok, heartbeat_interval=60)
    alice.session.conn.abort()
    await rec.wait_for(lambda: rec.states.count(ConnState.CONNECTED) == 2)
    assert ConnState.DISCONNECTED in rec.states
    assert (await alice.send_text("back", recv_id="bob")).seq == 1
