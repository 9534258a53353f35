"""The header lines of a webhook request (hub/webhooks/request.py)."""

from __future__ import annotations

import time
from email.parser import BytesHeaderParser

import orjson
from standardwebhooks.webhooks import Webhook

from hub.webhooks.request import USER_AGENT, header_value, signed_headers
from hub.webhooks.signing import generate_secret

BODY = b'{"callbackCommand":"callbackAfterSendSingleMsgCommand","seq":1}'


def _parse(block: bytes) -> dict[str, str]:
    assert block.endswith(b"\r\n")
    lines = block.split(b"\r\n")[:-1]
    assert all(b": " in line for line in lines)
    return dict(BytesHeaderParser().parsebytes(block + b"\r\n").items())


def test_signed_headers_carry_the_contract_headers_and_verify() -> None:
    old, new = generate_secret(), generate_secret()
    stamp = int(time.time())
    headers = _parse(signed_headers([new, old], "msg_1", stamp, BODY, "op-42"))
    signature = headers.pop("webhook-signature")
    assert headers == {
        "Content-Type": "application/json", "User-Agent": USER_AGENT, "operationID": "op-42",
        "webhook-id": "msg_1", "webhook-timestamp": str(stamp)}
    assert len(signature.split()) == 2  # one per live secret
    for secret in (old, new):  # each verifies on its own, with the reference library
        assert Webhook(secret).verify(BODY, {**headers, "webhook-signature": signature}) == \
            orjson.loads(BODY)


def test_header_value_escapes_what_a_header_cannot_hold() -> None:
    assert header_value("op-1 (retry) 100%") == "op-1 (retry) 100%"
    assert header_value("a\r\nInjected: 1") == "a%0D%0AInjected: 1"
    assert header_value("tab\there") == "tab%09here"
    assert header_value("опер") == "%D0%BE%D0%BF%D0%B5%D1%80"
    assert header_value("café") == "caf%C3%A9"  # Latin-1 too: one encoding for all
    block = signed_headers([generate_secret()], "msg_2", 1, BODY, "x\ny")
    assert block.count(b"\r\n") == 6 and b"\n" not in block.replace(b"\r\n", b"")
    assert _parse(block)["operationID"] == "x%0Ay"
