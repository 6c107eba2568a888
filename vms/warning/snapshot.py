"""One picture from a camera's live stream: the next keyframe, decoded and JPEG-encoded.

The stream hub pulls the camera on demand (an INVITE when nobody watches it yet); a new
subscription starts at a keyframe, and the device is asked for one at once (``IFameCmd``)
so the wait is short even mid-GOP.  Decoding runs in a worker thread, never on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import av

from sip.channel_ref import ChannelRef
from vms.alarms.images import encode_jpeg
from vms.media.frames import AccessUnit, Codec

SUBSCRIPTION_FRAMES = 16


class SnapshotError(Exception):
    """No picture from this camera; the message says why (it goes into the history)."""


async def grab_keyframe(hub: Any, channel: ChannelRef, timeout_s: float) -> AccessUnit:
    """The next keyframe of a camera from the hub, within ``timeout_s``."""
    if hub is None:
        raise SnapshotError("no media hub on this node")
    sub = hub.subscribe(channel, "warning-snapshot", maxlen=SUBSCRIPTION_FRAMES)
    try:
        with contextlib.suppress(Exception):  # best effort: only shortens the wait
            hub.request_keyframe(channel)
        async with asyncio.timeout(timeout_s):
            while True:
                item = await sub.get()
                if isinstance(item, AccessUnit) and item.keyframe:
                    return item
    except TimeoutError:
        raise SnapshotError(f"no keyframe within {timeout_s:g} s") from None
    except StopAsyncIteration:
        raise SnapshotError("the stream closed before a keyframe came") from None
    finally:
        sub.close()


def keyframe_jpeg(unit: AccessUnit) -> bytes:
    """Decode one keyframe (it carries its parameter sets) to a JPEG (blocking: run in a thread)."""
    ctx = av.CodecContext.create("hevc" if unit.codec is Codec.h265 else "h264", "r")
    try:
        frames = list(ctx.decode(av.Packet(unit.data)))
        frames += list(ctx.decode(None))
    except av.error.FFmpegError as exc:
        raise SnapshotError(f"the keyframe does not decode: {exc}") from None
    if not frames:
        raise SnapshotError("the keyframe gave no picture")
    return encode_jpeg(frames[0].to_ndarray(format="bgr24"))
