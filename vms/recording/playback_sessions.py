"""Watching the NVR's own recording under control: pause, resume, speed, seek.

A session is one Playback INVITE (``hub.open_playback``); its units go to one viewer
queue, which the API hands to the live view as a WebRTC track.  Control goes to the
device as MANSRTSP INFO (``hub.control_playback``): ``PAUSE``, ``PLAY`` (resume),
``PLAY`` + ``Scale`` (speed), ``PLAY`` + ``Range: npt=`` (seek, seconds from the start).

The device's PTS follow the recording, so the position is the start plus the PTS
advanced (a seek sets it at the first keyframe after it; a jump of the device's clock
is not counted).  The viewer's timestamps are paced like the units arrive — PTS steps
divided by the speed, a stall counted in wall time — so a browser shows 2× as 2×
instead of buffering it.  A session nobody watches is closed after ``IDLE_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sip.channel_ref import ChannelRef
from vms.logging import get_logger
from vms.media.frames import AccessUnit, Gap, Subscription
from vms.services import Services

log = get_logger("vms.recording.playback_sessions")

SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # MANSRTSP Scale values offered
CLOCK_HZ = 90000
MAX_STEP = 5 * CLOCK_HZ  # a larger (or backward) PTS step is a jump, not playing time
DEFAULT_STEP = CLOCK_HZ // 25
STALL_S = 1.0  # units this far apart in wall time: the viewer's clock follows the wall
IDLE_S = 20.0  # a session without a viewer this long is closed
ENDED_KEEP_S = 60.0  # an ended session stays readable this long
MAX_SESSIONS = 32
MAX_PER_USER = 4
VIEWER_QUEUE = 240
JANITOR_S = 2.0


class PlaybackRefused(Exception):
    """No hub or SIP server to replay from the device, or too many sessions (``status``)."""

    def __init__(self, message: str, status: int = 503) -> None:
        super().__init__(message)
        self.status = status


@dataclass(eq=False)
class PlaybackSession:
    id: str
    channel: ChannelRef
    user: str
    start: datetime
    end: datetime
    key: Any  # the hub's StreamKey
    source: Subscription  # the hub's units
    state: str = "starting"  # starting, playing, paused, ended
    error: str = ""  # why it failed (nothing came)
    end_reason: str = ""  # how it ended: MediaStatus 121, a BYE, a timeout
    scale: float = 1.0
    paused: bool = False
    position_s: float = 0.0  # media seconds from ``start``
    units: int = 0
    viewer: Subscription | None = None
    stream: Any = None  # the hub's Stream
    task: asyncio.Task[None] | None = None
    idle_since: float | None = field(default_factory=time.monotonic)
    ended_at: float | None = None
    _last_pts: int | None = None
    _out_pts: int = 0
    _last_wall: float = 0.0
    _seek_to: float | None = None

    @property
    def channel_id(self) -> str:
        return self.channel.channel_id

    @property
    def position(self) -> datetime:
        return self.start + timedelta(seconds=self.position_s)

    def advance(self, unit: AccessUnit) -> AccessUnit:
        """Move the position by the unit's PTS step; the unit retimed for the viewer."""
        now = time.monotonic()
        step = 0 if self._last_pts is None else unit.pts - self._last_pts
        playing = 0 < step <= MAX_STEP
        if self._seek_to is not None and unit.keyframe:
            self.position_s, self._seek_to = self._seek_to, None
        elif playing:
            self.position_s += step / CLOCK_HZ
        self._last_pts = unit.pts
        out = step / self.scale if playing else DEFAULT_STEP
        if self._last_wall and now - self._last_wall > STALL_S:  # paused, or the device slow
            out = max(out, (now - self._last_wall) * CLOCK_HZ)
        self._out_pts += max(1, round(out)) if self.units else 0
        self._last_wall = now
        self.units += 1
        return dataclasses.replace(unit, pts=self._out_pts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "device_id": self.channel.device_id,
            "channel_id": self.channel_id,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "state": self.state,
            "error": self.error,
            "end_reason": self.end_reason,
            "paused": self.paused,
            "speed": self.scale,
            "position": self.position.isoformat(),
            "position_s": round(self.position_s, 3),
            "units": self.units,
            "viewer": self.viewer is not None and not self.viewer.closed,
        }


