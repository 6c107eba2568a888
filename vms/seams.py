"""The seams between the node's parts, as small Protocols.

What one part needs of another, written down: the media source a recorder, a live viewer or
the analyzers read (the stream hub in one process), the sink analysis results go to (the
alarm service, or the message bus on an analyzer host), the uplink's wake.  A role that runs
only some parts will fill the others' slots with implementations that cross the network
(issue 14), and the parts will not notice.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from analyzers.config import AnalysisConfig
from analyzers.events import AlarmEvent
from analyzers.frame_source import FrameSource
from sip.channel_ref import ChannelRef

if TYPE_CHECKING:
    from vms.alarms.service import Outcome
    from vms.media.frames import Subscription
    from vms.media.stream import Stream, StreamKey


class MediaSource(FrameSource, Protocol):
    """Camera streams: live (pulled on demand, one pull per camera) and NVR playback."""

    def subscribe(
        self, channel: ChannelRef, name: str, maxlen: int = 256, *, audio: bool = False
    ) -> Subscription: ...

    def open_playback(
        self,
        channel: ChannelRef,
        start: datetime,
        end: datetime,
        name: str = "playback",
        maxlen: int = 1024,
        *,
        mode: Any = ...,
        download_speed: int = 1,
        audio: bool = False,
    ) -> tuple[StreamKey, Subscription]: ...

    def playback_stream(self, key: StreamKey) -> Stream | None: ...

    async def control_playback(
        self,
        key: StreamKey,
        *,
        scale: float | None = None,
        seek_s: float | None = None,
        pause: bool | None = None,
    ) -> None: ...

    def channels(self) -> list[ChannelRef]: ...

    def stats(self, channel: ChannelRef) -> dict[str, Any] | None: ...

    def request_keyframe(self, channel: ChannelRef) -> bool: ...


class AlarmSink(Protocol):
    """Takes an analyzer's alarm or clear; returns once it is durably taken (stored, or
    acknowledged by the bus), so a caller may count it as not lost."""

    async def handle(self, event: AlarmEvent) -> Outcome | None:
        """The alarm service's :class:`Outcome`; None when another node stores it."""
        ...


class AnalysisControl(Protocol):
    """Applies a camera's changed analysis config, wherever the camera is analysed."""

    async def apply(self, cid: ChannelRef, profile: str, config: AnalysisConfig) -> None: ...


class UplinkWake(Protocol):
    """Tells the uplink sender that the outbox has new rows (from any thread)."""

    def wake_threadsafe(self) -> None: ...


class Placement(Protocol):
    """Which cameras a clustered node holds, by lease kind ("media", "analysis"); a node
    with no placement (role "all") holds every camera."""

    def holds(self, kind: str, channel: ChannelRef) -> bool: ...

    def held(self, kind: str) -> set[ChannelRef]: ...
