"""MANSRTSP (GB/T 28181 Annex B): the RTSP-like bodies of in-dialog INFO that steer a playback.

``PLAY`` with ``Range: npt=<s>-`` seeks (seconds from the playback's start), with ``Scale``
changes the speed, with neither resumes; ``PAUSE`` pauses; ``TEARDOWN`` ends.  Parsing is
what a media sender needs (the cascade answering its superior); building is what a
platform sends.  No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

CONTENT_TYPE = "Application/MANSRTSP"
METHODS = ("PLAY", "PAUSE", "TEARDOWN")
MAX_BODY = 4096
MIN_SCALE, MAX_SCALE = 0.0625, 64.0  # what any device could play; 0.25–8 is usual


class MansrtspError(ValueError):
    """A body that is not a MANSRTSP command we can apply; the message says why."""


@dataclass(frozen=True)
class RtspCommand:
    method: str  # PLAY / PAUSE / TEARDOWN
    cseq: int = 0
    scale: float | None = None  # PLAY: the new speed (1 = real time)
    range_start: float | None = None  # PLAY: seek to npt seconds; None = where it is ("now")

    @property
    def is_resume(self) -> bool:
        """A bare ``PLAY``: carry on after a pause."""
        return self.method == "PLAY" and self.scale is None and self.range_start is None


def _npt_start(value: str) -> float | None:
    """``npt=120-`` → 120.0, ``npt=now-`` → None."""
    text = value.strip()
    if not text.lower().startswith("npt="):
        raise MansrtspError(f"unsupported Range {value[:40]!r}: only npt")
    start = text[4:].split("-", 1)[0].strip()
    if start.lower() in ("", "now"):
        return None
    try:
        seconds = float(start)
    except ValueError:
        raise MansrtspError(f"bad npt start {start[:20]!r}") from None
    if not 0 <= seconds < 10**7:
        raise MansrtspError(f"npt start {seconds:g} out of range")
    return seconds


def parse(body: bytes | str) -> RtspCommand:
    """The command in an INFO body (``PLAY RTSP/1.0`` + headers)."""
    if isinstance(body, bytes):
        if len(body) > MAX_BODY:
            raise MansrtspError("body too large")
        body = body.decode("utf-8", "replace")
    lines = [ln.strip() for ln in body.replace("\r\n", "\n").split("\n") if ln.strip()]
    if not lines:
        raise MansrtspError("empty body")
    parts = lines[0].split()
    if len(parts) != 2 or not parts[1].upper().startswith("RTSP/"):
        raise MansrtspError(f"bad request line {lines[0][:40]!r}")
    method = parts[0].upper()
    if method not in METHODS:
        raise MansrtspError(f"unsupported method {method[:16]!r}")
    cseq = 0
    scale: float | None = None
    range_start: float | None = None
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise MansrtspError(f"bad header line {line[:40]!r}")
        key = name.strip().lower()
        if key == "cseq":
            if not value.strip().isdigit():
                raise MansrtspError(f"bad CSeq {value.strip()[:12]!r}")
            cseq = int(value)
        elif key == "scale" and method == "PLAY":
            try:
                scale = float(value)
            except ValueError:
                raise MansrtspError(f"bad Scale {value.strip()[:12]!r}") from None
            if not MIN_SCALE <= abs(scale) <= MAX_SCALE:
                raise MansrtspError(f"Scale {scale:g} out of range")
        elif key == "range" and method == "PLAY":
            range_start = _npt_start(value)
    return RtspCommand(method, cseq, scale, range_start)


def build(
    method: str, cseq: int, *, scale: float | None = None, range_start: float | None = None
) -> bytes:
    """An INFO body; ``PAUSE`` carries ``PauseTime: now``, a bare ``PLAY`` ``Range: npt=now-``."""
    lines = [f"{method} RTSP/1.0", f"CSeq: {cseq}"]
    if method == "PAUSE":
        lines.append("PauseTime: now")
    elif method == "PLAY":
        if scale is not None:
            lines.append(f"Scale: {scale:.6f}")
        if range_start is not None:
            lines.append(f"Range: npt={max(0.0, range_start):g}-")
        elif scale is None:
            lines.append("Range: npt=now-")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
