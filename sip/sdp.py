"""The SDP subset GB/T 28181 uses for INVITE (§4 of the spec notes), no I/O.

``y=`` (SSRC) and ``f=`` (media format) are GB additions that generic SDP parsers
reject; they are lifted out before the standard lines are read.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class SdpError(ValueError):
    """An SDP body we cannot use."""


@dataclass
class Sdp:
    session_name: str = "Play"  # Play / Playback / Download / Talk
    origin_user: str = ""
    ip: str = ""
    port: int = 0
    proto: str = "RTP/AVP"  # or TCP/RTP/AVP
    payloads: list[str] = field(default_factory=lambda: ["96"])
    rtpmap: dict[str, str] = field(default_factory=lambda: {"96": "PS/90000"})
    direction: str = "recvonly"
    setup: str | None = None  # passive / active (TCP media)
    connection: str | None = None  # a=connection:new
    start: int = 0
    end: int = 0
    uri: str | None = None  # u=<channel>:0
    ssrc: str | None = None  # y=
    fmt: str | None = None  # f=
    download_speed: int | None = None
    file_size: int | None = None
    extra: list[str] = field(default_factory=list)

    @property
    def tcp(self) -> bool:
        return self.proto.upper().startswith("TCP")

    def serialise(self) -> bytes:
        lines = [
            "v=0",
            f"o={self.origin_user} 0 0 IN IP4 {self.ip}",
            f"s={self.session_name}",
        ]
        if self.uri:
            lines.append(f"u={self.uri}")
        lines += [f"c=IN IP4 {self.ip}", f"t={self.start} {self.end}"]
        lines.append(f"m=video {self.port} {self.proto} {' '.join(self.payloads)}")
        lines.append(f"a={self.direction}")
        for pt in self.payloads:
            if pt in self.rtpmap:
                lines.append(f"a=rtpmap:{pt} {self.rtpmap[pt]}")
        if self.setup:
            lines.append(f"a=setup:{self.setup}")
            lines.append(f"a=connection:{self.connection or 'new'}")
        if self.download_speed:
            lines.append(f"a=downloadspeed:{self.download_speed}")
        if self.file_size is not None:
            lines.append(f"a=filesize:{self.file_size}")
        lines += [f"a={x}" for x in self.extra]
        if self.ssrc:
            lines.append(f"y={self.ssrc}")
        if self.fmt is not None:
            lines.append(f"f={self.fmt}")
        return ("\r\n".join(lines) + "\r\n").encode("ascii")


def payload_types(sdp: Sdp) -> dict[int, str]:
    """``a=rtpmap`` as payload type → upper-case encoding name (``98 H264/90000`` → H264)."""
    out: dict[int, str] = {}
    for pt, enc in sdp.rtpmap.items():
        name = enc.split("/", 1)[0].strip().upper()
        if pt.isdigit() and int(pt) < 128 and name:
            out[int(pt)] = name
    return out


def parse(body: bytes | str) -> Sdp:
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    sdp = Sdp(rtpmap={}, payloads=[], direction="sendrecv")
    seen_m = False
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        key, value = line[0], line[2:].strip()
        if key == "y":
            sdp.ssrc = value or None
        elif key == "f":
            sdp.fmt = value
        elif key == "s":
            sdp.session_name = value
        elif key == "o":
            parts = value.split()
            sdp.origin_user = parts[0] if parts else ""
            if len(parts) >= 6 and not sdp.ip:
                sdp.ip = parts[5]
        elif key == "c":
            parts = value.split()
            if len(parts) != 3:
                raise SdpError(f"bad c= line {value!r}")
            sdp.ip = parts[2].split("/")[0]
        elif key == "u":
            sdp.uri = value
        elif key == "t":
            parts = value.split()
            if len(parts) == 2 and all(p.isdigit() for p in parts):
                sdp.start, sdp.end = int(parts[0]), int(parts[1])
        elif key == "m":
            if seen_m:
                continue  # only the first (video) media section matters
            parts = value.split()
            if len(parts) < 4 or parts[0] != "video" or not parts[1].isdigit():
                raise SdpError(f"bad m= line {value!r}")
            sdp.port = int(parts[1])
            if sdp.port > 65535:
                raise SdpError("port out of range")
            sdp.proto = parts[2]
            sdp.payloads = parts[3:]
            seen_m = True
        elif key == "a":
            name, _, arg = value.partition(":")
            if name in ("recvonly", "sendonly", "sendrecv", "inactive"):
                sdp.direction = name
            elif name == "rtpmap":
                pt, _, enc = arg.partition(" ")
                sdp.rtpmap[pt] = enc
            elif name == "setup":
                sdp.setup = arg.strip()
            elif name == "connection":
                sdp.connection = arg.strip()
            elif name == "downloadspeed" and arg.strip().isdigit():
                sdp.download_speed = int(arg)
            elif name == "filesize" and arg.strip().isdigit():
                sdp.file_size = int(arg)
            else:
                sdp.extra.append(value)
    if not seen_m:
        raise SdpError("no m=video line")
    if not sdp.ip:
        raise SdpError("no connection address")
    return sdp


def sendonly_answer(offer: Sdp, user: str, ip: str, port: int, rtpmap: dict[str, str]) -> Sdp:
    """The ``sendonly`` SDP answer of a media sender to a platform's ``recvonly`` offer.

    Over TCP it takes the other end of the offer's ``a=setup``: the platform ``passive``
    (it listens) → we are ``active`` and connect to it; the platform ``active`` → we listen.
    """
    answer = Sdp(
        session_name=offer.session_name,
        origin_user=user,
        ip=ip,
        port=port,
        proto=offer.proto,
        payloads=list(rtpmap),
        rtpmap=dict(rtpmap),
        direction="sendonly",
        ssrc=offer.ssrc,
        fmt="",
    )
    if offer.tcp:
        answer.setup = "active" if (offer.setup or "passive") == "passive" else "passive"
        answer.connection = "new"
    return answer
