"""Chat throughput over the WebSocket gateway: N senders each writing to its own receiver,
every message stored with its seq and afterSendSingleMsg event (SQLite, default
settings), next to a bare WebSocket echo server's rate measured in the same run.

    .venv/bin/python bench/chat_throughput.py [--pairs 50] [--window 4] [--seconds 5]
                                              [--paced-rate 1000] [--paced-seconds 5]
                                              [--floors] [--postgres]

- Throughput: each sender keeps `window` SendMsg (1003) frames in flight and counts
  acks; a message counts once acked (so committed). Receivers count their 2001 pushes.
- Echo baseline: the same client, the same connections and frames, against a bare
  uvicorn + Starlette WebSocket route that sends every frame back, measured before and
  after imhub (the mean of the two). The ratio is imhub's rate over the echo rate.
- Latency: sends paced at `--paced-rate` messages/s in total; p50 and p99 from send to
  ack, and from send to the receiver's push.
- Server CPU per message: the server process's user and system time (all threads, from
  /proc) over the throughput window, divided by the messages acked in it. Steadier than
  the rate on a machine whose speed moves, and what an A/B of the send path compares.

`--floors` also measures imhub with its send cut down to a relay and to a minimal group
commit (bench/_floor.py), in the same run: how far the real send is from each.

The servers run in subprocesses (`imhub serve` on a temporary SQLite file with a tenant
from `imhub tenant create --json`), so client and server do not share an event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _baseline import run_uvicorn_receiver
from _server import PG_URL, Imhub, JsonClient, cpu_seconds, pg_schema, run_imhub

_TEXT = orjson.dumps({"content": "hello there, this is a chat message"}).decode()


async def _echo(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            await ws.send_text(await ws.receive_text())
    except WebSocketDisconnect:
        pass


echo_app = Starlette(routes=[WebSocketRoute("/ws", _echo)])


def _frame(sender: str, receiver: str, client_msg_id: str) -> str:
    return orjson.dumps({"reqIdentifier": 1003, "msgIncr": client_msg_id, "operationID": "b",
                         "data": {"sendID": sender, "recvID": receiver, "sessionType": 1,
                                  "contentType": 101, "content": _TEXT,
                                  "clientMsgID": client_msg_id}}).decode()


class _Pair:
    """A sender connection and its receiver's, with the times of messages in flight."""

    def __init__(self, name: str, tx: ClientConnection, rx: ClientConnection | None,
                 receiver: str) -> None:
        self.name, self.tx, self.rx, self.receiver = name, tx, rx, receiver
        self.sent: dict[str, float] = {}  # clientMsgID -> send time, until acked
        self.unpushed: dict[str, float] = {}  # the same, until pushed
        self.acks: list[float] = []  # latencies
        self.pushes: list[float] = []
        self.acked = 0
        self.pushed = 0
        self.errors = 0
        self._slots: asyncio.Semaphore | None = None
        self._ids = itertools.count()

    def next_id(self) -> str:
        return f"{self.name}-{next(self._ids)}"

    async def read_acks(self, record: bool) -> None:
        async for raw in self.tx:
            reply = orjson.loads(raw)
            cid = reply["msgIncr"]
            if reply.get("errCode"):
                self.errors += 1
            else:
                self.acked += 1
            start = self.sent.pop(cid, None)
            if record and start is not None:
                self.acks.append(time.perf_counter() - start)
            if self._slots is not None:
                self._slots.release()

    async def read_pushes(self, record: bool) -> None:
        assert self.rx is not None
        async for raw in self.rx:
            frame = orjson.loads(raw)
            if frame.get("reqIdentifier") != 2001:
                continue
            for msgs in frame["data"]["msgs"].values():
                for m in msgs:
                    self.pushed += 1
                    start = self.unpushed.pop(m["clientMsgID"], None)
                    if record and start is not None:
                        self.pushes.append(time.perf_counter() - start)

    async def flood(self, window: int, until: float, make: Any) -> None:
        self._slots = asyncio.Semaphore(window)
        while time.perf_counter() < until:
            await self._slots.acquire()
            cid = self.next_id()
            self.sent[cid] = self.unpushed[cid] = time.perf_counter()
            await self.tx.send(make(cid))


