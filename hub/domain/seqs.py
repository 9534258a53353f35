"""Seq allocation: one counter row per conversation, bumped in the storing transaction."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.models import ConversationSeq


def single_conversation_id(a: str, b: str) -> str:
    return f"si_{a}_{b}" if a < b else f"si_{b}_{a}"


def group_conversation_id(group_id: str) -> str:
    return f"sg_{group_id}"


def notification_conversation_id(user_id: str) -> str:
    return f"n_{user_id}"


async def allocate(session: AsyncSession, tenant_id: str, conversation_id: str, n: int = 1
                   ) -> int:
    """Reserve n seqs; return the first. One upsert: it takes the row lock on PostgreSQL and
    runs under the single writer on SQLite, so concurrent senders queue and never collide."""
    insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(ConversationSeq).values(
        tenant_id=tenant_id, conversation_id=conversation_id, max_seq=n, min_seq=0)
    stmt = stmt.on_conflict_do_update(
        index_elements=[ConversationSeq.tenant_id, ConversationSeq.conversation_id],
        set_={"max_seq": ConversationSeq.max_seq + n},
    ).returning(ConversationSeq.max_seq)
    last = (await session.execute(stmt)).scalar_one()
    return int(last) - n + 1
