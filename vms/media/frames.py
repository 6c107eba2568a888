"""What flows out of the stream hub: H.264/H.265 access units, never decoded.

Recorder, live viewers and the analyzer sampler each hold a
:class:`Subscription`: a bounded queue that, when its consumer falls behind,
drops frames up to the next keyframe instead of blocking the hub or growing.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass


class Codec(enum.StrEnum):
    h264 = "h264"
    h265 = "h265"


@dataclass(frozen=True, slots=True)
class AccessUnit:
    """One video frame as Annex-B NAL units (start codes included).

    ``pts`` is on the 90 kHz clock of the RTP/PES timestamps, unwrapped to be
    monotonic per stream.  Keyframes carry their parameter sets (SPS/PPS[/VPS])
    in ``data`` so a consumer can start at any keyframe.
    """

    channel_id: str
    pts: int
    keyframe: bool
    data: bytes
    codec: Codec = Codec.h264
    wallclock: float = 0.0  # time.time() when the frame was assembled

    @property
    def pts_s(self) -> float:
        return self.pts / 90000.0


@dataclass(frozen=True, slots=True)
class Gap:
    """Marks a discontinuity: frames were lost or dropped before the next unit."""

    channel_id: str
    reason: str  # "slow-consumer", "packet-loss", "stream-lost", "restarted"
    wallclock: float = 0.0


Item = AccessUnit | Gap


class Subscription:
    """A consumer's bounded view of one channel's stream.

    ``offer`` is called by the hub (never blocks); the consumer reads with
    ``await get()`` or ``async for``.  On overflow the queue is emptied and
    frames are skipped until the next keyframe, with one :class:`Gap` marking it.
    A new subscription also starts at a keyframe.
    """

    def __init__(
        self,
        channel_id: str,
        name: str,
        maxlen: int = 256,
        on_close: Callable[[Subscription], None] | None = None,
    ) -> None:
        self.channel_id = channel_id
        self.name = name
        self.maxlen = maxlen
        self.dropped = 0
        self.delivered = 0
        self.closed = False
        self._queue: deque[Item] = deque()
        self._ready = asyncio.Event()
        self._wait_keyframe = True
        self._on_close = on_close

    def offer(self, item: Item) -> None:
        if self.closed:
            return
        if isinstance(item, Gap):
            self._wait_keyframe = True
            self._push(item)
            return
        if self._wait_keyframe:
            if not item.keyframe:
                self.dropped += 1
                return
            self._wait_keyframe = False
        if len(self._queue) >= self.maxlen:
            self.dropped += len(self._queue) + 1
            self._queue.clear()
            self._wait_keyframe = not item.keyframe
            self._push(Gap(item.channel_id, "slow-consumer", item.wallclock))
            if item.keyframe:
                self._push(item)
            return
        self._push(item)

    def _push(self, item: Item) -> None:
        self._queue.append(item)
        self._ready.set()

    def pending(self) -> int:
        return len(self._queue)

    async def get(self) -> Item:
        """The next unit or gap; raises ``StopAsyncIteration`` once closed and drained."""
        while not self._queue:
            if self.closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        self.delivered += 1
        return self._queue.popleft()

    def __aiter__(self) -> AsyncIterator[Item]:
        return self

    async def __anext__(self) -> Item:
        return await self.get()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._ready.set()
        if self._on_close is not None:
            self._on_close(self)
