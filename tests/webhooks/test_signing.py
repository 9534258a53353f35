"""Our Standard Webhooks signatures, checked by the independent reference library."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from hub.webhooks.signing import (
    SignatureError,
    generate_secret,
    sign,
    signature_header,
    verify,
    webhook_headers,
)

Tamper = Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]]

BODY = b'{"type":"message.created","data":{"id":"m_1","text":"h\xc3\xa9llo"}}'


def _headers(
    secrets: list[str], msg_id: str = "msg_1", timestamp: int | None = None
) -> dict[str, str]:
    stamp = int(time.time()) if timestamp is None else timestamp
    return webhook_headers(secrets, msg_id, stamp, BODY)


def test_generate_secret_format() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert 24 <= len(base64.b64decode(secret[6:], validate=True)) <= 32
    assert generate_secret() != secret


def test_known_vector() -> None:
    # The example in the Standard Webhooks specification.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected


def test_reference_library_accepts_our_signature() -> None:
    secret = generate_secret()
    headers = _headers([secret])
    assert Webhook(secret).verify(BODY, headers) is not None


def test_each_secret_of_a_rotation_header_verifies() -> None:
    old, new = generate_secret(), generate_secret()
    headers = _headers([old, new])
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(BODY, headers)
        verify(secret, headers, BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(BODY, headers)
    with pytest.raises(SignatureError):
        verify(generate_secret(), headers, BODY)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: (h, b + b" "),
        lambda h, b: ({**h, "webhook-id": "msg_2"}, b),
        lambda h, b: ({**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) + 1)}, b),
        lambda h, b: ({**h, "webhook-signature": h["webhook-signature"].replace("v1,", "v2,")}, b),
    ],
    ids=["body", "id", "timestamp", "version"],
)
def test_tampering_fails(tamper: Tamper) -> None:
    secret = generate_secret()
    headers, body = tamper(_headers([secret]), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)
    with pytest.raises(SignatureError):
        verify(secret, headers, body)


@pytest.mark.parametrize("offset", [-301, 301, -3600, 3600])
def test_stale_or_future_timestamps_fail(offset: int) -> None:
    secret = generate_secret()
    headers = _headers([secret], timestamp=int(time.time()) + offset)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, headers)
    with pytest.raises(SignatureError, match="webhook-timestamp"):
        verify(secret, headers, BODY)


def test_verify_tolerance_and_clock() -> None:
    secret = generate_secret()
    headers = _headers([secret], timestamp=1_000_000)
    verify(secret, headers, BODY, now=1_000_250)
    verify(secret, headers, BODY, tolerance=10, now=1_000_010)
    with pytest.raises(SignatureError):
        verify(secret, headers, BODY, tolerance=10, now=1_000_011)


def test_verify_rejects_missing_or_malformed_headers() -> None:
    secret = generate_secret()
    headers = _headers([secret])
    for name in headers:
        partial = {k: v for k, v in headers.items() if k != name}
        with pytest.raises(SignatureError, match=f"missing {name}"):
            verify(secret, partial, BODY)
    with pytest.raises(SignatureError, match="invalid webhook-timestamp"):
        verify(secret, {**headers, "webhook-timestamp": "soon"}, BODY)
    # Header names are case-insensitive.
    verify(secret, {k.title(): v for k, v in headers.items()}, BODY)


def test_signature_header_and_secret_errors() -> None:
    with pytest.raises(ValueError, match="at least one secret"):
        signature_header([], "msg", 1, BODY)
    with pytest.raises(ValueError, match="base64"):
        sign("whsec_not*base64", "msg", 1, BODY)
    secret = generate_secret()
    assert sign(secret, "m", 1, BODY) == sign(secret.removeprefix("whsec_"), "m", 1, BODY)
