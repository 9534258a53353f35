"""Time and ID helpers, in one place so every row and event agrees on units."""

from __future__ import annotations

import random
import time

_time_ns = time.time_ns
_getrandbits = random.getrandbits


def now_ms() -> int:
    return _time_ns() // 1_000_000


def new_id(prefix: str) -> str:
    """A time-ordered ID: prefix, 12 hex digits of unix ms, 20 random hex digits.

    The random part needs to be unique, not secret (tokens and signing secrets use
    `secrets`): Python's generator, seeded from the OS and reseeded in a forked child,
    costs no system call per ID, where `secrets` reads /dev/urandom every time. Several
    IDs are drawn per message: the two parts are one 128-bit number's hex digits, which
    costs half of formatting each part on its own."""
    return prefix + "_" + ((_time_ns() // 1_000_000 << 80) | _getrandbits(80)).to_bytes(
        16, "big").hex()
