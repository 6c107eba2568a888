"""One hub subscription per channel, shared by every live viewer of that channel.

The hub already fans out to its consumers; pulling once per channel here keeps
the hub's consumer count (and its statistics) at one "live" consumer however
many browsers watch, and lets the live service drop a viewer without touching
the hub.  Each viewer gets its own bounded :class:`Subscription`, so a slow
browser skips to the next keyframe without holding back the others.  A new viewer starts from
the channel's current GOP (the last keyframe and what followed, as ZLMediaKit's 秒开), not at the
next keyframe: those units go first, their timestamps pressed together so the browser shows the
keyframe at once and catches up to live within the burst.  With audio on,
the channel's one hub subscription takes the camera's audio too, and a viewer's
audio track reads its own audio-only subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import Any, Protocol

from sip.channel_ref import ChannelRef
from vms.logging import get_logger
from vms.media.frames import AccessUnit, AudioUnit, Gap, Subscription

log = get_logger("vms.live.relay")

GOP_BYTES = 4 * 1024 * 1024  # a longer GOP than this is not cached: viewers wait a keyframe


class Hub(Protocol):
    """The part of ``vms.media.hub.StreamHub`` the live view uses."""

    def subscribe(
        self, channel: ChannelRef, name: str, maxlen: int = 256, *, audio: bool = False
    ) -> Subscription: ...


class ChannelRelay:
    """Pulls one camera from the hub and copies each unit to its viewers."""

    def __init__(
        self, hub: Hub, channel: ChannelRef, viewer_maxlen: int, audio: bool = False
    ) -> None:
        self.channel = channel
        self.channel_id = channel.channel_id
        self.viewer_maxlen = viewer_maxlen
        self.viewers: set[Subscription] = set()
        self.units = 0
        self.gop: list[AccessUnit] = []  # the last keyframe and the units after it
        self._gop_bytes = 0
        self.gop_starts = 0  # viewers started from the cached GOP
        name = f"live:{channel}"
        if audio:
            self._source = hub.subscribe(channel, name, maxlen=viewer_maxlen, audio=True)
        else:
            self._source = hub.subscribe(channel, name, maxlen=viewer_maxlen)
        self._task = asyncio.create_task(self._pump(), name=f"live-relay-{channel}")

    def attach(self, name: str, *, audio: bool = False, video: bool = True) -> Subscription:
        """A new viewer queue; video starts at the channel's next keyframe (``video=False,
        audio=True``: the viewer's audio track)."""
        sub = Subscription(
            self.channel_id,
            name,
            self.viewer_maxlen,
            on_close=self._detach,
            audio=audio,
            video=video,
        )
        if video:
            self._start_from_gop(sub)
        self.viewers.add(sub)
        return sub

    def _start_from_gop(self, sub: Subscription) -> None:
        """Hand a new viewer the current GOP, its units 1 tick apart ending at the newest
        one's time: decoded at once, and the live units that follow keep their pace."""
        gop = self.gop[: max(self.viewer_maxlen // 2, 1)]
        if not gop or not gop[0].keyframe:
            return
        newest = gop[-1].pts
        for i, unit in enumerate(gop):
            sub.offer(dataclasses.replace(unit, pts=newest - (len(gop) - 1 - i)))
        self.gop_starts += 1

    def _remember(self, item: AccessUnit | Gap | Any) -> None:
        if isinstance(item, Gap):
            self.gop, self._gop_bytes = [], 0
        elif isinstance(item, AccessUnit):
            if item.keyframe:
                self.gop, self._gop_bytes = [], 0
            elif not self.gop:
                return  # no keyframe yet: nothing a viewer could start from
            self._gop_bytes += len(item.data)
            if self._gop_bytes > GOP_BYTES or len(self.gop) >= self.viewer_maxlen // 2:
                self.gop, self._gop_bytes = [], 0  # too long to hand over: next keyframe
                return
            self.gop.append(item)

    def _detach(self, sub: Subscription) -> None:
        self.viewers.discard(sub)

    @property
    def idle(self) -> bool:
        return not self.viewers

    async def _pump(self) -> None:
        try:
            async for item in self._source:
                if isinstance(item, AccessUnit):
                    self.units += 1
                if item.__class__ is not AudioUnit:
                    self._remember(item)
                for viewer in tuple(self.viewers):
                    viewer.offer(item)
        except asyncio.CancelledError:
            raise
        finally:
            # The source ended (hub stopped): end every viewer's stream too.
            for viewer in tuple(self.viewers):
                viewer.offer(Gap(self.channel_id, "stream-lost"))
                viewer.close()

    async def close(self) -> None:
        self._source.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def stats(self) -> dict[str, Any]:
        return {
            "device_id": self.channel.device_id,
            "channel_id": self.channel_id,
            "viewers": len(self.viewers),
            "units": self.units,
            "gop_cached": len(self.gop),
            "gop_starts": self.gop_starts,
            "dropped": sum(v.dropped for v in self.viewers),
        }


class RelayPool:
    """Creates a channel's relay on its first viewer and closes it after its last."""

    def __init__(self, hub_getter: Any, viewer_maxlen: int = 120, audio: bool = False) -> None:
        self._hub_getter = hub_getter
        self._viewer_maxlen = viewer_maxlen
        self._audio = audio
        self._relays: dict[ChannelRef, ChannelRelay] = {}

    def attach(
        self, channel: ChannelRef, name: str, *, audio: bool = False, video: bool = True
    ) -> Subscription:
        relay = self._relays.get(channel)
        if relay is None:
            hub = self._hub_getter()
            if hub is None:
                raise LookupError("the media hub is not running")
            relay = ChannelRelay(hub, channel, self._viewer_maxlen, self._audio)
            self._relays[channel] = relay
            log.info("live relay opened", channel=str(channel))
        return relay.attach(name, audio=audio, video=video)

    async def release_idle(self) -> None:
        """Close relays nobody watches any more (their hub subscription goes with them)."""
        for channel, relay in list(self._relays.items()):
            if relay.idle:
                del self._relays[channel]
                await relay.close()
                log.info("live relay closed", channel=str(channel))

    async def close(self) -> None:
        relays, self._relays = list(self._relays.values()), {}
        for relay in relays:
            await relay.close()

    def stats(self) -> list[dict[str, Any]]:
        return [r.stats() for r in self._relays.values()]
