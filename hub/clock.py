"""Time and ID helpers, in one place so every row and event agrees on units."""

from __future__ import annotations

import secrets
import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_id(prefix: str) -> str:
    """A time-ordered ID: prefix, 12 hex digits of unix ms, 20 random hex digits."""
    return f"{prefix}_{now_ms():012x}{secrets.token_hex(10)}"