class PlaybackSessions:
    """The node's controllable NVR playbacks (in memory: a restart ends them)."""

    name = "playback"

    def __init__(self, services: Services) -> None:
        self.services = services
        self.sessions: dict[str, PlaybackSession] = {}
        self._janitor: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.services.playback = self
        self._janitor = asyncio.create_task(self._sweep_forever(), name="playback-janitor")

    async def stop(self) -> None:
        if self._janitor is not None:
            self._janitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._janitor
            self._janitor = None
        for session_id in list(self.sessions):
            await self.close(session_id)

    # --- sessions ------------------------------------------------------------------------

    def open(
        self, channel: ChannelRef, start: datetime, end: datetime, user: str = ""
    ) -> PlaybackSession:
        """INVITE the channel's device for ``[start, end]`` (s=Playback); playing once units
        arrive."""
        hub = self.services.media
        if hub is None or self.services.sip is None or not hasattr(hub, "control_playback"):
            raise PlaybackRefused("no media hub or SIP server for device playback")
        if end <= start:
            raise PlaybackRefused("end must be after start", 422)
        active = [s for s in self.sessions.values() if s.state != "ended"]
        if len(active) >= MAX_SESSIONS:
            raise PlaybackRefused(f"device playback is at its limit of {MAX_SESSIONS}")
        if user and sum(1 for s in active if s.user == user) >= MAX_PER_USER:
            raise PlaybackRefused(f"{user} already plays back {MAX_PER_USER} ranges", 429)
        session_id = uuid.uuid4().hex
        key, source = hub.open_playback(channel, start, end, name=f"replay-{session_id[:8]}")
        session = PlaybackSession(session_id, channel, user, start, end, key, source)
        session.stream = hub.playback_stream(key)  # kept: it tells how the stream ended
        session.task = asyncio.create_task(self._pump(session), name=f"replay-{session_id[:8]}")
        self.sessions[session_id] = session
        log.info(
            "device playback", session=session_id, channel=str(channel), start=start.isoformat()
        )
        return session

    def get(self, session_id: str) -> PlaybackSession | None:
        return self.sessions.get(session_id)

    def viewer(self, session_id: str) -> Subscription:
        """The queue a WebRTC track reads; a new one replaces the old (a page reconnecting)."""
        session = self.sessions[session_id]
        if session.viewer is not None:
            session.viewer.close()

        def left(sub: Subscription) -> None:
            if session.viewer is sub:
                session.viewer = None
                session.idle_since = time.monotonic()

        session.viewer = Subscription(
            session.channel_id, f"replay:{session_id[:8]}", VIEWER_QUEUE, on_close=left
        )
        session.idle_since = None
        return session.viewer

    async def close(self, session_id: str) -> bool:
        session = self.sessions.pop(session_id, None)
        if session is None:
            return False
        session.source.close()  # the hub hangs up (BYE)
        if session.task is not None:
            session.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await session.task
        if session.viewer is not None:
            session.viewer.close()
        log.info("device playback closed", session=session_id, units=session.units)
        return True

    # --- control -------------------------------------------------------------------------

    async def control(
        self,
        session_id: str,
        action: str,
        *,
        speed: float | None = None,
        at: datetime | None = None,
    ) -> PlaybackSession:
        """pause / resume / speed (one of ``SPEEDS``) / seek (``at`` inside the range).

        KeyError: no such session; ValueError: a bad argument; LookupError: the stream is
        not running (yet, or any more); PlayError: the device refused or did not answer."""
        session = self.sessions[session_id]
        hub = self.services.media
        if action == "pause":
            await hub.control_playback(session.key, pause=True)
            session.paused = True
        elif action == "resume":
            await hub.control_playback(session.key, pause=False)
            session.paused = False
        elif action == "speed":
            if speed not in SPEEDS:
                raise ValueError(f"speed must be one of {', '.join(f'{s:g}' for s in SPEEDS)}")
            await hub.control_playback(session.key, scale=speed)
            session.scale, session.paused = float(speed), False
        elif action == "seek":
            if at is None or not session.start <= at < session.end:
                raise ValueError("seek needs a time inside the playback's range")
            offset = (at - session.start).total_seconds()
            await hub.control_playback(session.key, seek_s=offset)
            session._seek_to, session.paused = offset, False
        else:
            raise ValueError(f"unknown action {action!r}: pause, resume, speed or seek")
        if session.state in ("playing", "paused"):
            session.state = "paused" if session.paused else "playing"
        return session

    # --- the units -----------------------------------------------------------------------

    async def _pump(self, session: PlaybackSession) -> None:
        try:
            async for item in session.source:
                viewer = session.viewer
                if isinstance(item, Gap):
                    if viewer is not None:
                        viewer.offer(item)
                    continue
                unit = session.advance(item)
                if session.state == "starting":
                    session.state = "playing"
                if viewer is not None:
                    viewer.offer(unit)
        finally:
            self._ended(session)

    def _ended(self, session: PlaybackSession) -> None:
        stream = session.stream
        if session.state != "ended":
            reason = ""
            if stream is not None:
                reason = stream.end_reason or stream.last_error
            session.end_reason = reason
            session.error = "" if session.units else (reason or "the device sent nothing")
            session.state = "ended"
            session.ended_at = time.monotonic()
        if session.viewer is not None:
            session.viewer.close()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(JANITOR_S)
            await self.sweep()

    async def sweep(self) -> None:
        """Close sessions nobody watches; forget ended ones after a while."""
        now = time.monotonic()
        for session in list(self.sessions.values()):
            idle = session.idle_since is not None and now - session.idle_since > IDLE_S
            gone = session.ended_at is not None and now - session.ended_at > ENDED_KEEP_S
            if idle or gone:
                await self.close(session.id)


def create_playback_sessions(services: Services) -> PlaybackSessions:
    """Component factory for ``vms.components`` (after the media hub)."""
    return PlaybackSessions(services)
