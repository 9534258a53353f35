"""The header lines every webhook request carries, encoded once per request.

Before hooks (hub/webhooks/before.py) and after-event delivery (hub/webhooks/delivery.py)
send the same headers: Content-Type, User-Agent, the action's operationID and the three
Standard Webhooks headers. They are built straight into the bytes FastTransport writes,
rather than as a mapping it encodes and checks again: these requests are the hot path
of both, and only the operationID comes from outside.

A client may send any string as operationID (a WebSocket frame is JSON), but a header
value cannot hold a line break or text beyond Latin-1, and one that could not be sent
would fail the request every time it is retried. So the header carries it with every
byte outside printable ASCII percent-encoded (as UTF-8); the JSON body carries it as sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from .signing import signature_header

__all__ = ["USER_AGENT", "header_value", "signed_headers"]

# One receiver sees one client, whichever part of imhub calls it.
USER_AGENT = "imhub-webhooks/1"

_FIXED = b"Content-Type: application/json\r\nUser-Agent: " + USER_AGENT.encode() + b"\r\n"
# Printable ASCII stays as it is ("%" too: the value is a label, not a URL).
_SAFE = "".join(chr(c) for c in range(0x20, 0x7F))


def header_value(text: str) -> str:
    """`text` fit for a header value: bytes outside printable ASCII percent-encoded."""
    if text.isascii() and text.isprintable():
        return text
    return quote(text, safe=_SAFE)


def signed_headers(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes,
                   operation_id: str) -> bytes:
    """The header lines of one webhook request, each ending in CRLF, for
    `FastTransport.request(headers=...)`. `msg_id` is the webhook-id (made by imhub)."""
    return b"%soperationID: %s\r\nwebhook-id: %s\r\nwebhook-timestamp: %d\r\n" \
           b"webhook-signature: %s\r\n" % (
               _FIXED, header_value(operation_id).encode("ascii"), msg_id.encode("ascii"),
               timestamp, signature_header(secrets, msg_id, timestamp, body).encode("ascii"))
