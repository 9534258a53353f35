"""The local store: one SQLite file per user, holding messages and each conversation's
synced seq (everything up to it is here). Messages and the seq are written in one
transaction, so a crash never leaves the seq ahead of the messages."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from .models import Message

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    client_msg_id TEXT NOT NULL,
    send_id TEXT NOT NULL,
    session_type INTEGER NOT NULL,
    content_type INTEGER NOT NULL,
    send_time INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
CREATE TABLE IF NOT EXISTS conversations (
    conversation_id TEXT PRIMARY KEY,
    synced_seq INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class LocalConversation:
    conversation_id: str
    synced_seq: int
    latest: Message | None


def store_path(data_dir: str | Path, user_id: str, platform_id: int) -> Path:
    """The file of one user on one platform (a device: each keeps its own store, so two
    devices sharing a data_dir each get every message). Unsafe characters are
    %-escaped, so distinct IDs never share a file."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", lambda m: "%" + m.group().encode().hex().upper(),
                  user_id)
    return Path(data_dir) / f"imhub-{safe}-p{platform_id}.sqlite3"


class LocalStore:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: str | Path) -> LocalStore:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(str(path))
        await db.execute("PRAGMA journal_mode=WAL")
        await db.executescript(_SCHEMA)
        await db.commit()
        return cls(db)

    async def close(self) -> None:
        await self._db.close()

    async def synced_seqs(self) -> dict[str, int]:
        async with self._db.execute(
                "SELECT conversation_id, synced_seq FROM conversations") as cur:
            return {str(c): int(s) for c, s in await cur.fetchall()}

    async def save(self, conversation_id: str, msgs: list[Message], synced_seq: int
                   ) -> list[Message]:
        """Store `msgs` and raise the conversation's synced seq; returns the messages that
        were not stored before, in seq order."""
        new: list[Message] = []
        try:
            for m in sorted(msgs, key=lambda m: m.seq):
                cur = await self._db.execute(
                    "INSERT OR IGNORE INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (conversation_id, m.seq, m.client_msg_id, m.send_id, m.session_type,
                     m.content_type, m.send_time, json.dumps(m.to_wire(), ensure_ascii=False)))
                if cur.rowcount:
                    new.append(m)
            await self._db.execute(
                "INSERT INTO conversations VALUES (?, ?) ON CONFLICT (conversation_id) "
                "DO UPDATE SET synced_seq = max(synced_seq, excluded.synced_seq)",
                (conversation_id, synced_seq))
            await self._db.commit()
        except BaseException:
            await self._db.rollback()
            raise
        return new

    async def messages(self, conversation_id: str, *, after_seq: int = 0,
                       limit: int = 1000) -> list[Message]:
        """Messages of a conversation after `after_seq`, in seq order."""
        async with self._db.execute(
                "SELECT body FROM messages WHERE conversation_id = ? AND seq > ? "
                "ORDER BY seq LIMIT ?", (conversation_id, after_seq, limit)) as cur:
            return [Message.from_wire(json.loads(b)) for (b,) in await cur.fetchall()]

    async def latest(self, conversation_id: str, limit: int = 20) -> list[Message]:
        """The last `limit` messages of a conversation, in seq order."""
        async with self._db.execute(
                "SELECT body FROM messages WHERE conversation_id = ? "
                "ORDER BY seq DESC LIMIT ?", (conversation_id, limit)) as cur:
            rows = await cur.fetchall()
        return [Message.from_wire(json.loads(b)) for (b,) in reversed(list(rows))]

    async def conversations(self) -> list[LocalConversation]:
        """Every conversation, the most recently active first."""
        async with self._db.execute(
                "SELECT c.conversation_id, c.synced_seq, m.body FROM conversations c "
                "LEFT JOIN messages m ON m.conversation_id = c.conversation_id AND m.seq = "
                "(SELECT max(seq) FROM messages WHERE conversation_id = c.conversation_id) "
                "ORDER BY coalesce(m.send_time, 0) DESC, c.conversation_id") as cur:
            rows = await cur.fetchall()
        return [LocalConversation(str(c), int(s),
                                  Message.from_wire(json.loads(b)) if b else None)
                for c, s, b in rows]
