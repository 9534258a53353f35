"""What a send checks, kept in memory between the writes that could change it.

Every send reads its sender's nickname and, for a single chat, whether the recipient
exists, has blocked the sender, or is a friend; for a group chat, the group's status
and its members with their roles and mutes. On SQLite those reads cost more than the
rest of the send: each commit resets the read connection's page cache, so the lookups
under the next commit read their pages again. They change rarely next to messages.

An entry is valid until the next committed write that may change what sends check:
the committer calls `changed()` after every such commit, and that clears everything.
Coarse on purpose: relation and group changes are rare next to messages, and a missed
invalidation would let a blocked user through. Writes that change nothing a send checks
(sends, offline pushes, delivery bookkeeping) say so (`Hub.write(changes_checks=False)`)
and keep the entries.

A read that raced a commit must not be kept: `generation` is taken before the read and
`keep` drops the value when a commit came in between.

Only while this process is the database's only writer: on SQLite (one node). On
PostgreSQL other nodes write too, so the checks are read every time.

Apart from the cache, `resent` remembers clientMsgIDs that came again after they were
stored (hub/domain/sending.py says why), on every backend.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any


class SendChecks:
    """A cache of send-check reads, cleared by every write that may change them."""

    __slots__ = ("_enabled", "_entries", "_generation", "_limit", "_size", "resent")

    def __init__(self, *, enabled: bool, limit: int = 100_000) -> None:
        self._enabled = enabled
        self._limit = limit  # in weight: an entry's rows (a group's members), not entries
        self._entries: dict[Hashable, Any] = {}
        self._size = 0
        self._generation = 0
        self.resent = _Recent(limit)

    @property
    def generation(self) -> int:
        return self._generation

    def lookup(self, key: Hashable) -> Any:
        """The kept value for `key`, or None."""
        return self._entries.get(key)

    def keep(self, key: Hashable, generation: int, value: Any, *, weight: int = 1) -> None:
        """Keep `value`, read after `generation` was taken, unless a commit came since.
        `weight`: how many rows it holds (a group's members), counted against the limit."""
        if not self._enabled or generation != self._generation or weight > self._limit:
            return
        if self._size + weight > self._limit:
            self._clear()  # rarely reached; a clear is simpler than an LRU
        self._entries[key] = value
        self._size += weight

    def changed(self) -> None:
        """A write that may change what sends check has committed."""
        self._generation += 1
        self._clear()

    def _clear(self) -> None:
        self._entries.clear()
        self._size = 0


class _Recent:
    """A bounded set: past its limit, the oldest half is forgotten."""

    __slots__ = ("_keys", "_limit")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._keys: dict[Hashable, None] = {}

    def __contains__(self, key: Hashable) -> bool:
        return key in self._keys

    def add(self, key: Hashable) -> None:
        if len(self._keys) >= self._limit:
            for old in list(self._keys)[: self._limit // 2]:
                del self._keys[old]
        self._keys[key] = None
