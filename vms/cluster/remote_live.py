"""The browser's live view on a cluster: signalling through the control node, video direct.

The browser posts its WebRTC offer to the control node's API as with one node; the control
node's :class:`RemoteLive` sends it over the bus to the media node that pulls the camera (its
media lease holder; a camera nobody pulls goes to the least-loaded media node, which pulls it
on demand), whose :class:`LiveGateway` answers with its own live service.  The answer carries
the media node's ICE candidates, so the video goes from the media node to the browser without
passing the control node, as WVP hands out a ZLMediaKit server's address.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sip.channel_ref import ChannelRef
from storage.cluster_models import CameraLease
from vms.cluster.bus import Bus
from vms.cluster.registry import Registry
from vms.logging import get_logger

log = get_logger("vms.cluster.live")


def node_subject(prefix: str, node: str) -> str:
    """A subject per node; a node name may hold dots (a host name), subjects may not."""
    return f"{prefix}.{re.sub(r'[^A-Za-z0-9_-]', '_', node)}"


LIVE_OFFER = "vms.live.offer"
LIVE_HANGUP = "vms.live.hangup"
LIVE_STATS = "vms.live.stats"


class LiveGateway:
    """On a media node: the control node's viewers, answered by this node's live service."""

    def __init__(self, bus: Bus, node: str, live: Any) -> None:
        self.bus = bus
        self.node = node
        self.live = live

    async def start(self) -> None:
        await self.bus.serve(node_subject(LIVE_OFFER, self.node), self._offer)
        await self.bus.serve(node_subject(LIVE_HANGUP, self.node), self._hangup)
        await self.bus.serve(node_subject(LIVE_STATS, self.node), self._stats)

    async def _offer(self, value: dict[str, Any]) -> dict[str, Any]:
        from vms.live.service import LiveError

        channel = ChannelRef(str(value["device_id"]), str(value["channel_id"]))
        try:
            session = await self.live.answer(channel, str(value["sdp"]), str(value.get("user", "")))
        except LiveError as exc:
            return {"error": str(exc), "status": exc.status}
        return {"session_id": session.id, "sdp": session.answer_sdp}

    async def _hangup(self, value: dict[str, Any]) -> dict[str, Any]:
        return {"ok": await self.live.hangup(str(value["session_id"]))}

    async def _stats(self, value: Any) -> dict[str, Any]:
        return dict(self.live.stats())


@dataclass
class RemoteSession:
    """What the control node's API needs of a viewer's session on a media node."""

    id: str
    channel: ChannelRef
    user: str
    node: str
    answer_sdp: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def channel_id(self) -> str:
        return self.channel.channel_id


class RemoteLive:
    """On the control node: ``services.live`` with the media nodes behind it."""

    def __init__(self, bus: Bus, registry: Registry, timeout_s: float = 10.0) -> None:
        self.bus = bus
        self.registry = registry
        self.timeout_s = timeout_s
        self.sessions: dict[str, RemoteSession] = {}

    def _pick(self, s: Session, channel: ChannelRef) -> str | None:
        """The camera's media node: its lease holder if alive, else the least loaded."""
        alive = self.registry.alive(s, "media")
        if not alive:
            return None
        holder = s.scalar(
            select(CameraLease.node).where(
                CameraLease.kind == "media",
                CameraLease.device_id == channel.device_id,
                CameraLease.channel_id == channel.channel_id,
            )
        )
        if holder in alive:
            return str(holder)
        counts = dict(
            s.execute(
                select(CameraLease.node, func.count())
                .where(CameraLease.kind == "media", CameraLease.node.in_(alive))
                .group_by(CameraLease.node)
            ).all()
        )
        return min(alive, key=lambda n: (counts.get(n, 0), n))

    async def answer(self, channel: ChannelRef, offer_sdp: str, user: str = "") -> RemoteSession:
        from vms.live.service import LiveError

        node = await self.registry.db.run(lambda s: self._pick(s, channel))
        if node is None:
            raise LiveError(503, "no media node is alive")
        value = {
            "device_id": channel.device_id,
            "channel_id": channel.channel_id,
            "sdp": offer_sdp,
            "user": user,
        }
        try:
            reply = await self.bus.request(node_subject(LIVE_OFFER, node), value, self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - timeout, no responders: the node is away
            reason = type(exc).__name__
            raise LiveError(503, f"media node {node} did not answer: {reason}") from None
        if not isinstance(reply, dict) or reply.get("error"):
            status = reply.get("status") if isinstance(reply, dict) else None
            raise LiveError(int(status or 502), str(reply.get("error") if reply else "no answer"))
        session = RemoteSession(str(reply["session_id"]), channel, user, node, str(reply["sdp"]))
        self.sessions[session.id] = session
        log.info("live session on media node", session_id=session.id, node=node, user=user)
        return session

    async def hangup(self, session_id: str) -> bool:
        session = self.sessions.pop(session_id, None)
        if session is None:
            return False
        try:
            value = {"session_id": session_id}
            await self.bus.request(node_subject(LIVE_HANGUP, session.node), value, self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - the node is gone, and the session with it
            log.warning("live hangup not delivered", node=session.node, error=repr(exc))
        return True

    def stats(self) -> dict[str, Any]:
        """The sessions this node set up and where they run (each media node's own API
        shows their figures)."""
        return {
            "sessions": [
                {
                    "session_id": s.id,
                    "device_id": s.channel.device_id,
                    "channel_id": s.channel.channel_id,
                    "user": s.user,
                    "node": s.node,
                }
                for s in self.sessions.values()
            ],
            "relays": [],
        }
