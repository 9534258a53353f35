"""Migrations on a real database of each kind: a database made by an older revision comes
up to the heads with what it held."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Connection, text

from hub.db.engine import alembic_config, create_engine, migrate
from hub.webhooks.dispatch import undispatched_tenants
from tests.conftest import Database


def _upgrade_to(sync_conn: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, revision)


def _event(pos: int, tenant: str, dispatched: int) -> dict[str, object]:
    return {"pos": pos, "event_id": f"evt_{pos}", "tenant_id": tenant,
            "callback_command": "afterSendSingleMsg", "key": "k", "operation_id": "op",
            "occurred_at": 1, "payload": "{}", "dispatched": dispatched}


async def test_the_outbox_index_holds_only_events_still_to_dispatch(database: Database) -> None:
    engine = create_engine(database.url, schema=database.schema)
    try:
        # The schema as revision 0002 left it (its (dispatched, pos) index), with events.
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade_to, "0002")
            await conn.execute(text(
                "INSERT INTO events (pos, event_id, tenant_id, callback_command, key, "
                "operation_id, occurred_at, payload, dispatched) VALUES (:pos, :event_id, "
                ":tenant_id, :callback_command, :key, :operation_id, :occurred_at, :payload, "
                ":dispatched)"), [_event(1, "t_done", 1), _event(2, "t_todo", 0)])
        await migrate(engine)
        async with engine.connect() as conn:
            if database.kind == "sqlite":
                indexes = {r[0]: r[1] or "" for r in await conn.execute(text(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                    "AND tbl_name = 'events'"))}
                plan = " ".join(str(r[-1]) for r in await conn.execute(text(
                    "EXPLAIN QUERY PLAN SELECT pos FROM events WHERE dispatched = 0 "
                    "ORDER BY pos LIMIT 10")))
                assert "ix_events_undispatched" in plan
            else:
                indexes = {r[0]: r[1] for r in await conn.execute(text(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'events' "
                    "AND schemaname = current_schema()"))}
            assert "ix_events_dispatched" not in indexes
            partial = indexes["ix_events_undispatched"].replace("(", "").replace(")", "")
            assert "WHERE dispatched = 0" in partial
            # The dispatcher's question is answered as before, from the event kept.
            assert await undispatched_tenants(conn, 10) == {"t_todo"}
    finally:
        await engine.dispose()
