"""A media node INVITEs through the control node's SIP server.

The media node owns the RTP port and SSRC (as in one process: ``vms.media.hub``); only the
signalling crosses the bus.  :class:`RemoteSip` is the :class:`sip.media_api.PlayController`
the hub of a media node is given; :class:`SipGateway` on the control node answers it with the
real SIP server, remembers which node asked for each dialog, and BYEs the dialogs of a media
node that died (its lease ran out) so the device stops sending to a dead port.
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sip.media_api import (
    DeviceConnectListener,
    MediaAnswer,
    MediaOffer,
    MediaTransport,
    PlayError,
    PlayMode,
    PlayRequest,
    PlaySession,
    SessionEndListener,
)
from vms.cluster import bus as subjects
from vms.cluster.bus import Bus
from vms.logging import get_logger

log = get_logger("vms.cluster.sip")


# --- wire form -------------------------------------------------------------------------


def request_to_wire(r: PlayRequest) -> dict[str, Any]:
    out = asdict(r)
    out["mode"] = r.mode.value
    out["start"] = r.start.isoformat() if r.start else None
    out["end"] = r.end.isoformat() if r.end else None
    return out


def request_from_wire(d: dict[str, Any]) -> PlayRequest:
    when = {k: datetime.fromisoformat(d[k]) if d.get(k) else None for k in ("start", "end")}
    return PlayRequest(
        str(d["device_id"]),
        str(d["channel_id"]),
        PlayMode.parse(d.get("mode", "Play")),
        when["start"],
        when["end"],
        download_speed=int(d.get("download_speed", 1)),
        stream_number=int(d.get("stream_number", 0)),
    )


def offer_from_wire(d: dict[str, Any]) -> MediaOffer:
    return MediaOffer(str(d["ip"]), int(d["port"]), str(d["ssrc"]), MediaTransport(d["transport"]))


def session_to_wire(s: PlaySession) -> dict[str, Any]:
    a = s.answer
    return {
        "call_id": s.call_id,
        "started_at": s.started_at.isoformat(),
        "extra": s.extra,
        "answer": {
            "ip": a.ip,
            "port": a.port,
            "ssrc": a.ssrc,
            "transport": a.transport.value,
            "file_size": a.file_size,
            "payload_types": {str(k): v for k, v in a.payload_types.items()},
        },
    }


def answer_from_wire(d: dict[str, Any]) -> MediaAnswer:
    return MediaAnswer(
        str(d["ip"]),
        int(d["port"]),
        d.get("ssrc"),
        MediaTransport(d["transport"]),
        d.get("file_size"),
        {int(k): str(v) for k, v in (d.get("payload_types") or {}).items()},
    )


def _raise_if_error(reply: Any) -> Any:
    if isinstance(reply, dict) and reply.get("error"):
        raise PlayError(str(reply["error"]), reply.get("status"))
    return reply


# --- media side ------------------------------------------------------------------------


class RemoteSip:
    """The control node's SIP server, as the media hub sees it."""

    def __init__(self, bus: Bus, node: str, timeout_s: float, invite_timeout_s: float) -> None:
        self.bus = bus
        self.node = node
        self.timeout_s = timeout_s
        self.invite_timeout_s = invite_timeout_s  # the control node's wait for the device
        self.sessions: dict[str, PlaySession] = {}
        self._session_listeners: list[SessionEndListener] = []
        self._connect_listeners: list[DeviceConnectListener] = []

    async def start(self) -> None:
        await self.bus.listen(subjects.SIP_ENDED, self._ended)
        await self.bus.listen(subjects.SIP_CONNECTED, self._connected)

    async def _call(self, subject: str, value: dict[str, Any], timeout: float | None = None) -> Any:
        try:
            reply = await self.bus.request(subject, value, timeout or self.timeout_s)
        except TimeoutError as exc:
            raise PlayError(f"control node did not answer {subject}", 504) from exc
        except Exception as exc:
            raise PlayError(f"control node unreachable: {type(exc).__name__}", 503) from exc
        return _raise_if_error(reply)

    async def play(self, request: PlayRequest, offer: MediaOffer) -> PlaySession:
        value = {"node": self.node, "request": request_to_wire(request), "offer": asdict(offer)}
        reply = await self._call(subjects.SIP_PLAY, value, self.timeout_s + self.invite_timeout_s)
        session = PlaySession(
            str(reply["call_id"]),
            request,
            offer,
            answer_from_wire(reply["answer"]),
            datetime.fromisoformat(reply["started_at"]),
            dict(reply.get("extra") or {}),
        )
        self.sessions[session.call_id] = session
        return session

    async def stop(self, session: PlaySession) -> None:
        self.sessions.pop(session.call_id, None)
        await self._call(subjects.SIP_STOP, {"node": self.node, "call_id": session.call_id})

    async def control_playback(
        self,
        session: PlaySession,
        *,
        scale: float | None = None,
        seek_s: float | None = None,
        pause: bool | None = None,
    ) -> None:
        value = {"call_id": session.call_id, "scale": scale, "seek_s": seek_s, "pause": pause}
        await self._call(subjects.SIP_CONTROL_PLAYBACK, value)

    async def device_control(self, device_id: str, target_id: str, inner: str) -> None:
        value = {"device_id": device_id, "target_id": target_id, "inner": inner}
        await self._call(subjects.SIP_DEVICE_CONTROL, value)

    def add_session_listener(self, listener: SessionEndListener) -> None:
        self._session_listeners.append(listener)

    def add_connect_listener(self, listener: DeviceConnectListener) -> None:
        self._connect_listeners.append(listener)

    async def _ended(self, value: dict[str, Any]) -> None:
        session = self.sessions.pop(str(value.get("call_id")), None)
        if session is None:
            return  # another media node's dialog
        for listener in self._session_listeners:
            result = listener(session, str(value.get("reason", "")))
            if inspect.isawaitable(result):
                await result

    async def _connected(self, value: dict[str, Any]) -> None:
        for listener in self._connect_listeners:
            result = listener(str(value.get("device_id")), str(value.get("reason", "")))
            if inspect.isawaitable(result):
                await result


