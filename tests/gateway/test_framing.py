"""Client frames read by hub/gateway/framing.py, not websockets: split anywhere, packed
together, interleaved with pings; and whatever it does not read (fragments, bad frames)
still reaches websockets whole."""

from __future__ import annotations

import asyncio
import os

import orjson
import pytest
from websockets.frames import Frame, Opcode

from hub.gateway import framing
from hub.gateway.connection import Connection
from tests.conftest import TenantHandle
from tests.gateway._client import Client


def _client_frame(opcode: Opcode, data: bytes, *, fin: bool = True, mask: bool = True
                  ) -> bytes:
    return Frame(opcode, data, fin).serialize(mask=mask, extensions=[])


def _request(incr: str, req: int = 1001, data: dict[str, object] | None = None) -> bytes:
    return orjson.dumps({"reqIdentifier": req, "msgIncr": incr, "data": data or {}})


# --- next_frame and text_header, on bytes ----------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70_000])
def test_a_masked_text_frame_of_any_length_is_read_whole(size: int) -> None:
    payload = os.urandom(size)
    raw = _client_frame(Opcode.TEXT, payload)
    for cut in range(min(len(raw), 16)):  # every split inside the header, mask included
        assert framing.next_frame(raw[:cut], 0, None) == (framing.INCOMPLETE, 0, b"")
    assert framing.next_frame(raw[:-1], 0, None)[0] == framing.INCOMPLETE
    for buf in (b"xx" + raw + b"rest", bytearray(b"xx" + raw + b"rest")):
        kind, end, got = framing.next_frame(buf, 2, None)
        assert (kind, end, got) == (framing.TEXT, 2 + len(raw), payload)
        assert type(got) is bytes


@pytest.mark.parametrize("size", [0, 100, 126, 65536])
def test_server_text_header_is_what_websockets_would_write(size: int) -> None:
    payload = b"y" * size
    expected = Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])
    assert framing.text_header(size) + payload == expected


