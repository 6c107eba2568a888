"""What flows out of the stream hub: H.264/H.265 access units and the camera's audio,
never decoded.

Recorder, live viewers and the analyzer sampler each hold a
:class:`Subscription`: a bounded queue that, when its consumer falls behind,
drops frames up to the next keyframe instead of blocking the hub or growing.
Audio reaches only the subscriptions that ask for it (``audio=True``), so a
video-only consumer never sees an :class:`AudioUnit`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable

from rtp.units import AccessUnit, AudioCodec, AudioUnit, Codec, Gap

__all__ = ["AccessUnit", "AudioCodec", "AudioUnit", "Codec", "Gap", "Item", "Subscription"]


Item = AccessUnit | Gap | AudioUnit
AUDIO_ALLOWANCE = 4  # a mixed subscription holds at most maxlen × this many items in all


class Subscription:
    """A consumer's bounded view of one channel's stream.

    ``offer`` is called by the hub (never blocks); the consumer reads with
    ``await get()`` or ``async for``.  On overflow the queue is emptied and
    frames are skipped until the next keyframe, with one :class:`Gap` marking it.
    A new subscription also starts at a keyframe.

    ``audio=True`` adds the camera's audio units; ``maxlen`` still counts video frames
    only (audio never makes a recorder drop video), the whole queue is bounded by
    ``maxlen × AUDIO_ALLOWANCE``, and audio waits for the first keyframe like video so a
    recording or a viewer starts with both.  ``video=False`` (with ``audio=True``) is an
    audio-only view: no keyframe wait, at most ``maxlen`` units, the oldest half dropped
    on overflow.
    """

    def __init__(
        self,
        channel_id: str,
        name: str,
        maxlen: int = 256,
        on_close: Callable[[Subscription], None] | None = None,
        *,
        audio: bool = False,
        video: bool = True,
    ) -> None:
        self.channel_id = channel_id
        self.name = name
        self.maxlen = maxlen
        self.audio = audio
        self.video = video
        self.dropped = 0
        self.dropped_audio = 0
        self.delivered = 0
        self.closed = False
        self._queue: deque[Item] = deque()
        self._audio_queued = 0
        self._ready = asyncio.Event()
        self._wait_keyframe = video
        self._on_close = on_close

    def offer(self, item: Item) -> None:
        if self.closed:
            return
        if item.__class__ is AudioUnit:
            self._offer_audio(item)  # type: ignore[arg-type]
            return
        if not self.video:
            if isinstance(item, Gap):
                self._push(item)
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
        queued = len(self._queue)
        if queued - self._audio_queued >= self.maxlen or queued >= self.maxlen * AUDIO_ALLOWANCE:
            self.dropped += queued - self._audio_queued + 1
            self.dropped_audio += self._audio_queued
            self._queue.clear()
            self._audio_queued = 0
            self._wait_keyframe = not item.keyframe
            self._push(Gap(item.channel_id, "slow-consumer", item.wallclock))
            if item.keyframe:
                self._push(item)
            return
        self._push(item)

    def _offer_audio(self, unit: AudioUnit) -> None:
        if not self.audio:
            return
        if self.video:
            if self._wait_keyframe or len(self._queue) >= self.maxlen * AUDIO_ALLOWANCE:
                self.dropped_audio += 1  # before the first keyframe, or while video overflows
                return
        elif len(self._queue) >= self.maxlen:
            for _ in range(self.maxlen // 2):  # an audio-only consumer fell behind: drop the oldest
                if self._queue.popleft().__class__ is AudioUnit:
                    self._audio_queued -= 1
                    self.dropped_audio += 1
            self._queue.appendleft(Gap(unit.channel_id, "slow-consumer", unit.wallclock))
        self._audio_queued += 1
        self._push(unit)

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
        item = self._queue.popleft()
        if item.__class__ is AudioUnit:
            self._audio_queued -= 1
        return item

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
