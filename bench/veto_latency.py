"""What a beforeSendSingleMsg webhook adds to a send, next to a bare POST to the same
receiver, in the same run.

    .venv/bin/python bench/veto_latency.py [--requests 2000] [--db URL]

imhub (`imhub serve`, SQLite) and the receiver (uvicorn, answering every POST with an
allow verdict) each run in their own process. The database sits in /dev/shm by default:
on a disk, SQLite's fsync per commit (tens of ms on a busy box) would drown the webhook's
cost in noise; `--db URL` takes another. One client sends one request at a time,
so the figures are latencies, not throughput. Three kinds of request alternate in
rounds of one each, so that all three see the same moment of the machine; the two sends
swap places every other round, since a send leaves work behind it (bob is offline: an
afterOfflinePush write) that the request right after it meets:

- bare:    a POST straight to the receiver (the round trip the webhook cannot avoid);
- no hook: /msg/send_msg for a tenant without webhooks;
- hook:    /msg/send_msg for a tenant with beforeSendSingleMsg on (imhub calls the
           receiver, which allows).

The webhook's cost is hook minus no hook; the goal is that its p50 stays within 1.5x the
bare round trip's p50.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _baseline import _raw_connection, run_uvicorn_receiver
from _server import Imhub, JsonClient, run_imhub

_ALLOW = b'{"actionCode":0,"errCode":0,"errMsg":"","nextCode":0}'


async def _allow(request: Request) -> Response:
    await request.body()
    return Response(_ALLOW, media_type="application/json")


receiver_app = Starlette(routes=[Route("/{path:path}", _allow, methods=["POST"])])
"""The receiver, served by uvicorn in its own process: allows every before hook."""


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _second_tenant(hub: Imhub, db: str | None) -> str:
    """Another tenant on the running server's database (the CLI works while it runs)."""
    env = dict(os.environ)
    env["IMHUB_DATABASE_URL"] = db or f"sqlite+aiosqlite:///{hub.data_dir}/imhub.db"
    made = subprocess.run([str(Path(sys.executable).parent / "imhub"), "tenant", "create",
                           "bench-no-hook", "--json", "--config", str(hub.data_dir / "hub.yml")],
                          env=env, capture_output=True, text=True, check=True)
    token: str = json.loads(made.stdout)["adminToken"]
    return token


async def _hook_seconds(hub: Imhub) -> tuple[float, int]:
    """Sum and count of the webhook handler's time on beforeSendSingleMsg (from /metrics)."""
    reader, writer = await asyncio.open_connection(hub.host, hub.port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    text = (await reader.read()).decode()
    writer.close()
    found = {}
    for line in text.splitlines():
        if line.startswith("imhub_hook_seconds_") and 'handler="webhook"' in line \
                and 'hook="beforeSendSingleMsg"' in line and 'outcome="allow"' in line:
            name = line.split("{", 1)[0].rsplit("_", 1)[1]
            found[name] = float(line.rsplit(" ", 1)[1])
    return found.get("sum", 0.0), int(found.get("count", 0))


async def _run(requests: int, db: str | None) -> tuple[dict[str, list[float]], float]:
    with run_uvicorn_receiver("veto_latency:receiver_app") as rport, run_imhub({
        "webhooks": {"allowNetworks": ["127.0.0.0/8"], "delivery": {"enabled": False}},
    }, database_url=db) as hub:
        hooked_admin, plain_admin = hub.admin_token, _second_tenant(hub, db)
        client = await JsonClient.connect(hub.host, hub.port)
        users = {"users": [{"userID": "alice", "nickname": "Alice"},
                           {"userID": "bob", "nickname": "Bob"}]}
        for admin in (hooked_admin, plain_admin):
            await client.post("/user/user_register", users, admin)
        await client.post("/webhook/set_config", {"config": {
            "url": f"http://127.0.0.1:{rport}/openim",
            "beforeSendSingleMsg": {"enable": True, "timeout": 5}}}, hooked_admin)
        body = {"sendID": "alice", "recvID": "bob", "sessionType": 1, "contentType": 101,
                "content": '{"content": "hello"}'}
        bare = await _raw_connection("127.0.0.1", rport, "/openim/bare")
        kinds: dict[str, Callable[[], Awaitable[object]]] = {
            "bare": bare,
            "no hook": lambda: client.post("/msg/send_msg", body, plain_admin),
            "hook": lambda: client.post("/msg/send_msg", body, hooked_admin),
        }
        samples: dict[str, list[float]] = {k: [] for k in kinds}
        order = list(kinds.items())
        swapped = [order[0], order[2], order[1]]
        for i in range(requests + 200):  # the first 200 rounds warm up, uncounted
            # One of each per round, so that all three see the same moment of the machine.
            for kind, call in (swapped if i % 2 else order):
                start = time.perf_counter()
                await call()
                if i >= 200:
                    samples[kind].append(time.perf_counter() - start)
        client.close()
        total, count = await _hook_seconds(hub)
        return samples, total / count if count else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per kind")
    parser.add_argument("--db", default=None,
                        help="database URL (default: SQLite in /dev/shm when there is one)")
    args = parser.parse_args()
    db = args.db
    if db is None and Path("/dev/shm").is_dir():
        tmp = tempfile.mkdtemp(prefix="imhub-veto-", dir="/dev/shm")
        db = f"sqlite+aiosqlite:///{tmp}/imhub.db"
    try:
        samples, handler_mean = asyncio.run(_run(args.requests, db))
    finally:
        if args.db is None and db is not None:
            shutil.rmtree(Path(db.split(":///", 1)[1]).parent, ignore_errors=True)
    print(f"{'':10} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}   (n={len(samples['hook'])})")
    for kind, xs in samples.items():
        print(f"{kind:10} {_pct(xs, 0.5):8.3f} {_pct(xs, 0.99):8.3f} "
              f"{statistics.fmean(xs) * 1000:8.3f}")
    added_p50 = _pct(samples["hook"], 0.5) - _pct(samples["no hook"], 0.5)
    added_p99 = _pct(samples["hook"], 0.99) - _pct(samples["no hook"], 0.99)
    bare_p50 = _pct(samples["bare"], 0.5)
    print(f"webhook adds: p50 {added_p50:.3f} ms, p99 {added_p99:.3f} ms; "
          f"p50 added / bare p50 = {added_p50 / bare_p50:.2f} (goal <= 1.5)")
    print(f"webhook handler, mean time inside imhub's bus (its /metrics): "
          f"{handler_mean * 1000:.3f} ms = {handler_mean * 1000 / bare_p50:.2f} x bare p50")


if __name__ == "__main__":
    main()
