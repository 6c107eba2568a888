"""Node rows and camera leases in the shared database (``storage.cluster_models``).

Every call is one short transaction, run off the loop (``Database.run``).  A camera's lease is
valid while its holder's heartbeat is (within ``lease_ttl_s``): a heartbeat renews every
lease of the node in one row write, whatever the number of cameras.  Claims are conditional
writes — an UPDATE that requires the holder to be dead, or an INSERT that fails on the primary
key — so two nodes claiming the same camera at once cannot both win.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sip.channel_ref import ChannelRef
from storage.cluster_models import CameraLease, ClusterNode
from storage.db import Database

KIND_OF_ROLE = {"media": "media", "analyzer": "analysis"}  # which leases a role holds


def db_now(s: Session) -> datetime:
    """The database's clock on PostgreSQL (one clock for all hosts); this host's elsewhere."""
    if s.get_bind().dialect.name == "postgresql":
        value = s.scalar(select(func.now()))
        if isinstance(value, datetime):
            return value.astimezone(UTC)
    return datetime.now(UTC)


@dataclass(frozen=True)
class NodeInfo:
    name: str
    role: str
    host: str
    started_at: datetime
    heartbeat_at: datetime
    alive: bool
    load: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "host": self.host,
            "started_at": self.started_at.isoformat(),
            "heartbeat_at": self.heartbeat_at.isoformat(),
            "alive": self.alive,
            "load": self.load,
        }


def list_nodes(s: Session, ttl: timedelta) -> list[NodeInfo]:
    now = db_now(s)
    rows = s.scalars(select(ClusterNode).order_by(ClusterNode.role, ClusterNode.name))
    return [
        NodeInfo(
            n.name,
            n.role,
            n.host,
            n.started_at,
            n.heartbeat_at,
            now - n.heartbeat_at < ttl,
            dict(n.load or {}),
        )
        for n in rows
    ]


class Registry:
    def __init__(self, db: Database, name: str, role: str, host: str, ttl_s: float) -> None:
        self.db = db
        self.name = name
        self.role = role
        self.host = host
        self.ttl = timedelta(seconds=ttl_s)
        self.started_at: datetime | None = None

    # --- nodes ------------------------------------------------------------------------

    def heartbeat(self, s: Session, load: dict[str, Any]) -> datetime:
        now = db_now(s)
        node = s.get(ClusterNode, self.name)
        if self.started_at is None:  # this process's first beat: nothing is pulled yet
            s.execute(delete(CameraLease).where(CameraLease.node == self.name))
        if node is None:
            self.started_at = now
            s.add(
                ClusterNode(
                    name=self.name,
                    role=self.role,
                    host=self.host,
                    started_at=now,
                    heartbeat_at=now,
                    load=load,
                )
            )
        else:
            if self.started_at is None:  # a restart under the same name
                self.started_at = now
                node.started_at = now
            node.role, node.host, node.heartbeat_at, node.load = self.role, self.host, now, load
        return now

    def nodes(self, s: Session) -> list[NodeInfo]:
        return list_nodes(s, self.ttl)

    def alive(self, s: Session, role: str) -> list[str]:
        cutoff = db_now(s) - self.ttl
        stmt = select(ClusterNode.name).where(
            ClusterNode.role == role, ClusterNode.heartbeat_at > cutoff
        )
        return sorted(s.scalars(stmt))

    def leave(self, s: Session) -> None:
        """A clean stop: the node's leases are free at once, its row says it is gone."""
        s.execute(delete(CameraLease).where(CameraLease.node == self.name))
        node = s.get(ClusterNode, self.name)
        if node is not None:
            node.heartbeat_at = db_now(s) - self.ttl - timedelta(seconds=1)

    # --- leases -----------------------------------------------------------------------

    def _live_names(self, s: Session) -> Any:
        cutoff = db_now(s) - self.ttl
        return select(ClusterNode.name).where(ClusterNode.heartbeat_at > cutoff)

    def leases(self, s: Session, kind: str) -> dict[ChannelRef, tuple[str, bool]]:
        """Every lease of the kind → (holder, holder alive)."""
        live = set(s.scalars(self._live_names(s)))
        rows = s.execute(
            select(CameraLease.device_id, CameraLease.channel_id, CameraLease.node).where(
                CameraLease.kind == kind
            )
        )
        return {ChannelRef(d, c): (node, node in live) for d, c, node in rows}

    def renew(self, s: Session, kind: str) -> set[ChannelRef]:
        """The leases this node holds of the kind.  Nothing to write: a lease is valid while
        its holder's heartbeat is, so one row per node is renewed, not one per camera."""
        rows = s.execute(
            select(CameraLease.device_id, CameraLease.channel_id).where(
                CameraLease.kind == kind, CameraLease.node == self.name
            )
        )
        return {ChannelRef(d, c) for d, c in rows}

    def claim(self, s: Session, kind: str, channel: ChannelRef) -> bool:
        """Take the camera's lease if nobody alive holds it; True if this node has it now.

        Taking over is an UPDATE conditional on the holder being dead in the same statement,
        so of two nodes reaching for a dead node's camera at once only one succeeds."""
        now = db_now(s)
        taken = s.execute(
            update(CameraLease)
            .where(
                CameraLease.kind == kind,
                CameraLease.device_id == channel.device_id,
                CameraLease.channel_id == channel.channel_id,
                CameraLease.node.not_in(self._live_names(s)),
            )
            .values(node=self.name, since=now)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount:  # type: ignore[attr-defined]
            return True
        if s.get(CameraLease, (kind, channel.device_id, channel.channel_id)) is not None:
            return False  # a live node's lease (or already ours)
        try:
            with s.begin_nested():
                s.add(
                    CameraLease(
                        kind=kind,
                        device_id=channel.device_id,
                        channel_id=channel.channel_id,
                        node=self.name,
                        since=now,
                    )
                )
        except IntegrityError:
            return False  # another node inserted it first
        return True

    def release(self, s: Session, kind: str, channels: set[ChannelRef]) -> None:
        for channel in channels:
            s.execute(
                delete(CameraLease).where(
                    CameraLease.kind == kind,
                    CameraLease.device_id == channel.device_id,
                    CameraLease.channel_id == channel.channel_id,
                    CameraLease.node == self.name,
                )
            )