@pytest.mark.parametrize("opcode", [Opcode.BINARY, Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_whole_binary_and_control_frames_are_handed_over_as_they_are(opcode: Opcode) -> None:
    data = b"\x03\xe8bye" if opcode is Opcode.CLOSE else b"ping!"
    raw = _client_frame(opcode, data)
    assert framing.next_frame(raw + b"more", 0, None) == (raw[0], len(raw), b"")


@pytest.mark.parametrize("raw", [
    _client_frame(Opcode.TEXT, b"hello", mask=False),  # a client must mask
    _client_frame(Opcode.TEXT, b"part", fin=False),  # a fragment
    _client_frame(Opcode.CONT, b"rest"),  # a continuation
    _client_frame(Opcode.TEXT, b"x" * 101),  # over max_size (100 below)
    bytes([0xC1, 0x80]) + b"\x00" * 4,  # an RSV bit (no extension was negotiated)
    bytes([0x83, 0x80]) + b"\x00" * 4,  # a reserved opcode
    bytes([0x89, 0xFE, 0x00, 0x80]) + b"\x00" * 132,  # a ping over 125 bytes
], ids=["unmasked", "fragment", "continuation", "too-big", "rsv", "opcode", "long-ping"])
def test_anything_else_is_left_to_websockets(raw: bytes) -> None:
    assert framing.next_frame(raw, 0, 100) == (framing.OTHER, 0, b"")


def test_a_declared_length_over_the_limit_is_refused_before_it_arrives() -> None:
    header = bytes([0x81, 0xFF]) + (1 << 40).to_bytes(8, "big")
    assert framing.next_frame(header, 0, 1 << 20) == (framing.OTHER, 0, b"")


# --- against a real server -------------------------------------------------------------

async def _open(t: TenantHandle, user: str) -> tuple[Client, Connection]:
    token = await t.login(user, 1)
    c = await Client.open(t.server.ws_url, user, token, 1)
    # The first frame may come before the gateway takes frames (websockets reads it);
    # the one after it is read by framing.py.
    for _ in range(2):
        assert (await c.request(1001, {}))["errCode"] == 0
    conn = t.server.hub.presence.local.get(t.tenant_id, user, 1)
    assert conn is not None and conn.reads_frames_itself
    return c, conn


async def _write_in_pieces(c: Client, raw: bytes, sizes: list[int]) -> None:
    """Write `raw` to the socket as it is, in pieces of `sizes` (cycled), each its own
    TCP segment."""
    transport = c.ws.transport
    pos, i = 0, 0
    while pos < len(raw):
        n = sizes[i % len(sizes)]
        transport.write(raw[pos:pos + n])
        pos += n
        i += 1
        await asyncio.sleep(0.002)


async def test_frames_split_anywhere_or_packed_together_are_each_answered(
        sqlite_tenant: TenantHandle) -> None:
    t = sqlite_tenant
    await t.users("alice", "bob")
    c, conn = await _open(t, "alice")
    try:
        send = {"recvID": "bob", "sessionType": 1, "contentType": 101,
                "content": orjson.dumps({"content": "z" * 300}).decode()}
        # Three requests, one with a 16-bit length, as one stream of bytes cut in pieces
        # of 1, 2, 3, 5 and 7 bytes: every header and mask is split somewhere.
        incrs = ["p1", "p2", "p3"]
        waiters = [c.expect(i) for i in incrs]
        raw = b"".join([_client_frame(Opcode.TEXT, _request("p1")),
                        _client_frame(Opcode.TEXT, _request("p2", 1003, send)),
                        _client_frame(Opcode.TEXT, _request("p3"))])
        await _write_in_pieces(c, raw, [1, 2, 3, 5, 7])
        replies = await asyncio.wait_for(asyncio.gather(*waiters), 10)
        assert [r["errCode"] for r in replies] == [0, 0, 0]
        assert replies[1]["data"]["seq"] == 1
        # Packed into one write with a ping among them: every request answered, the
        # ping too (websockets answers it, handed the ping frame whole).
        waiters = [c.expect(i) for i in ("q1", "q2")]
        pong = await c.ws.ping(b"between")
        c.ws.transport.write(_client_frame(Opcode.TEXT, _request("q1"))
                             + _client_frame(Opcode.PING, b"raw ping")
                             + _client_frame(Opcode.TEXT, _request("q2", 1003, send)))
        replies = await asyncio.wait_for(asyncio.gather(*waiters), 10)
        await asyncio.wait_for(pong, 10)
        assert [r["errCode"] for r in replies] == [0, 0]
        assert replies[1]["data"]["seq"] == 2
        assert conn.reads_frames_itself  # a ping does not end it
        # A frame with a 64-bit length trickling in, 4,093 bytes at a time.
        big = {**send, "content": orjson.dumps({"content": "w" * 70_000}).decode()}
        waiter = c.expect("big")
        await _write_in_pieces(c, _client_frame(Opcode.TEXT, _request("big", 1003, big)),
                               [4093])
        reply = await asyncio.wait_for(waiter, 10)
        assert reply["errCode"] == 0 and reply["data"]["seq"] == 3
        assert conn.reads_frames_itself
    finally:
        await c.close()


async def test_a_fragmented_message_goes_to_websockets_and_is_answered(
        sqlite_tenant: TenantHandle) -> None:
    t = sqlite_tenant
    await t.users("alice")
    c, conn = await _open(t, "alice")
    try:
        whole = _request("frag")
        waiter = c.expect("frag")
        c.ws.transport.write(_client_frame(Opcode.TEXT, whole[:10], fin=False)
                             + _client_frame(Opcode.CONT, whole[10:]))
        assert (await asyncio.wait_for(waiter, 10))["errCode"] == 0
        assert not conn.reads_frames_itself  # websockets reads this connection from now on
        assert (await c.request(1001, {}))["errCode"] == 0
    finally:
        await c.close()


@pytest.mark.parametrize(("raw", "code"), [
    (_client_frame(Opcode.TEXT, b'{"reqIdentifier": 1001, "msgIncr": "\xff"}'), 1007),
    (_client_frame(Opcode.TEXT, _request("x"), mask=False), 1002),
], ids=["invalid-utf8", "unmasked"])
async def test_a_bad_frame_closes_its_connection_with_the_reason(
        raw: bytes, code: int, sqlite_tenant: TenantHandle) -> None:
    t = sqlite_tenant
    await t.users("alice", "bob")
    c, _ = await _open(t, "alice")
    other, _ = await _open(t, "bob")
    try:
        c.ws.transport.write(raw)
        got, _ = await c.wait_closed()
        assert got == code
        assert (await other.request(1001, {}))["errCode"] == 0
    finally:
        await c.close()
        await other.close()
