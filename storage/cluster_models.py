"""Cluster state (issue 14): the nodes alive, and which node holds which camera.

A node writes its row every heartbeat; a row older than the lease TTL is a dead node.  A camera
lease row says which node pulls a camera (``kind`` "media") or analyses it ("analysis"); it is
valid while that node's heartbeat is, so renewing costs one row per node, and the lease of a
dead node may be taken by another node of that kind.  Times come from the database's clock
on PostgreSQL, so hosts with skewed clocks still agree on who is alive.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base


class ClusterNode(Base):
    __tablename__ = "cluster_nodes"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    host: Mapped[str] = mapped_column(String(255), default="")  # its media IP / HTTP host
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime] = mapped_column(index=True)
    load: Mapped[dict[str, Any]] = mapped_column(default=dict)  # cameras, cpu, lag, ...


class CameraLease(Base):
    __tablename__ = "camera_leases"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # "media" | "analysis"
    device_id: Mapped[str] = mapped_column(String(20), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(20), primary_key=True)
    node: Mapped[str] = mapped_column(String(64), index=True)  # valid while it heartbeats
    since: Mapped[datetime]
