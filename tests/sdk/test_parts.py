"""The parts that need no imhub server: reply matching, backoff, config, failures."""

from __future__ import annotations

import asyncio
import gc

import pytest

from hub.sdk import Config, ConnectionLost, HttpApi, RequestTimeout, WsRespAsyn
from hub.sdk.backoff import Backoff
from hub.sdk.protocol import Frame, decode_frame, encode_request
from hub.sdk.ws import Ws


def _reply(msg_incr: str, data: object) -> Frame:
    return decode_frame(encode_request(1003, msg_incr, "op", {"echo": data}))


async def test_replies_in_any_order_reach_their_own_waiter() -> None:
    resp = WsRespAsyn()
    pending = [resp.get_ch() for _ in range(50)]
    assert len({incr for incr, _ in pending}) == 50
    for i, (incr, _) in reversed(list(enumerate(pending))):
        assert resp.notify_resp(_reply(incr, i))
    assert [(await w).data["echo"] for _, w in pending] == list(range(50))
    assert len(resp) == 0
    assert not resp.notify_resp(_reply(pending[0][0], "late")), "a reply matched twice"


async def test_a_lost_connection_fails_every_waiter() -> None:
    resp = WsRespAsyn()
    waiters = [resp.get_ch()[1] for _ in range(3)]
    resp.fail_all(ConnectionLost("gone"))
    for w in waiters:
        with pytest.raises(ConnectionLost):
            await w
    assert len(resp) == 0


async def test_two_matchers_never_share_a_msg_incr() -> None:
    a, b = WsRespAsyn(), WsRespAsyn()
    assert a.get_ch()[0] != b.get_ch()[0]


def test_backoff_grows_is_capped_and_jittered() -> None:
    b = Backoff(0.1, 2.0)
    delays = [b.next_delay() for _ in range(12)]
    assert all(0.05 <= d <= 2.0 for d in delays)
    assert max(delays[:2]) <= 0.2
    assert len(set(delays)) > 1
    b.reset()
    assert b.next_delay() <= 0.1


def test_config_derives_the_gateway_address() -> None:
    assert Config(platform_id=1, api_addr="http://h:10002").ws_addr == "ws://h:10002/ws"
    assert Config(platform_id=1, api_addr="https://h/im/").ws_addr == "wss://h/im/ws"
    assert Config(platform_id=1, api_addr="http://h", ws_addr="ws://g:1").ws_addr == \
        "ws://g:1/ws"
    openim = Config.from_openim({"platform": 7, "api_addr": "http://h:1", "log_level": 6,
                                 "ws_addr": "ws://h:2", "data_dir": "./"})
    assert (openim.platform_id, openim.ws_addr, openim.log_level) == (7, "ws://h:2/ws", 10)
    with pytest.raises(ValueError):
        Config(platform_id=1, api_addr="ftp://h")


class _DyingConn:
    """A connection whose send fails as its reader gives up (the reader's fail_all comes
    first): the interleaving of a socket closing under a request, made certain."""

    def __init__(self, resp: WsRespAsyn) -> None:
        self._resp = resp

    async def send(self, text: str) -> None:
        self._resp.fail_all(ConnectionLost("keepalive ping timeout"))
        raise ConnectionLost("send on a closing socket")


async def test_a_request_failing_on_both_sides_leaves_no_unretrieved_exception() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        resp = WsRespAsyn()
        ws = Ws(_DyingConn(resp), resp, asyncio.Queue())  # type: ignore[arg-type]
        ws.reading = True
        with pytest.raises(ConnectionLost, match="closing socket"):
            await ws.send_req_wait_resp(1001, {})
        gc.collect()  # the waiter is garbage now: an unseen exception would be reported
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert not reported, reported


async def test_an_http_call_without_an_answer_is_a_request_timeout() -> None:
    """A server that accepts and never answers: RequestTimeout (a TimeoutError), as a
    request on the socket, not ConnectionLost."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    api = HttpApi(f"http://127.0.0.1:{port}", "alice", "token", timeout=0.3)
    try:
        with pytest.raises(RequestTimeout) as info:
            await api.call("/user/get_users_info", {"userIDs": ["alice"]})
        assert isinstance(info.value, TimeoutError)
    finally:
        await api.aclose()
        server.close()
