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
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic import Field

from .api.routing import Router
from .bus import hook
from .cluster import Entry, node_of
from .context import Actor, Ctx
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


class Presence:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self.local = Registry()
        # Other nodes' entries: (tenant, user) -> {platformID: connID}.
        self._remote: dict[UserKey, dict[int, str]] = {}
        self._live: set[str] = set()
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
        """Record a connection the gateway has registered: its event, then Redis."""
        body = {"userID": conn.user_id, "platformID": conn.platform_id, "connID": conn.conn_id}

        async def write(tx: Tx) -> None:
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
        body = {"userID": conn.user_id, "platformID": conn.platform_id, "connID": conn.conn_id}
        kicked = conn.kicked

        async def write(tx: Tx) -> None:
            if kicked is not None:
                tx.after(AFTER_KICK_OFF, {"userID": conn.user_id,
                                          "platformID": conn.platform_id, "reason": kicked})
            tx.after(AFTER_OFFLINE, body)

        await self._hub.write(_ctx(conn), write)

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
    return Ctx(Actor(conn.tenant_id, conn.user_id, conn.platform_id), conn.operation_id)


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
