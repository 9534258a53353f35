"""Several nodes through Redis: one pub/sub channel, presence hashes and node heartbeats.

- The channel `{prefix}bus` carries pushes, kicks and presence changes to every node;
  each node acts on what concerns its own connections and ignores its own messages.
  Pub/sub loses what a node misses while it is disconnected; that is fine for pushes
  (clients sync by seq) and presence is reloaded from the hashes after a reconnect.
- Presence: hash `{prefix}on:{tenantID}:{userID}`, field platformID, value the
  connection's ID, which starts with its node's ID. Setting or clearing an entry and
  announcing it on the channel happen in one script, so every node sees the changes in
  the order Redis applied them.
- Webhook pacing: string `{prefix}pace:{endpointID}`, the next free send slot (Redis
  clock, microseconds) of an endpoint with a rateLimit, so that the nodes together keep
  to it (`reserve_slot`).
- Webhook concurrency: sorted set `{prefix}inflight:{endpointID}`, the attempts in
  flight to an endpoint with a maxConcurrency (token -> when its claim lapses, Redis
  clock, ms), so that the nodes together keep to it (`acquire_slot`, `release_slot`);
  a crashed node's claims lapse after the attempt timeout.
- Liveness: sorted set `{prefix}nodes`, node ID -> last heartbeat (unix ms). A node
  renews its score and the expiry of its users' hashes every third of
  `gateway.node_ttl_seconds`; entries of a node whose heartbeat is older than that are
  not online, and a dead node's hashes expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("imhub.cluster")

NODE_ID_LEN = 8  # hex digits; a connection ID starts with its node's ID
Handler = Callable[[dict[str, Any]], None]
Entry = tuple[str, str, int, str]  # tenantID, userID, platformID, connID

_SET = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
"""
_CLEAR = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
redis.call('PUBLISH', ARGV[3], ARGV[4])
"""

# Reserve the next send slot of KEYS[1], ARGV[1] microseconds after the last one; answer
# how many microseconds from now it is. Redis's clock, so that nodes' clocks never skew it.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local slot = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
local after = slot + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%d', after), 'PX',
           math.floor((after - now) / 1000) + 1000)
return slot - now
"""

# Claim one of ARGV[1] places of KEYS[1] for token ARGV[3], for ARGV[2] ms; 1 if taken.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


