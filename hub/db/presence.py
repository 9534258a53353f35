"""Live connections, so that every afterUserOnline is paired with an afterUserOffline.

A connection's row is written with its afterUserOnline and deleted with its
afterUserOffline, in the same transactions. A node that dies (SIGKILL, power) leaves its
rows behind; each node with a gateway beats in `gateway_nodes`, and rows of a node
whose beat is stale are taken by another node (or by the next start of a single node),
which writes their afterUserOffline (hub/presence.py).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base

_ID = String(64)


class OnlineConnection(Base):
    __tablename__ = "online_connections"
    # "{nodeID}.{serial}" (hub/gateway/gateway.py): unique across nodes and restarts.
    conn_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    node_id: Mapped[str] = mapped_column(String(16))
    tenant_id: Mapped[str] = mapped_column(_ID)
    user_id: Mapped[str] = mapped_column(_ID)
    platform_id: Mapped[int] = mapped_column(Integer)
    operation_id: Mapped[str] = mapped_column(String(128))
    create_time: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (Index("ix_online_connections_node", "node_id"),)


class GatewayNode(Base):
    """A node's last beat (unix ms), every third of `gateway.node_ttl_seconds`."""

    __tablename__ = "gateway_nodes"
    node_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    beat_at: Mapped[int] = mapped_column(BigInteger)
