"""Who is online, per user and platform, and the online-status hooks.

This node's connections are in `local` (hub/gateway/registry.py). With Redis, every
node also keeps a copy of the other nodes' entries, loaded from Redis when it subscribes
and kept current by the changes the others announce (hub/cluster.py), so that asking
who is online (`online_user_ids`, on every message push) costs no round trip. An entry
counts only while its node's heartbeat is fresh: a dead node's users go offline
everywhere within `gateway.node_ttl_seconds`.

Each connection writes afterUserOnline when it is accepted and afterUserOffline when it
ends, both carrying its connID; a kicked connection writes afterUserKickOff (with the
reason) together with its afterUserOffline. They are after-events like any other:
outbox rows committed through `hub.write`, delivered at least once.

So that a node that dies without closing its connections leaves no user online in the
business backend's books, a connection's row in `online_connections` (hub/db/presence.py)
is written with its afterUserOnline and deleted with its afterUserOffline. Every node
beats in `gateway_nodes` every third of `gateway.node_ttl_seconds`; rows of a node that
has not beaten for twice that are taken, one by one, by whichever node gets to delete
them first, and that node writes their afterUserOffline. A lone node that was killed
finds its former rows when it starts again, and ends them once the dead process's last
beat is that old.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic import Field
from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from .api.routing import Router
from .bus import hook
from .clock import now_ms
from .cluster import Entry, node_of
from .context import Actor, Ctx
from .db.fast import Statement, dialect_name
from .db.presence import GatewayNode, OnlineConnection
from .domain._lookup import users_by_id
from .domain._schema import ID, Req
from .gateway.registry import Registry, UserKey

if TYPE_CHECKING:
    from .core import Hub
    from .gateway.connection import Connection
    from .tx import Tx

log = logging.getLogger("imhub.presence")

AFTER_ONLINE = hook("afterUserOnline")
AFTER_OFFLINE = hook("afterUserOffline")
AFTER_KICK_OFF = hook("afterUserKickOff")

router = Router()

_CONNECTION = Statement(insert(OnlineConnection).values(
    {c.name: bindparam(c.name) for c in OnlineConnection.__table__.columns}))
_END = Statement(delete(OnlineConnection).where(OnlineConnection.conn_id == bindparam("c"))
                 .returning(OnlineConnection.conn_id))
_NODES_WITH_CONNECTIONS = Statement(select(OnlineConnection.node_id).distinct())
_BEATING = Statement(select(GatewayNode.node_id).where(GatewayNode.beat_at >= bindparam("since")))
_CONNECTIONS_OF = Statement(select(
    OnlineConnection.conn_id, OnlineConnection.tenant_id, OnlineConnection.user_id,
    OnlineConnection.platform_id, OnlineConnection.operation_id,
).where(OnlineConnection.node_id == bindparam("n")))
_FORGET = Statement(delete(GatewayNode).where(GatewayNode.beat_at < bindparam("before")))
_LEAVE = Statement(delete(GatewayNode).where(GatewayNode.node_id == bindparam("n")))


def _beat_statement(insert_: Any) -> Statement:
    stmt = insert_(GatewayNode).values(node_id=bindparam("n"), beat_at=bindparam("at"))
    return Statement(stmt.on_conflict_do_update(index_elements=[GatewayNode.node_id],
                                                set_={"beat_at": stmt.excluded.beat_at}))


_BEAT = {"postgresql": _beat_statement(pg_insert), "sqlite": _beat_statement(sqlite_insert)}
# The node's own bookkeeping (beats, leaving the list) belongs to no tenant.
_NODE_CTX = Ctx(Actor(""), "presence")


def _body(user_id: str, platform_id: int, conn_id: str) -> dict[str, Any]:
    """afterUserOnline's and afterUserOffline's payload."""
    return {"userID": user_id, "platformID": platform_id, "connID": conn_id}


class Presence:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self.local = Registry()
        # Other nodes' entries: (tenant, user) -> {platformID: connID}.
        self._remote: dict[UserKey, dict[int, str]] = {}
        self._live: set[str] = set()
        self._keeper: asyncio.Task[None] | None = None
        cluster = hub.cluster
        if cluster is not None:
            cluster.on("on", self._remote_online)
            cluster.on("off", self._remote_offline)
            cluster.on_snapshot = self._load
            cluster.on_nodes = self._set_nodes
            cluster.local_users = self.local.users

    # --- queries ------------------------------------------------------------------------

    def platforms(self, tenant_id: str, user_id: str) -> list[int]:
        """The platformIDs on which the user has a live connection, on any node."""
        found = set(self.local.of_user(tenant_id, user_id))
        remote = self._remote.get((tenant_id, user_id))
        if remote:
            found.update(p for p, c in remote.items() if node_of(c) in self._live)
        return sorted(found)

    def is_online(self, tenant_id: str, user_id: str) -> bool:
        if self.local.of_user(tenant_id, user_id):
            return True
        remote = self._remote.get((tenant_id, user_id))
        return remote is not None and any(node_of(c) in self._live for c in remote.values())

    def online_user_ids(self, tenant_id: str, user_ids: Iterable[str]) -> set[str]:
        """Those of `user_ids` with a live connection on any node."""
        return {u for u in user_ids if self.is_online(tenant_id, u)}

    def status(self, tenant_id: str, user_ids: Iterable[str]) -> list[dict[str, Any]]:
        out = []
        for u in user_ids:
            platforms = self.platforms(tenant_id, u)
            out.append({"userID": u, "status": 1 if platforms else 0, "platformIDs": platforms})
        return out

    # --- this node's connections ----------------------------------------------------------

    async def connected(self, conn: Connection) -> None:
        """Record a connection the gateway has registered: its row and event, then Redis."""
        body = _body(conn.user_id, conn.platform_id, conn.conn_id)
        row = {"conn_id": conn.conn_id, "node_id": self._hub.node_id,
               "tenant_id": conn.tenant_id, "user_id": conn.user_id,
               "platform_id": conn.platform_id, "operation_id": conn.operation_id,
               "create_time": now_ms()}

        async def write(tx: Tx) -> None:
            await _CONNECTION.many(tx.db, [row])
            tx.after(AFTER_ONLINE, body)

        await self._hub.write(_ctx(conn), write)
        conn.online = True
        if self._hub.cluster is not None:
            await self._hub.cluster.set_online(conn.tenant_id, conn.user_id, conn.platform_id,
                                               conn.conn_id)

    async def disconnected(self, conn: Connection) -> None:
        """Record a connection that has ended (the gateway has unregistered it)."""
        if self._hub.cluster is not None:
            try:
                await self._hub.cluster.set_offline(conn.tenant_id, conn.user_id,
                                                    conn.platform_id, conn.conn_id)
            except Exception:
                log.exception("clearing %r in Redis", conn)
        if not conn.online:
            return  # never recorded as online: nothing to pair
        body = _body(conn.user_id, conn.platform_id, conn.conn_id)
        kicked = conn.kicked

        async def write(tx: Tx) -> None:
            if not await _END.rows(tx.db, {"c": conn.conn_id}):
                return  # ended already, by a node that took this one for dead
            if kicked is not None:
                tx.after(AFTER_KICK_OFF, {"userID": conn.user_id,
                                          "platformID": conn.platform_id, "reason": kicked})
            tx.after(AFTER_OFFLINE, body)

        await self._hub.write(_ctx(conn), write)

    # --- nodes that died with connections open --------------------------------------------

    async def start(self) -> None:
        """Beat, then keep beating and ending the connections of dead nodes."""
        await self._beat()
        self._keeper = asyncio.create_task(self._keep(), name="presence-keeper")

    async def close(self) -> None:
        """Stop beating and leave the list (the gateway has closed the connections)."""
        if self._keeper is None:
            return  # never started
        self._keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._keeper
        self._keeper = None
        node = self._hub.node_id
        with contextlib.suppress(Exception):
            await self._hub.write(_NODE_CTX, lambda tx: _LEAVE.many(tx.db, [{"n": node}]),
                                  orm=False, changes_checks=False)

    async def _keep(self) -> None:
        ttl_ms = int(self._hub.settings.gateway.node_ttl_seconds * 1000)
        while True:
            try:
                await self.end_dead_nodes()
                await asyncio.sleep(ttl_ms / 3000)
                await self._beat()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("keeping the node list")
                await asyncio.sleep(ttl_ms / 3000)

    async def _beat(self) -> None:
        node = self._hub.node_id
        # Nodes gone for long (and ended, if they had connections) leave the list.
        forget = 40 * int(self._hub.settings.gateway.node_ttl_seconds * 1000)

        async def write(tx: Tx) -> None:
            now = now_ms()
            await _BEAT[dialect_name(tx.db)].many(tx.db, [{"n": node, "at": now}])
            await _FORGET.many(tx.db, [{"before": now - forget}])

        await self._hub.write(_NODE_CTX, write, orm=False, changes_checks=False)

    async def end_dead_nodes(self) -> int:
        """End the connections of nodes with no beat for twice the node TTL: write each
        one's afterUserOffline and delete its row, unless another node did first. Returns
        how many this node ended."""
        hub = self._hub
        now = now_ms()
        dead_after = 2 * int(hub.settings.gateway.node_ttl_seconds * 1000)
        with_rows = {r[0] for r in await hub.reads.rows(_NODES_WITH_CONNECTIONS, {})}
        beating = {r[0] for r in await hub.reads.rows(_BEATING, {"since": now - dead_after})}
        dead = with_rows - beating - {hub.node_id}
        ended = 0
        for node in sorted(dead):
            rows = await hub.reads.rows(_CONNECTIONS_OF, {"n": node})
            log.warning("node %s stopped beating with %d connection(s) open: ending them",
                        node, len(rows))
            done = await asyncio.gather(*(self._end(*row) for row in rows))
            ended += sum(done)
        return ended

    async def _end(self, conn_id: str, tenant_id: str, user_id: str, platform_id: int,
                   operation_id: str) -> bool:
        body = _body(user_id, platform_id, conn_id)

        async def write(tx: Tx) -> bool:
            if not await _END.rows(tx.db, {"c": conn_id}):
                return False  # another node ended it
            tx.after(AFTER_OFFLINE, body)
            return True

        ctx = Ctx(Actor(tenant_id, user_id, platform_id), operation_id)
        ended: bool = await self._hub.write(ctx, write, orm=False, changes_checks=False)
        return ended

    # --- the other nodes (hub/cluster.py) -------------------------------------------------

    def _remote_online(self, msg: dict[str, Any]) -> None:
        self._remote.setdefault((msg["t"], msg["u"]), {})[int(msg["p"])] = msg["c"]
        self._live.add(msg["n"])  # a node that announces is alive

    def _remote_offline(self, msg: dict[str, Any]) -> None:
        key = (msg["t"], msg["u"])
        platforms = self._remote.get(key)
        if platforms is not None and platforms.get(int(msg["p"])) == msg["c"]:
            del platforms[int(msg["p"])]
            if not platforms:
                del self._remote[key]

    def _load(self, entries: list[Entry]) -> None:
        assert self._hub.cluster is not None
        me = self._hub.cluster.node_id
        remote: dict[UserKey, dict[int, str]] = {}
        for tenant_id, user_id, platform_id, conn_id in entries:
            if node_of(conn_id) != me:
                remote.setdefault((tenant_id, user_id), {})[platform_id] = conn_id
        self._remote = remote

    def _set_nodes(self, live: set[str], listed: set[str]) -> None:
        self._live = live
        # Forget the entries of nodes that left the list (closed, or dead for long); a node
        # only late with its heartbeat keeps them, and counts again once it beats.
        gone = [k for k, ps in self._remote.items()
                if not any(node_of(c) in listed for c in ps.values())]
        for k in gone:
            del self._remote[k]


def _ctx(conn: Connection) -> Ctx:
    return Ctx(conn.actor, conn.operation_id)


class OnlineStatusReq(Req):
    userIDs: list[ID] = Field(min_length=1, max_length=1000)


@router.post("/user/get_users_online_status", OnlineStatusReq)
async def get_users_online_status(hub: Hub, ctx: Ctx, req: OnlineStatusReq
                                  ) -> list[dict[str, Any]]:
    """[{userID, status: 0 offline / 1 online, platformIDs}] for the users of this tenant
    among userIDs (unknown IDs are left out, as in /user/get_users_info)."""
    async with hub.read() as s:
        found = await users_by_id(s, ctx.tenant_id, req.userIDs)
    return hub.presence.status(ctx.tenant_id, [u for u in dict.fromkeys(req.userIDs)
                                               if u in found])
