"""Where the analyzer pool gets its frames: the seam between analysis and media.

In a single node the stream hub is the source (``vms.media.hub.StreamHub.subscribe``); on an
analyzer host it is the message bus carrying the media nodes' keyframes
(``vms.cluster.frames``).  The pool needs only this much of either.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from rtp.units import AccessUnit, AudioUnit, Gap
from sip.channel_ref import ChannelRef


class FrameSubscription(Protocol):
    """One camera's frames in order; a :class:`Gap` marks frames that never arrived."""

    def __aiter__(self) -> AsyncIterator[AccessUnit | Gap | AudioUnit]: ...

    def close(self) -> None: ...


class FrameSource(Protocol):
    def subscribe(self, channel: ChannelRef, name: str) -> FrameSubscription: ...
