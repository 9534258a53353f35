"""What imhub takes from clients as JSON: an object whose strings hold no NUL character.

PostgreSQL's text cannot hold U+0000, so a string with one failed the write (or the query)
there as an internal error, while SQLite stored it. One rule for both backends: a bad
argument, named by its path, wherever strings come from outside (HTTP bodies, WebSocket
frames, the changes a before hook makes).

JSON can only carry U+0000 escaped (a raw control character is malformed), so a document
without the text `u0000` has none, and the walk runs only for the rare one that has it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NUL_REFUSED", "nul_path"]

# What a refusal says after the string's path.
NUL_REFUSED = "a string must not contain NUL (\\u0000)"


def nul_path(obj: Any, raw: bytes | str | None = None) -> str | None:
    """The path of the first string (or key) in `obj` holding U+0000, or None. With
    `raw`, the JSON text `obj` was parsed from, a document that cannot hold one is
    answered without the walk."""
    if isinstance(raw, str) and "u0000" not in raw:
        return None
    if isinstance(raw, bytes) and b"u0000" not in raw:
        return None
    return _walk(obj, "")


def _walk(obj: Any, path: str) -> str | None:
    if isinstance(obj, str):
        return (path or "value") if "\x00" in obj else None
    if isinstance(obj, dict):
        for key, value in obj.items():
            here = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and "\x00" in key:
                return here
            found = _walk(value, here)
            if found is not None:
                return found
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found = _walk(value, f"{path}.{i}" if path else str(i))
            if found is not None:
                return found
    return None
