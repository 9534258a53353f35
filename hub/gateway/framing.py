"""WebSocket framing for the gateway's common case, without websockets' Frame objects.

websockets parses every client frame through a generator coroutine and a Frame object,
and serializes every server frame through another (with its extension chain): for a
chat message, a tenth of the server's work. Most frames are the simplest kind there is:
a client's final, masked text frame, and the server's final, unmasked text frame, with
no extension negotiated. Those are read and written here; every other frame (control
frames, binary, fragments, anything malformed or too big) is left to websockets, which
the gateway's protocol (hub/gateway/protocol.py) hands it to whole, at a frame boundary.
"""

from __future__ import annotations

import struct

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets built without its C extension
    from websockets.utils import apply_mask

__all__ = ["INCOMPLETE", "OTHER", "TEXT", "next_frame", "text_header"]

_FIN = 0x80
TEXT = _FIN | 0x1  # the first byte of a final text frame without RSV bits
# Final binary, close, ping and pong frames: websockets handles them, one by one.
_HANDED_OVER = frozenset({_FIN | 0x2, _FIN | 0x8, _FIN | 0x9, _FIN | 0xA})
_CLOSE = _FIN | 0x8  # this and above: control frames, of at most 125 bytes
_MASKED = 0x80

_pack_16 = struct.Struct("!BBH").pack
_pack_64 = struct.Struct("!BBQ").pack
_unpack_16 = struct.Struct("!H").unpack_from
_unpack_64 = struct.Struct("!Q").unpack_from


def text_header(n: int) -> bytes:
    """The header of a server's final, unmasked text frame of `n` payload bytes
    (RFC 6455 5.2)."""
    if n < 126:
        return bytes((TEXT, n))
    if n < 65536:
        return _pack_16(TEXT, 126, n)
    return _pack_64(TEXT, 127, n)


# What next_frame found at a position.
INCOMPLETE = 0  # the frame is not all there yet
OTHER = 1  # anything websockets must see from here on (fragments, bad or big frames)


def next_frame(buf: bytes | bytearray, pos: int, max_size: int | None
               ) -> tuple[int, int, bytes]:
    """The client frame at `buf[pos:]`: (first byte, end, payload).

    For a whole, final, masked text frame: (TEXT, its end, the unmasked payload). For a
    whole, final, masked binary or control frame within limits: (its first byte, its
    end, b""), to be handed to websockets as it is. (INCOMPLETE, pos, b"") when more
    bytes are needed; (OTHER, pos, b"") for anything else, which websockets must judge.
    """
    n = len(buf) - pos
    if n < 2:
        return INCOMPLETE, pos, b""
    first, second = buf[pos], buf[pos + 1]
    if not second & _MASKED or (first != TEXT and first not in _HANDED_OVER):
        return OTHER, pos, b""
    length = second & 0x7F
    start = pos + 2
    if length == 126:
        if n < 4:
            return INCOMPLETE, pos, b""
        (length,) = _unpack_16(buf, start)
        start += 2
    elif length == 127:
        if n < 10:
            return INCOMPLETE, pos, b""
        (length,) = _unpack_64(buf, start)
        start += 8
    if (max_size is not None and length > max_size) or (first >= _CLOSE and length > 125):
        return OTHER, pos, b""  # too big (websockets closes with 1009), or a bad control frame
    end = start + 4 + length
    if end > len(buf):
        return INCOMPLETE, pos, b""
    if first != TEXT:
        return first, end, b""
    return TEXT, end, apply_mask(buf[start + 4:end], buf[start:start + 4])
