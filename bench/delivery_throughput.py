"""After-event delivery throughput, durable and signed, next to a raw POST client.

The outbox is filled with N committed afterSendSingleMsg events (one tenant, one
endpoint), then a delivery engine is started and timed until every delivery is recorded
as delivered in the database: dispatch (outbox -> delivery rows), Standard Webhooks
signing, the POST, and the attempt/delivery/counter writes all count. The receiver is a
bare uvicorn app in another process (bench/_baseline.py); the baseline is the raw asyncio
keep-alive client's POST rate to the same receiver, measured in the same run.

    .venv/bin/python bench/delivery_throughput.py [--events 20000] [--database sqlite]
                                                  [--plain-asyncio]

The figure printed last is the ratio (goal: >= 0.5).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import orjson
from sqlalchemy import func, insert, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _baseline import raw_post_rate_async, run_uvicorn_receiver

from hub.clock import new_id, now_ms
from hub.db.delivery import DELIVERED, WebhookDelivery
from hub.db.engine import create_engine, migrate
from hub.db.models import Event
from hub.runtime import run_node
from hub.settings import DeliverySettings
from hub.tenants import create_tenant
from hub.webhooks.delivery import DeliveryEngine
from hub.webhooks.endpoints import new_endpoint

PG_URL = os.environ.get("IMHUB_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def _event_rows(tenant_id: str, n: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for i in range(n):
        event_id = new_id("evt")
        body = {
            "callbackCommand": "callbackAfterSendSingleMsgCommand", "eventID": event_id,
            "tenantID": tenant_id, "operationID": f"op{i}", "occurredAt": now_ms(),
            "sendID": f"u{i % 100}", "recvID": f"u{(i + 1) % 100}", "groupID": "",
            "serverMsgID": new_id("srv"), "clientMsgID": new_id("cli"), "sessionType": 1,
            "contentType": 101, "content": orjson.dumps({"content": f"hello {i}"}).decode(),
            "seq": i // 100 + 1, "sendTime": now_ms(), "senderPlatformID": 1,
            "senderNickname": "Alice", "atUserIDList": [], "ex": "",
            "conversationID": f"si_u{i % 100}_u{(i + 1) % 100}",
        }
        rows.append({
            "event_id": event_id, "tenant_id": tenant_id,
            "callback_command": "callbackAfterSendSingleMsgCommand",
            "key": body["conversationID"], "operation_id": f"op{i}",
            "occurred_at": body["occurredAt"], "payload": orjson.dumps(body).decode(),
            "dispatched": 0})
    return rows


async def _delivered(engine: object, total: int) -> int:
    async with engine.connect() as conn:  # type: ignore[attr-defined]
        return int((await conn.execute(
            select(func.count()).select_from(WebhookDelivery.__table__)
            .where(WebhookDelivery.__table__.c.status == DELIVERED))).scalar_one())


async def delivery_rate(port: int, events: int, database: str, concurrency: int) -> float:
    """Deliveries recorded per second, from engine start to the last one committed."""
    schema: str | None = None
    with tempfile.TemporaryDirectory() as tmp:
        if database == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        else:
            url, schema = PG_URL, "bench_" + secrets.token_hex(4)
            admin = create_engine(url)
            async with admin.begin() as conn:
                await conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            await admin.dispose()
        engine = create_engine(url, schema=schema)
        try:
            await migrate(engine)
            async with engine.begin() as conn:
                from sqlalchemy.ext.asyncio import AsyncSession

                async with AsyncSession(bind=conn) as s:
                    tenant = await create_tenant(s, "bench")
                    s.add(new_endpoint(tenant.tenant_id, f"http://127.0.0.1:{port}/hooks",
                                       max_concurrency=concurrency))
                    await s.flush()
                rows = _event_rows(tenant.tenant_id, events)
                for i in range(0, len(rows), 5_000):
                    await conn.execute(insert(Event.__table__), rows[i:i + 5_000])
            settings = DeliverySettings.model_validate({"pollSeconds": 0.05})
            worker = DeliveryEngine(engine, settings, allow_networks=["127.0.0.0/8"])
            start = time.perf_counter()
            await worker.start()
            try:
                # The engine counts what it has recorded; the database has the last word.
                while worker.recorded < events:  # noqa: ASYNC110 (a 10 ms poll is free)
                    await asyncio.sleep(0.01)
                elapsed = time.perf_counter() - start
                done = await _delivered(engine, events)
            finally:
                await worker.close()
            if done != events:
                raise SystemExit(f"only {done} of {events} deliveries are delivered")
            return events / elapsed
        finally:
            await engine.dispose()
            if schema is not None:
                admin = create_engine(url)
                async with admin.begin() as conn:
                    await conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
                await admin.dispose()


async def _raw(port: int, connections: tuple[int, ...], seconds: float) -> dict[int, float]:
    return {c: await raw_post_rate_async("127.0.0.1", port, concurrency=c, seconds=seconds,
                                         path="/hooks") for c in connections}


async def _main(args: argparse.Namespace) -> None:
    connections = tuple(sorted({16, args.concurrency}))
    with run_uvicorn_receiver() as port:
        before = await _raw(port, connections, args.seconds)
        rate = await delivery_rate(port, args.events, args.database, args.concurrency)
        after = await _raw(port, connections, args.seconds)
    # The receiver's rate drifts on a shared machine, so the raw client runs before and
    # after; the ratio is to their mean with _baseline's 16 connections, and, to be
    # safe, to the best raw figure seen.
    mean = (before[16] + after[16]) / 2
    best = max(*before.values(), *after.values())
    for c in connections:
        print(f"raw asyncio POST client, {c} connections: "
              f"{before[c]:,.0f}/s before, {after[c]:,.0f}/s after")
    print(f"imhub delivery ({args.database}, {args.events:,} events, durable + signed, "
          f"endpoint maxConcurrency {args.concurrency}): {rate:,.0f}/s")
    print(f"ratio: {rate / mean:.2f} of the raw rate ({mean:,.0f}/s), "
          f"{rate / best:.2f} of the best raw figure ({best:,.0f}/s); goal >= 0.50")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--concurrency", type=int, default=64,
                        help="the endpoint's maxConcurrency (64 is the engine's default "
                             "endpointConcurrency); the raw client runs with 16 and this")
    parser.add_argument("--seconds", type=float, default=3.0, help="raw client run time")
    parser.add_argument("--plain-asyncio", action="store_true",
                        help="asyncio's own loop and GC settings, instead of those of "
                             "`imhub worker` (hub/runtime.py), for engine and raw client alike")
    args = parser.parse_args()
    if args.plain_asyncio:
        asyncio.run(_main(args))
    else:
        run_node(_main(args))


if __name__ == "__main__":
    main()
