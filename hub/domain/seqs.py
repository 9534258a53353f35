"""Seq allocation: one counter row per conversation, bumped in the storing transaction.
(Conversation IDs are in hub/wire_types.py, shared with the SDK.)"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..db.fast import On, Statement, dialect_name
from ..db.models import ConversationSeq


def _upsert(insert: Any) -> Statement:
    stmt = insert(ConversationSeq).values(
        tenant_id=bindparam("t"), conversation_id=bindparam("c"), max_seq=bindparam("n"),
        min_seq=0)
    return Statement(stmt.on_conflict_do_update(
        index_elements=[ConversationSeq.tenant_id, ConversationSeq.conversation_id],
        set_={"max_seq": ConversationSeq.max_seq + stmt.excluded.max_seq},
    ).returning(ConversationSeq.max_seq))


# Compiled once and run without SQLAlchemy's per-call work: this is on every message.
_ALLOCATE = {"postgresql": _upsert(pg_insert), "sqlite": _upsert(sqlite_insert)}
# The end of a whole batch (hub/tx.py Batch): the seqs it handed out past its first.
SET_MAX_SEQ = Statement(update(ConversationSeq).where(
    ConversationSeq.tenant_id == bindparam("t"),
    ConversationSeq.conversation_id == bindparam("c")).values(max_seq=bindparam("n")))


async def allocate(db: On, tenant_id: str, conversation_id: str, n: int = 1) -> int:
    """Reserve n seqs; return the first. One upsert: it takes the row lock on PostgreSQL and
    runs under the single writer on SQLite, so concurrent senders queue and never collide."""
    [(last,)] = await _ALLOCATE[dialect_name(db)].rows(
        db, {"t": tenant_id, "c": conversation_id, "n": n})
    return int(last) - n + 1
