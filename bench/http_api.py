"""Requests per second of a state-changing route pair (add_friend + add_friend_response)
with no handlers and with one in-process plugin that allows everything, in the same run.

    .venv/bin/python bench/http_api.py [--seconds 4] [--concurrency 16] [--rounds 2]

The two servers run one after the other, alternating, each in its own process on a
fresh SQLite database; the figure per configuration is the best of its rounds. The
bus's cost is the ratio of the two.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server import Imhub, JsonClient, run_imhub

_PLUGIN = {"plugins": [{"module": "_allow_all:AllowAll", "priority": 10}]}


async def _pairs_per_second(hub: Imhub, *, seconds: float, concurrency: int) -> float:
    admin = hub.admin_token
    setup = await JsonClient.connect(hub.host, hub.port)
    n_users = 60_000
    for start in range(0, n_users, 1000):
        await setup.post(
            "/user/user_register",
            {"users": [{"userID": f"u{i}"} for i in range(start, start + 1000)]},
            admin,
        )
    setup.close()
    clients = [await JsonClient.connect(hub.host, hub.port) for _ in range(concurrency)]
    ids = itertools.count(0, 2)
    loop = asyncio.get_running_loop()
    begin = loop.time() + 0.5  # warm-up not counted
    stop = begin + seconds
    done = 0

    async def worker(c: JsonClient) -> None:
        nonlocal done
        while (now := loop.time()) < stop:
            i = next(ids)
            if i + 1 >= n_users:
                raise RuntimeError("ran out of users: raise n_users")
            a, b = f"u{i}", f"u{i + 1}"
            await c.post(
                "/friend/add_friend", {"fromUserID": a, "toUserID": b, "reqMsg": "hi"}, admin
            )
            await c.post(
                "/friend/add_friend_response",
                {"fromUserID": a, "toUserID": b, "handleResult": 1},
                admin,
            )
            if now >= begin:
                done += 1

    await asyncio.gather(*(worker(c) for c in clients))
    for c in clients:
        c.close()
    return done / seconds


def _measure(config: dict[str, object], seconds: float, concurrency: int) -> float:
    with run_imhub(config) as hub:
        return asyncio.run(_pairs_per_second(hub, seconds=seconds, concurrency=concurrency))


async def _bus_cost_per_action(calls: int = 20_000) -> tuple[float, float]:
    """In-process seconds per action of the bus itself: one before chain and one after
    dispatch, with no handlers and with the allow-all plugin. The HTTP figures above are
    too noisy on a shared box to resolve a few per cent; this isolates the bus's part."""
    from _allow_all import AllowAll

    from hub.bus import Bus, hook
    from hub.bus.handler import AfterEvent
    from hub.plugin import PluginConfig

    before, after = hook("beforeAddFriend"), hook("afterAddFriend")
    payload = {"fromUserID": "a", "toUserID": "b", "reqMsg": "hi", "ex": ""}
    event = AfterEvent(after, "evt_1", "t1", "op", 0, "a", payload)
    loop = asyncio.get_running_loop()

    async def per_action(bus: Bus) -> float:
        start = loop.time()
        for _ in range(calls):
            await bus.before(before, "t1", "op", payload)
            bus.after([event])
        await bus.drain()
        return (loop.time() - start) / calls

    bare = await per_action(Bus())
    plugged = await per_action(Bus([AllowAll(PluginConfig())]))
    return bare, plugged


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    bare: list[float] = []
    plugged: list[float] = []
    for _ in range(args.rounds):
        bare.append(_measure({}, args.seconds, args.concurrency))
        plugged.append(_measure(_PLUGIN, args.seconds, args.concurrency))
    b, p = max(bare), max(plugged)
    print(f"no handlers:        {b:8.1f} pairs/s  ({2 * b:.1f} requests/s)  rounds {bare}")
    print(f"allow-all plugin:   {p:8.1f} pairs/s  ({2 * p:.1f} requests/s)  rounds {plugged}")
    print(f"ratio plugin/bare:  {p / b:.3f}  (bus cost {100 * (1 - p / b):+.1f} %)")
    bus_bare, bus_plugged = asyncio.run(_bus_cost_per_action())
    # The server is one process on one core, so 1 / (actions per second) is what one
    # action costs it; a pair is two actions.
    action = 1 / (2 * b)
    extra = bus_plugged - bus_bare
    print(f"bus per action (in-process): none {bus_bare * 1e6:.1f} us, allow-all plugin "
          f"{bus_plugged * 1e6:.1f} us; the plugin adds {extra * 1e6:.1f} us = "
          f"{100 * extra / action:.2f} % of a {action * 1e3:.1f} ms action")


if __name__ == "__main__":
    main()
