"""The audio half of a live view: which codecs to answer with, and the track that sends them.

A WebRTC sender keeps one codec, and we never re-encode, so what it sends must be the
camera's own G.711 variant.  When the hub already knows it (the stream runs), the answer
names exactly that codec.  When it does not (this viewer starts the pull), the answer names
both PCMA and PCMU and the track picks the one the first audio unit has, before the sender
builds its packetizer: the signalling never waits for the camera.  A camera with AAC (no
WebRTC payload format) or without audio gets an inactive audio section.
"""

from __future__ import annotations

from typing import Any

from aiortc import RTCPeerConnection, RTCRtpSender

from sip.channel_ref import ChannelRef
from vms.media.frames import AudioCodec

from .audio_track import MIME, PassthroughAudioTrack
from .relay import RelayPool

NO_AUDIO_AFTER_FRAMES = 10  # video frames of a running stream without any audio: none comes
UNKNOWN = "unknown"


def offers_audio(offer_sdp: str) -> bool:
    return "m=audio" in offer_sdp


def camera_audio(media: Any, channel: ChannelRef) -> AudioCodec | str | None:
    """What the hub knows of the camera's audio now: its codec, None (it has none), or
    ``UNKNOWN`` (the stream is not running yet)."""
    stats = getattr(media, "stats", None)
    info = stats(channel) if callable(stats) else None
    if not isinstance(info, dict):
        return UNKNOWN
    codec = info.get("audio_codec")
    if codec:
        return AudioCodec(codec)
    if int(info.get("frames") or 0) >= NO_AUDIO_AFTER_FRAMES:
        return None
    return UNKNOWN


def g711_preferences(codecs: list[AudioCodec]) -> list[Any]:
    """aiortc's capabilities for these G.711 variants, in that order."""
    caps = RTCRtpSender.getCapabilities("audio").codecs
    return [c for codec in codecs for c in caps if c.mimeType.lower() == MIME[codec].lower()]


def add_audio(
    pc: RTCPeerConnection,
    relays: RelayPool,
    channel: ChannelRef,
    name: str,
    known: AudioCodec | str | None,
) -> PassthroughAudioTrack | None:
    """The audio track of a G.711 (or not yet known) camera on ``pc``; None when the camera
    has no audio we can send."""
    if known is None or (known != UNKNOWN and known not in MIME):
        return None
    codec = known if known in MIME else None
    subscription = relays.attach(channel, name, audio=True, video=False)
    track = PassthroughAudioTrack(subscription, codec)  # type: ignore[arg-type]
    sender = pc.addTrack(track)
    transceiver = next(t for t in pc.getTransceivers() if t.sender is sender)
    wanted = [codec] if codec is not None else [AudioCodec.pcma, AudioCodec.pcmu]
    transceiver.setCodecPreferences(g711_preferences(wanted))  # type: ignore[arg-type]
    send = sender.send

    async def send_with_choice(parameters: Any) -> None:
        track.negotiated = parameters.codecs  # the track names the one to use at its first unit
        await send(parameters)

    sender.send = send_with_choice  # type: ignore[method-assign]
    return track