async def _rate(pairs: list[_Pair], window: int, seconds: float, make: Any,
                warmup: float = 1.0, server_pid: int = 0) -> tuple[float, float]:
    """Acked messages a second, and the server's CPU seconds per message over the same
    window (0 without `server_pid`)."""
    readers = [asyncio.create_task(p.read_acks(False)) for p in pairs]
    readers += [asyncio.create_task(p.read_pushes(False)) for p in pairs if p.rx is not None]
    start = time.perf_counter()
    floods = [asyncio.create_task(p.flood(window, start + warmup + seconds, make(p)))
              for p in pairs]
    await asyncio.sleep(warmup)
    first = sum(p.acked for p in pairs)
    cpu = cpu_seconds(server_pid) if server_pid else 0.0
    await asyncio.sleep(seconds)
    done = sum(p.acked for p in pairs) - first
    cpu = cpu_seconds(server_pid) - cpu if server_pid else 0.0
    await asyncio.gather(*floods)
    await asyncio.sleep(0.5)  # the last acks
    for t in readers:
        t.cancel()
    errors = sum(p.errors for p in pairs)
    if errors:
        raise RuntimeError(f"{errors} sends were refused")
    return done / seconds, cpu / done if done else 0.0


async def _paced(pairs: list[_Pair], rate: float, seconds: float, make: Any
                 ) -> tuple[list[float], list[float]]:
    readers = [asyncio.create_task(p.read_acks(True)) for p in pairs]
    readers += [asyncio.create_task(p.read_pushes(True)) for p in pairs]
    interval = 1.0 / rate
    begin = time.perf_counter()
    for i in range(int(rate * seconds)):
        due = begin + i * interval
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        p = pairs[i % len(pairs)]
        cid = p.next_id()
        p.sent[cid] = p.unpushed[cid] = time.perf_counter()
        await p.tx.send(make(p)(cid))
    await asyncio.sleep(1.0)
    for t in readers:
        t.cancel()
    return ([x for p in pairs for x in p.acks], [x for p in pairs for x in p.pushes])


def _ms(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] * 1000


async def _imhub_pairs(hub: Imhub, n: int) -> list[_Pair]:
    client = await JsonClient.connect(hub.host, hub.port)
    users = [f"s{i}" for i in range(n)] + [f"r{i}" for i in range(n)]
    await client.post("/user/user_register", {"users": [{"userID": u} for u in users]},
                      hub.admin_token)
    tokens = {}
    for u in users:
        env = await client.post("/auth/get_user_token", {"userID": u, "platformID": 1},
                                hub.admin_token)
        tokens[u] = env["data"]["token"]
    client.close()

    async def ws(user: str) -> ClientConnection:
        return await connect(f"ws://{hub.host}:{hub.port}/ws?sendID={user}&token="
                             f"{tokens[user]}&platformID=1&operationID=bench",
                             max_size=None, compression=None, ping_interval=None)

    return [_Pair(f"s{i}", await ws(f"s{i}"), await ws(f"r{i}"), f"r{i}") for i in range(n)]


async def _measure_imhub(hub: Imhub, args: argparse.Namespace) -> dict[str, Any]:
    pairs = await _imhub_pairs(hub, args.pairs)

    def make(p: _Pair) -> Any:
        return lambda cid: _frame(p.name, p.receiver, cid)

    rate, cpu = await _rate(pairs, args.window, args.seconds, make, server_pid=hub.pid)
    for p in pairs:
        p.sent.clear()
        p.unpushed.clear()
    acks, pushes = await _paced(pairs, args.paced_rate, args.paced_seconds, make)
    for p in pairs:
        await p.tx.close()
        if p.rx is not None:
            await p.rx.close()
    return {"rate": rate, "cpu": cpu, "acks": acks, "pushes": pushes}


