"""The offer of a Play / Playback / Download INVITE (§4 of the spec notes), no I/O.

Every path that INVITEs a device (the hub's live pulls and re-INVITEs, NVR playback for the
recorder and the API, downloads) goes through :func:`offer_sdp`, so the lines a device sees are
decided here once: ``s=`` from the mode, ``u=<channel>:0`` and ``t=<start> <end>`` for history,
``a=downloadspeed`` for a download, and an SSRC whose first digit says live (0) or history (1).
An offer that breaks those rules is refused before anything is sent.
"""

from __future__ import annotations

from datetime import UTC, datetime

from . import sdp as sdplib
from .media_api import MediaOffer, MediaTransport, PlayError, PlayMode, PlayRequest

# What the node can take, and nothing else: MPEG-PS (96), raw H.264 (98), raw H.265 (100, as
# GB/T 28181-2022 C.2.5 numbers it).  MPEG-4 (97) and SVAC (99 in the 2016 table) are not
# demuxed, so they are not offered.  PS first, right after a=recvonly: a Dahua 403 went away
# that way (WVP #28).  The receiver follows whichever the device answers (vms.media.payload).
RTPMAP = {"96": "PS/90000", "98": "H264/90000", "100": "H265/90000"}
SSRC_DIGITS = 10


def ssrc_head(mode: PlayMode) -> str:
    """First SSRC digit: ``0`` live, ``1`` history (playback and download)."""
    return "0" if mode is PlayMode.live else "1"


def unix_seconds(at: datetime) -> int:
    """``t=`` value; a naive time is UTC (as the API reads it), never the host's zone."""
    return int((at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp())


def check(request: PlayRequest, offer: MediaOffer) -> None:
    """Refuse (PlayError 400) an offer a device would misread as another kind of stream."""
    mode = request.mode
    ssrc = offer.ssrc
    if len(ssrc) != SSRC_DIGITS or not ssrc.isdigit():
        raise PlayError(f"SSRC {ssrc!r} is not {SSRC_DIGITS} decimal digits", 400)
    if int(ssrc) > 0xFFFFFFFF:
        raise PlayError(f"SSRC {ssrc!r} does not fit in 32 bits", 400)
    if ssrc[0] != ssrc_head(mode):
        kind = "live" if mode is PlayMode.live else "history"
        raise PlayError(
            f"{mode.value} needs a {kind} SSRC starting with {ssrc_head(mode)}, got {ssrc}", 400
        )
    if not 0 < offer.port < 65536:
        raise PlayError(f"receive port {offer.port} out of range", 400)
    if mode is PlayMode.live:
        return
    if request.start is None or request.end is None:
        raise PlayError(f"{mode.value} needs a start and an end", 400)
    if unix_seconds(request.end) <= unix_seconds(request.start):
        raise PlayError(f"{mode.value} range must end after it starts", 400)
    if mode is PlayMode.download and request.download_speed < 1:
        raise PlayError(f"download speed {request.download_speed} must be 1 or more", 400)


def offer_sdp(request: PlayRequest, offer: MediaOffer) -> sdplib.Sdp:
    """The SDP of the INVITE for ``request``, receiving at ``offer`` (raises PlayError 400)."""
    check(request, offer)
    tcp = offer.transport is not MediaTransport.udp
    sdp = sdplib.Sdp(
        session_name=request.mode.value,
        origin_user=request.channel_id,
        ip=offer.ip,
        port=offer.port,
        proto="TCP/RTP/AVP" if tcp else "RTP/AVP",
        payloads=list(RTPMAP),
        rtpmap=dict(RTPMAP),
        direction="recvonly",
        ssrc=offer.ssrc,
    )
    if tcp:
        sdp.setup = "passive" if offer.transport is MediaTransport.tcp_passive else "active"
        sdp.connection = "new"
    if request.mode is not PlayMode.live and request.start and request.end:  # check() made sure
        sdp.uri = f"{request.channel_id}:0"
        sdp.start, sdp.end = unix_seconds(request.start), unix_seconds(request.end)
    if request.mode is PlayMode.download:
        sdp.download_speed = request.download_speed
    if request.stream_number:
        sdp.extra.append(f"streamnumber:{request.stream_number}")
    return sdp


def subject(request: PlayRequest, offer: MediaOffer, server_id: str) -> str:
    """``Subject: <media sender id>:<ssrc>,<media receiver id>:0``."""
    return f"{request.channel_id}:{offer.ssrc},{server_id}:0"