# --- control side ----------------------------------------------------------------------


class SipGateway:
    """Serves the media nodes' SIP requests with this node's SIP server."""

    def __init__(self, bus: Bus, sip: Any) -> None:
        self.bus = bus
        self.sip = sip
        self.sessions: dict[str, tuple[str, PlaySession]] = {}  # call-id → (media node, dialog)
        self.served = 0

    async def start(self) -> None:
        queue = subjects.CONTROL_QUEUE
        await self.bus.serve(subjects.SIP_PLAY, self._play, queue)
        await self.bus.serve(subjects.SIP_STOP, self._stop, queue)
        await self.bus.serve(subjects.SIP_CONTROL_PLAYBACK, self._control_playback, queue)
        await self.bus.serve(subjects.SIP_DEVICE_CONTROL, self._device_control, queue)
        self.sip.add_session_listener(self._session_ended)
        self.sip.add_connect_listener(self._device_connected)

    async def _play(self, value: dict[str, Any]) -> dict[str, Any]:
        request = request_from_wire(value["request"])
        offer = offer_from_wire(value["offer"])
        session = await self.sip.play(request, offer)
        self.sessions[session.call_id] = (str(value.get("node", "")), session)
        self.served += 1
        return session_to_wire(session)

    async def _stop(self, value: dict[str, Any]) -> dict[str, Any]:
        held = self.sessions.pop(str(value["call_id"]), None)
        if held is not None:
            await self.sip.stop(held[1])
        return {"ok": True}

    async def _control_playback(self, value: dict[str, Any]) -> dict[str, Any]:
        held = self.sessions.get(str(value["call_id"]))
        if held is None:
            raise PlayError("no such session", 481)
        await self.sip.control_playback(
            held[1], scale=value.get("scale"), seek_s=value.get("seek_s"), pause=value.get("pause")
        )
        return {"ok": True}

    async def _device_control(self, value: dict[str, Any]) -> dict[str, Any]:
        await self.sip.device_control(value["device_id"], value["target_id"], value["inner"])
        return {"ok": True}

    async def _session_ended(self, session: PlaySession, reason: str) -> None:
        if self.sessions.pop(session.call_id, None) is not None:
            await self.bus.publish(
                subjects.SIP_ENDED, subjects.dumps({"call_id": session.call_id, "reason": reason})
            )

    async def _device_connected(self, device_id: str, reason: str) -> None:
        await self.bus.publish(
            subjects.SIP_CONNECTED, subjects.dumps({"device_id": device_id, "reason": reason})
        )

    async def forget_nodes(self, alive: set[str]) -> int:
        """BYE the dialogs of media nodes that are no longer alive; returns how many."""
        dead = [cid for cid, (node, _) in self.sessions.items() if node not in alive]
        for call_id in dead:
            node, session = self.sessions.pop(call_id)
            log.warning("media node gone: bye", node=node, call_id=call_id)
            try:
                await asyncio.wait_for(self.sip.stop(session), 5)
            except Exception as exc:  # noqa: BLE001 - the device times the stream out anyway
                log.warning("bye failed", call_id=call_id, error=repr(exc))
        return len(dead)

    def per_node(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for node, _ in self.sessions.values():
            counts[node] = counts.get(node, 0) + 1
        return counts
