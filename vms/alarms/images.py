"""Alarm pictures: accept JPG/PNG/BMP, keep them under 4 MB, never lose a record to a bad one.

Policy for a picture that is missing, in another format or corrupt (does not decode): the
alarm is still committed, with the raw frame if that one is good, otherwise with a
generated grey placeholder JPEG saying "image unavailable"; the reason is kept in
``Alarm.detail["image_error"]``.  The uplink needs a picture on every Table 4 record
(``ALARM_IMAGE`` is mandatory), so a placeholder is posted rather than nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import cv2
import numpy as np

# spec/alarms.md Table 4: ALARM_IMAGE "max 4MB", read as the strictest receiver would:
# 4,000,000 bytes (uplink.image_max_bytes changes it)
MAX_IMAGE_BYTES = 4_000_000
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BMP_MAGIC = b"BM"


class ImageError(ValueError):
    """The picture cannot be used as is; the message says why."""


@dataclass(frozen=True)
class PreparedImage:
    data: bytes  # JPEG bytes, <= the max_bytes asked for (MAX_IMAGE_BYTES by default)
    error: str  # "" when the given picture was used


def sniff_format(data: bytes) -> str:
    """``jpeg``, ``png``, ``bmp`` or ``""`` from the magic bytes."""
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(BMP_MAGIC) and len(data) > 26:
        return "bmp"
    return ""


def decode(data: bytes, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """Decode (BGR by default) or raise :class:`ImageError`."""
    fmt = sniff_format(data)
    if not fmt:
        raise ImageError("unsupported image format (only JPG, PNG, BMP are accepted)")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if img is None or img.size == 0:
        raise ImageError(f"corrupt {fmt} image ({len(data)} bytes do not decode)")
    return img


def encode_jpeg(img: np.ndarray, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """JPEG-encode, lowering quality and then size until the result fits ``max_bytes``."""
    scale = 1.0
    while True:
        work = img
        if scale < 1.0:
            h, w = img.shape[:2]
            size = (max(1, int(w * scale)), max(1, int(h * scale)))
            work = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        for quality in (90, 75, 60, 45):
            ok, buf = cv2.imencode(".jpg", work, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok and buf.nbytes <= max_bytes:
                return buf.tobytes()
        scale *= 0.7


def normalise(data: bytes, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """A JPEG of at most ``max_bytes`` from JPG/PNG/BMP input; raise :class:`ImageError`."""
    if sniff_format(data) == "jpeg" and len(data) <= max_bytes:
        # already what the receiver wants: keep the analyzer's bytes; a 1/8-scale decode
        # still reads the whole entropy-coded stream, at a quarter of the cost
        decode(data, cv2.IMREAD_REDUCED_GRAYSCALE_8)
        return data
    return encode_jpeg(decode(data), max_bytes)


def placeholder(reason: str, at: datetime | None = None, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """A small grey JPEG that says the picture is unavailable and why."""
    img = np.full((360, 640, 3), 96, np.uint8)
    lines = ["IMAGE UNAVAILABLE", reason[:60]]
    if at is not None:
        lines.append(at.isoformat(timespec="seconds"))
    for i, text in enumerate(lines):
        cv2.putText(img, text, (20, 80 + 60 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
    return encode_jpeg(img, max_bytes)


def prepare(
    snapshot: bytes,
    raw: bytes = b"",
    at: datetime | None = None,
    max_bytes: int = MAX_IMAGE_BYTES,
) -> PreparedImage:
    """The picture to store for one alarm record (see the module policy)."""
    if not snapshot:
        error = "no snapshot given"
    else:
        try:
            return PreparedImage(normalise(snapshot, max_bytes), "")
        except ImageError as exc:
            error = str(exc)
    if raw:
        try:
            used = normalise(raw, max_bytes)
            return PreparedImage(used, f"snapshot unusable ({error}); raw frame used")
        except ImageError:
            pass
    return PreparedImage(placeholder(error, at, max_bytes), error)


def image_key(at: datetime, alarm_id: str, status: int) -> str:
    """Stable object key: ``alarms/{yyyy}/{mm}/{dd}/{alarm_id}-{status}.jpg`` (UTC date)."""
    return f"alarms/{at:%Y/%m/%d}/{alarm_id}-{status}.jpg"
