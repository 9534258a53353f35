"""The parts that need no server: reply matching, backoff, config."""

from __future__ import annotations

import pytest

from hub.sdk import Config, ConnectionLost, WsRespAsyn
from hub.sdk.backoff import Backoff
from hub.sdk.protocol import Frame, decode_frame, encode_request


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
