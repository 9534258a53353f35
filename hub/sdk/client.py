"""IMClient: one user's session on top of the five parts (WsConn, WsRespAsyn, Ws, MsgSync,
Heartbeat), the local store, the conversation layer and the HTTP API.

A login keeps one long connection. When it drops, the client reconnects with jittered
exponential backoff, and the first heartbeat of the new connection resyncs everything
missed. A kick (or a refused token) ends the session: reconnecting could only be refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .backoff import Backoff
from .channel import PushMsgAndMaxSeqCh, ServerMaxSeqs
from .config import Config
from .conversation import Conversations
from .errors import (
    ConnectionLost,
    NotLoggedIn,
    RequestTimeout,
    SDKError,
    ServerError,
    TokenError,
)
from .heartbeat import Heartbeat
from .http_api import HttpApi
from .listener import ConnState, Dispatcher, Listener
from .models import (
    ContentType,
    Message,
    OfflinePushInfo,
    SendAck,
    SessionType,
    group_conversation_id,
    single_conversation_id,
)
from .msg_sync import MsgSync, SyncProgress
from .protocol import ReqIdentifier
from .store import LocalConversation, LocalStore, store_path
from .ws import Ws
from .ws_conn import WsConn
from .ws_resp_asyn import WsRespAsyn

log = logging.getLogger("imhub.sdk")

_FINAL = frozenset({ConnState.KICKED, ConnState.TOKEN_INVALID, ConnState.CLOSED})


def new_client_msg_id() -> str:
    return secrets.token_hex(16)


@dataclass(eq=False)
class Session:
    """The parts of one login, wired together."""

    user_id: str
    token: str
    conn: WsConn
    resp: WsRespAsyn
    ws: Ws
    push_ch: PushMsgAndMaxSeqCh
    syncer: MsgSync
    heartbeat: Heartbeat
    conversations: Conversations
    store: LocalStore
    api: HttpApi
    state: ConnState = ConnState.CONNECTING
    end_error: BaseException | None = None
    connects: int = 0
    stopping: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def set_state(self, state: ConnState, error: BaseException | None = None) -> None:
        self.state = state
        if state in _FINAL:
            self.end_error = error
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_connected(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while self.state is not ConnState.CONNECTED:
            if self.state in _FINAL:
                raise self.end_error or NotLoggedIn(f"session {self.state}")
            changed = self._changed
            try:
                async with asyncio.timeout(max(0.0, deadline - loop.time())):
                    await changed.wait()
            except TimeoutError:
                raise RequestTimeout("not connected in time") from None


class IMClient:
    """The SDK's entry point. Create it with `init_sdk(config)`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.dispatcher = Dispatcher()
        self._session: Session | None = None
        logging.getLogger("imhub.sdk").setLevel(config.log_level)

    # listeners

    def add_listener(self, listener: Listener) -> None:
        self.dispatcher.listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self.dispatcher.listeners.remove(listener)

    # session

    @property
    def session(self) -> Session:
        if self._session is None:
            raise NotLoggedIn("log in first")
        return self._session

    @property
    def user_id(self) -> str:
        return self.session.user_id

    @property
    def state(self) -> ConnState:
        return self._session.state if self._session is not None else ConnState.CLOSED

    @property
    def api(self) -> HttpApi:
        """The HTTP API as this user."""
        return self.session.api

    async def login(self, user_id: str, token: str) -> None:
        """Open the local store, connect, and start syncing. Returns once connected.

        Raises TokenError when the token is refused and ConnectionLost when the gateway
        cannot be reached; either way nothing is left running.
        """
        ended = self._session is not None and self._session.state in (
            ConnState.KICKED, ConnState.TOKEN_INVALID)
        if ended:  # a kicked session is over: log in again as on_kicked says, no logout
            await self.logout()
        if self._session is not None:
            raise SDKError(f"already logged in as {self._session.user_id}")
        cfg = self.config
        store = await LocalStore.open(store_path(cfg.data_dir, user_id, cfg.platform_id))
        conn = WsConn(cfg.ws_addr, open_timeout=cfg.connect_timeout,
                      ping_interval=cfg.ping_interval)
        resp = WsRespAsyn()
        push_ch: PushMsgAndMaxSeqCh = asyncio.Queue()
        ws = Ws(conn, resp, push_ch, request_timeout=cfg.request_timeout)
        conversations = Conversations(store, self.dispatcher, user_id)
        syncer = MsgSync(ws, push_ch, conversations.apply, await store.synced_seqs(),
                         progress=self._on_progress, pull_chunk=cfg.pull_chunk)
        s = Session(user_id=user_id, token=token, conn=conn, resp=resp, ws=ws,
                    push_ch=push_ch, syncer=syncer,
                    heartbeat=Heartbeat(ws, push_ch, cfg.heartbeat_interval),
                    conversations=conversations, store=store,
                    api=HttpApi(cfg.api_addr, user_id, token, timeout=cfg.request_timeout))
        self._session = s
        first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        s.tasks = [asyncio.create_task(syncer.run(), name="imhub-sdk-sync"),
                   asyncio.create_task(self._keep_connected(s, first), name="imhub-sdk-conn")]
        try:
            await first
        except BaseException:
            await self._teardown(s)
            raise

    async def logout(self) -> None:
        """Tell the server (2003), close the connection and the store. Safe to repeat."""
        s = self._session
        if s is None:
            return
        s.stopping = True
        if s.state is ConnState.CONNECTED:
            with contextlib.suppress(SDKError):
                await s.ws.send_req_wait_resp(ReqIdentifier.LOGOUT, {}, timeout=1.0)
        await self._teardown(s)
        await self.dispatcher.emit("on_connection_state", ConnState.CLOSED, None)

    async def _teardown(self, s: Session) -> None:
        s.set_state(ConnState.CLOSED, NotLoggedIn("logged out"))
        for task in s.tasks:
            task.cancel()
        await asyncio.gather(*s.tasks, return_exceptions=True)
        await s.conn.close()
        await s.api.aclose()
        await s.store.close()
        if self._session is s:
            self._session = None

    async def __aenter__(self) -> IMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.logout()

    async def _keep_connected(self, s: Session, first: asyncio.Future[None]) -> None:
        try:
            await self._connection_loop(s, first)
        except Exception as exc:
            # A bug here must not leave a session that looks alive and never syncs.
            log.exception("connection loop of %s failed", s.user_id)
            if not first.done():
                first.set_exception(exc)
            else:
                await self._set_state(s, ConnState.CLOSED, exc)

    async def _connection_loop(self, s: Session, first: asyncio.Future[None]) -> None:
        cfg = self.config
        backoff = Backoff(cfg.reconnect_min, cfg.reconnect_max)
        while not s.stopping:
            await self._set_state(s, ConnState.CONNECTING)
            try:
                await s.conn.connect(s.user_id, s.token, cfg.platform_id)
            except TokenError as exc:
                if not first.done():
                    first.set_exception(exc)
                    return
                await self._end(s, ConnState.KICKED if exc.kicked else ConnState.TOKEN_INVALID,
                                exc)
                return
            except (ConnectionLost, ServerError) as exc:
                if not first.done():
                    first.set_exception(exc)
                    return
                await self._set_state(s, ConnState.DISCONNECTED, exc)
                await asyncio.sleep(backoff.next_delay())
                continue
            s.connects += 1
            beats = s.heartbeat.beats
            await self._set_state(s, ConnState.CONNECTED)
            if not first.done():
                first.set_result(None)
            heartbeat = asyncio.create_task(s.heartbeat.run(), name="imhub-sdk-heartbeat")
            try:
                await s.ws.read_data()
            finally:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
                await s.conn.close()
            if s.ws.kicked:
                await self._end(s, ConnState.KICKED, TokenError(1502, "kicked"))
                return
            if s.stopping:  # our own logout closed it
                return
            # Only a connection that worked (answered a heartbeat) resets the backoff, so
            # a server that accepts and drops at once is not hammered.
            if s.heartbeat.beats > beats:
                backoff.reset()
            await self._set_state(s, ConnState.DISCONNECTED, ConnectionLost("connection lost"))
            await asyncio.sleep(backoff.next_delay())

    async def _set_state(self, s: Session, state: ConnState,
                         error: BaseException | None = None) -> None:
        s.set_state(state, error)
        await self.dispatcher.emit("on_connection_state", state, error)

    async def _end(self, s: Session, state: ConnState, error: BaseException) -> None:
        log.warning("session of %s ended: %s", s.user_id, state)
        await self._set_state(s, state, error)
        if state is ConnState.KICKED:
            await self.dispatcher.emit("on_kicked")

    async def _on_progress(self, progress: SyncProgress) -> None:
        await self.dispatcher.emit("on_sync_progress", progress)

    # messages

    async def send_message(self, *, recv_id: str = "", group_id: str = "",
                           content: str | Mapping[str, Any],
                           content_type: int = ContentType.TEXT,
                           offline_push_info: OfflinePushInfo | None = None, ex: str = "",
                           at_user_ids: Sequence[str] = (), client_msg_id: str | None = None,
                           timeout: float | None = None,  # noqa: ASYNC109 (retry budget)
                           ) -> Message:
        """Send over the connection (1003) and return the acknowledged message.

        The clientMsgID is fixed before the first attempt, so when the connection drops
        before the answer, the request is sent again after the reconnect and the server
        answers with the first result: a message is never stored twice. On a live
        connection it is sent once and its answer awaited (a busy server answers in
        turn; re-sending would only add to its queue). Gives up after `timeout` (default
        config.send_timeout) with RequestTimeout; a refusal raises ServerError with the
        server's errCode.
        """
        s = self.session
        if bool(recv_id) == bool(group_id):
            raise ValueError("give exactly one of recv_id and group_id")
        session_type = SessionType.GROUP if group_id else SessionType.SINGLE
        body = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
        cid = client_msg_id or new_client_msg_id()
        push = offline_push_info or OfflinePushInfo()
        data = {"sendID": s.user_id, "recvID": recv_id, "groupID": group_id,
                "sessionType": int(session_type), "contentType": int(content_type),
                "content": body, "clientMsgID": cid, "offlinePushInfo": push.to_wire(),
                "ex": ex, "atUserIDList": list(at_user_ids)}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.config.send_timeout)
        s.conversations.sending.add(cid)
        try:
            ack = SendAck.from_wire(await self._send_until_answered(s, data, deadline))
        except BaseException:
            s.conversations.sending.discard(cid)
            raise
        if ack.client_msg_id and ack.client_msg_id != cid:
            raise SDKError(f"ack for {ack.client_msg_id!r} answered {cid!r}")
        conv = (group_conversation_id(group_id) if group_id
                else single_conversation_id(s.user_id, recv_id))
        if ack.seq > 0:
            s.push_ch.put_nowait(ServerMaxSeqs({conv: ack.seq}))
        else:
            # A before hook dropped it: success, but nothing stored that could come back.
            s.conversations.sending.discard(cid)
        return Message(
            conversation_id=conv, seq=ack.seq, client_msg_id=cid,
            server_msg_id=ack.server_msg_id, send_id=s.user_id, recv_id=recv_id,
            group_id=group_id, session_type=int(session_type), content_type=int(content_type),
            content=body, send_time=ack.send_time, status=2,
            sender_platform_id=self.config.platform_id, offline_push_info=push,
            at_user_ids=tuple(at_user_ids), ex=ex)

    async def _send_until_answered(self, s: Session, data: dict[str, Any],
                                   deadline: float) -> Any:
        loop = asyncio.get_running_loop()
        while True:
            await s.wait_connected(deadline)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise RequestTimeout("send_message timed out")
            try:
                return await s.ws.send_req_wait_resp(ReqIdentifier.SEND_MSG, data,
                                                     timeout=remaining)
            except ConnectionLost as exc:
                log.info("send %s: %r, sending again", data["clientMsgID"], exc)
                # Give the reader a moment to notice a dead socket and change the state.
                await asyncio.sleep(0.05)

    async def send_text(self, text: str, *, recv_id: str = "", group_id: str = "") -> Message:
        return await self.send_message(recv_id=recv_id, group_id=group_id,
                                       content={"content": text})

    async def sync(self, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Resync now (as after a reconnect) and return once the local store has caught
        up with the server's max seqs as of this call.

        While the client is reconnecting it waits for the connection, and a sync that a
        lost connection cut short starts again on the next one; RequestTimeout when no
        connection comes within `timeout` (default config.send_timeout). The pulls
        themselves are not bounded: bound a whole sync with asyncio.timeout."""
        s = self.session
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or self.config.send_timeout)
        while True:
            await s.wait_connected(deadline)
            done: asyncio.Future[None] = loop.create_future()
            await s.heartbeat.beat(report=True, done=done)
            try:
                await done
                return
            except ConnectionLost as exc:
                log.info("sync: %r, again once connected", exc)
                # Give the reader a moment to notice a dead socket and change the state.
                await asyncio.sleep(0.05)

    # the local store

    async def get_history(self, conversation_id: str, limit: int = 20) -> list[Message]:
        """The last `limit` messages of a conversation, oldest first, from the store."""
        return await self.session.store.latest(conversation_id, limit)

    async def get_local_conversations(self) -> list[LocalConversation]:
        return await self.session.store.conversations()


def init_sdk(config: Config, *, listener: Listener | None = None) -> IMClient:
    """OpenIM's InitSDK: a client configured and ready to log in."""
    client = IMClient(config)
    if listener is not None:
        client.add_listener(listener)
    return client