def new_node_id() -> str:
    return secrets.token_hex(NODE_ID_LEN // 2)


def node_of(conn_id: str) -> str:
    return conn_id[:NODE_ID_LEN]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# How long closing a connection to Redis may take at shutdown.
_CLOSE_SECONDS = 5.0


class Cluster:
    def __init__(self, url: str, *, prefix: str, node_ttl: float) -> None:
        self.node_id = new_node_id()
        self.prefix = prefix
        # Named, so that an operator (or a test) can find this node's connections.
        self._redis = Redis.from_url(url, client_name=f"{prefix}{self.node_id}")
        self._channel = f"{prefix}bus"
        self._nodes = f"{prefix}nodes"
        self._ttl_ms = int(node_ttl * 1000)
        self._set = self._redis.register_script(_SET)
        self._clear = self._redis.register_script(_CLEAR)
        self._reserve = self._redis.register_script(_RESERVE)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._handlers: dict[str, Handler] = {}
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = asyncio.Event()
        # Set by hub/presence.py: called with every node's entries after (re)subscribing,
        # with the nodes after each heartbeat, and asked which hashes to keep alive.
        self.on_snapshot: Callable[[list[Entry]], None] = lambda entries: None
        self.on_nodes: Callable[[set[str], set[str]], None] = lambda live, listed: None
        self.local_users: Callable[[], Iterable[tuple[str, str]]] = lambda: ()

    def on(self, kind: str, handler: Handler) -> None:
        """Call `handler` with each message of `kind` that another node publishes."""
        self._handlers[kind] = handler

    async def start(self) -> None:
        await self._heartbeat()
        self._tasks = [asyncio.create_task(self._listen(), name="cluster-listen"),
                       asyncio.create_task(self._publisher(), name="cluster-publish"),
                       asyncio.create_task(self._beat(), name="cluster-heartbeat")]
        async with asyncio.timeout(10):
            await self._subscribed.wait()

    async def close(self) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            async with asyncio.timeout(2):
                await self._outbox.join()  # kicks and pushes queued before shutdown
        for task in self._tasks:
            task.cancel()
        # Bounded: a task closing a connection that Redis dropped must not hold the
        # node's shutdown (nor a test's teardown) forever.
        if self._tasks:  # none when it never started (a node whose start-up failed)
            await asyncio.wait(self._tasks, timeout=_CLOSE_SECONDS)
        with contextlib.suppress(RedisError, OSError):
            await self._redis.zrem(self._nodes, self.node_id)  # the others know at once
        await self._redis.aclose()

    async def reserve_slot(self, key: str, interval: float) -> float:
        """Reserve the next slot of `key`, `interval` seconds after the one before it on
        any node; return the seconds to wait for it. Raises RedisError or OSError when
        Redis cannot answer."""
        wait = await self._reserve(keys=[f"{self.prefix}pace:{key}"],
                                   args=[max(1, round(interval * 1_000_000))])
        return max(0, int(wait)) / 1_000_000

    async def acquire_slot(self, key: str, limit: int, hold: float, token: str) -> bool:
        """Claim one of `limit` places of `key` across nodes for `hold` seconds at most;
        False when all are taken. Raises RedisError or OSError when Redis cannot answer."""
        return bool(await self._acquire(keys=[f"{self.prefix}inflight:{key}"],
                                        args=[limit, max(1, round(hold * 1000)), token]))

    async def release_slot(self, key: str, token: str) -> None:
        await self._redis.zrem(f"{self.prefix}inflight:{key}", token)

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    # --- messages -----------------------------------------------------------------------

    def publish(self, kind: str, body: dict[str, Any]) -> None:
        """Send a message to the other nodes, after the ones queued before it."""
        self._outbox.put_nowait(orjson.dumps({"k": kind, "n": self.node_id, **body}))

    async def _publisher(self) -> None:
        while True:
            raw = await self._outbox.get()
            try:
                for attempt in range(3):
                    try:
                        await self._redis.publish(self._channel, raw)
                        break
                    except (RedisError, OSError) as exc:
                        log.warning("publish failed (attempt %d): %r", attempt + 1, exc)
                        await asyncio.sleep(0.2 * (attempt + 1))
            finally:
                self._outbox.task_done()

    async def _listen(self) -> None:
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        self._dispatch(message["data"])
                    elif message["type"] == "subscribe":
                        # The first confirms our subscription; a later one follows a
                        # reconnect that redis-py made quietly, after which what was
                        # published meanwhile is lost: (re)load presence. Messages
                        # published while it loads wait in the connection, and are
                        # applied after it, in order.
                        self.on_snapshot(await self._snapshot())
                        self._subscribed.set()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("cluster channel lost (%r); resubscribing", exc)
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(_CLOSE_SECONDS):
                        await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]  # typed from redis 8

    def _dispatch(self, raw: bytes) -> None:
        try:
            msg = orjson.loads(raw)
            if msg.get("n") == self.node_id:
                return
            handler = self._handlers.get(msg.get("k"))
            if handler is not None:
                handler(msg)
        except Exception:
            log.exception("cluster message %r", raw[:200])

    # --- presence -----------------------------------------------------------------------

    def _key(self, tenant_id: str, user_id: str) -> str:
        return f"{self.prefix}on:{tenant_id}:{user_id}"

    async def set_online(self, tenant_id: str, user_id: str, platform_id: int,
                         conn_id: str) -> None:
        msg = orjson.dumps({"k": "on", "n": self.node_id, "t": tenant_id, "u": user_id,
                            "p": platform_id, "c": conn_id})
        await self._set(keys=[self._key(tenant_id, user_id)],
                        args=[platform_id, conn_id, 3 * self._ttl_ms, self._channel, msg])

    async def set_offline(self, tenant_id: str, user_id: str, platform_id: int,
                          conn_id: str) -> None:
        msg = orjson.dumps({"k": "off", "n": self.node_id, "t": tenant_id, "u": user_id,
                            "p": platform_id, "c": conn_id})
        await self._clear(keys=[self._key(tenant_id, user_id)],
                          args=[platform_id, conn_id, self._channel, msg])

    async def _snapshot(self) -> list[Entry]:
        """Every presence entry in Redis (tenant IDs hold no ':'; user IDs may)."""
        head = f"{self.prefix}on:"
        keys = [k.decode() async for k in self._redis.scan_iter(match=head + "*", count=1000)]
        entries: list[Entry] = []
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            async with self._redis.pipeline(transaction=False) as pipe:
                for k in chunk:
                    pipe.hgetall(k)
                hashes = await pipe.execute()
            for key, fields in zip(chunk, hashes, strict=True):
                tenant_id, _, user_id = key[len(head):].partition(":")
                entries += [(tenant_id, user_id, int(p), c.decode()) for p, c in fields.items()]
        return entries

    async def nodes(self) -> tuple[set[str], set[str]]:
        """(live nodes, every node still listed), live being those with a fresh heartbeat."""
        members: list[tuple[bytes, float]] = await self._redis.zrange(  # type: ignore[assignment]
            self._nodes, 0, -1, withscores=True)
        fresh = _now_ms() - self._ttl_ms
        return ({m.decode() for m, score in members if score >= fresh},
                {m.decode() for m, _ in members})

    async def _heartbeat(self) -> None:
        now = _now_ms()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(self._nodes, {self.node_id: now})
            pipe.zremrangebyscore(self._nodes, "-inf", now - 20 * self._ttl_ms)
            for tenant_id, user_id in self.local_users():
                pipe.pexpire(self._key(tenant_id, user_id), 3 * self._ttl_ms)
            await pipe.execute()
        self.on_nodes(*await self.nodes())

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._ttl_ms / 3000)
            try:
                await self._heartbeat()
            except (RedisError, OSError) as exc:
                log.warning("heartbeat failed: %r", exc)