async def _measure_echo(port: int, args: argparse.Namespace) -> float:
    pairs = [_Pair(f"s{i}", await connect(f"ws://127.0.0.1:{port}/ws", max_size=None,
                                          compression=None, ping_interval=None),
                   None, f"r{i}") for i in range(args.pairs)]

    def make(p: _Pair) -> Any:
        return lambda cid: _frame(p.name, p.receiver, cid)

    rate, _ = await _rate(pairs, args.window, args.seconds, make)
    for p in pairs:
        await p.tx.close()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=50)
    ap.add_argument("--window", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--paced-rate", type=float, default=1000.0)
    ap.add_argument("--paced-seconds", type=float, default=5.0)
    ap.add_argument("--floors", action="store_true",
                    help="also measure the relay and minimal-store floors (bench/_floor.py)")
    ap.add_argument("--without-delivery", action="store_true",
                    help="turn the webhook delivery workers off, to see their share")
    ap.add_argument("--postgres", action="store_true",
                    help=f"imhub on PostgreSQL ($IMHUB_TEST_PG_URL, default {PG_URL}), in a "
                         "schema of its own, instead of SQLite")
    args = ap.parse_args()
    if args.postgres and args.floors:
        ap.error("--floors measure SQLite floors: not with --postgres")
    config: dict[str, Any] = ({"webhooks": {"delivery": {"enabled": False}}}
                              if args.without_delivery else {})

    # The echo is measured before and after the rest, and the two averaged: these
    # machines change speed within minutes, and one echo taken first would tilt the ratio.
    with run_uvicorn_receiver("chat_throughput:echo_app") as port:
        echoes = [asyncio.run(_measure_echo(port, args))]
    with contextlib.ExitStack() as stack:
        url = None
        if args.postgres:
            url, keys = stack.enter_context(pg_schema())
            config = {**config, **keys}
        hub = stack.enter_context(run_imhub(config, database_url=url))
        out = asyncio.run(_measure_imhub(hub, args))
    floors = {}
    for floor in ("relay", "store") if args.floors else ():
        with run_imhub(config, floor=floor) as hub:
            measured = asyncio.run(_measure_imhub(hub, args))
            floors[floor] = (measured["rate"], measured["cpu"])
    with run_uvicorn_receiver("chat_throughput:echo_app") as port:
        echoes.append(asyncio.run(_measure_echo(port, args)))
    echo = sum(echoes) / len(echoes)
    rate = out["rate"]
    print(f"pairs={args.pairs} window={args.window} seconds={args.seconds}"
          f"{' (webhook delivery off)' if args.without_delivery else ''}")
    print(f"imhub chat:       {rate:8.0f} messages/s (stored, seq'd, afterSendSingleMsg; "
          f"{'PostgreSQL' if args.postgres else 'SQLite'})")
    print(f"bare WS echo:     {echo:8.0f} frames/s (baseline, same client; the mean of "
          f"{echoes[0]:.0f} before and {echoes[1]:.0f} after)")
    print(f"ratio:            {rate / echo:8.1%} of the echo rate")
    print(f"server CPU:       {out['cpu'] * 1e6:8.1f} us a message (all threads, from /proc)")
    for floor, (floor_rate, floor_cpu) in floors.items():
        print(f"floor {floor + ':':10s} {floor_rate:8.0f} messages/s, {floor_rate / echo:6.1%} of "
              f"the echo rate; imhub reaches {rate / floor_rate:.0%} of it; server CPU "
              f"{floor_cpu * 1e6:.1f} us a message ({out['cpu'] / floor_cpu:.1f}x for imhub)")
    print(f"paced at {args.paced_rate:.0f}/s for {args.paced_seconds:.0f} s:")
    print(f"  send -> ack:    p50 {_ms(out['acks'], 50):6.1f} ms   "
          f"p99 {_ms(out['acks'], 99):6.1f} ms   ({len(out['acks'])} acks)")
    print(f"  send -> push:   p50 {_ms(out['pushes'], 50):6.1f} ms   "
          f"p99 {_ms(out['pushes'], 99):6.1f} ms   ({len(out['pushes'])} pushes)")


if __name__ == "__main__":
    main()
