"""Standard Webhooks v1 signatures (https://www.standardwebhooks.com/).

The signed content is ``f"{msg_id}.{timestamp}."`` followed by the raw body,
HMAC-SHA256 keyed with the base64-decoded secret, sent as
``webhook-signature: v1,<base64>``. During a secret rotation the header
carries one signature per live secret, space-separated; a receiver accepts
the message if any of them matches a secret it knows.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Mapping, Sequence
from functools import lru_cache
from secrets import token_bytes

__all__ = [
    "SECRET_PREFIX",
    "SignatureError",
    "generate_secret",
    "sign",
    "signature_header",
    "verify",
    "webhook_headers",
]

SECRET_PREFIX = "whsec_"


class SignatureError(Exception):
    """A webhook's signature headers are missing, stale or do not match."""


def generate_secret() -> str:
    """A fresh signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(token_bytes(32)).decode("ascii")


# Every delivery signs with one of a few live secrets: decode each once.
@lru_cache(maxsize=1024)
def _key(secret: str) -> bytes:
    # Like the reference libraries, take the secret with or without prefix.
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise ValueError("webhook secret is not valid base64") from None
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one message under one secret."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.digest(_key(secret), signed, "sha256")  # one-shot: OpenSSL's fast path
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per secret, space-separated."""
    if not secrets:
        raise ValueError("at least one secret is needed to sign a webhook")
    return " ".join([sign(secret, msg_id, timestamp, body) for secret in secrets])


def webhook_headers(
    secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers for one delivery."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, msg_id, timestamp, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance: int = 300,
    *,
    now: float | None = None,
) -> None:
    """Check a received webhook; raise :class:`SignatureError` if it fails.

    ``headers`` may be any mapping (names are matched case-insensitively).
    ``tolerance`` bounds the clock difference in seconds, both ways, which
    limits how long a captured request can be replayed.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = _header(lowered, "webhook-id")
    stamp = _header(lowered, "webhook-timestamp")
    signatures = _header(lowered, "webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise SignatureError(f"invalid webhook-timestamp {stamp!r}") from None
    current = time.time() if now is None else now
    if timestamp < current - tolerance:
        raise SignatureError("webhook-timestamp is too old")
    if timestamp > current + tolerance:
        raise SignatureError("webhook-timestamp is too far in the future")
    expected = sign(secret, msg_id, timestamp, body).encode()
    for candidate in signatures.split():
        # Constant-time: the time taken must not tell how much of it matched.
        if candidate.startswith("v1,") and hmac.compare_digest(candidate.encode(), expected):
            return
    raise SignatureError("no webhook-signature matches the secret")


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if not value:
        raise SignatureError(f"missing {name} header")
    return value
