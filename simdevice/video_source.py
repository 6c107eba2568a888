"""H.264 (or H.265) access units for the simulated NVR: from a file, or a generated test
pattern.

Encoding happens once per process (cached); the streamer loops the clip with
continuing timestamps, so a short clip serves an endless live stream.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

CLOCK_RATE = 90_000
X264_PARAMS = "repeat-headers=1:scenecut=0"
X265_PARAMS = "repeat-headers=1:scenecut=0:bframes=0:log-level=error"
ENCODERS = {"h264": "libx264", "h265": "libx265"}


@dataclass(frozen=True)
class Frame:
    data: bytes  # Annex-B; keyframes carry SPS/PPS
    keyframe: bool


@dataclass(frozen=True)
class Clip:
    frames: tuple[Frame, ...]
    fps: float
    codec: str = "h264"  # or "h265"

    @property
    def frame_ticks(self) -> int:
        return round(CLOCK_RATE / self.fps)


def _encoder(
    width: int, height: int, fps: int, gop: int, codec: str = "h264"
) -> av.VideoCodecContext:
    if codec not in ENCODERS:
        raise ValueError(f"unknown video codec {codec!r}: use h264 or h265")
    enc = av.CodecContext.create(ENCODERS[codec], "w")
    enc.width, enc.height = width, height
    enc.pix_fmt = "yuv420p"
    enc.time_base = Fraction(1, fps)
    enc.framerate = Fraction(fps, 1)
    enc.gop_size = gop
    params = f"keyint={gop}:min-keyint={gop}"
    if codec == "h265":
        enc.options = {"preset": "ultrafast", "x265-params": f"{X265_PARAMS}:{params}"}
    else:
        enc.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "x264-params": f"{X264_PARAMS}:{params}",
        }
    return enc


def _encode(frames: list[np.ndarray], fps: int, gop: int, codec: str = "h264") -> Clip:
    h, w = frames[0].shape[:2]
    enc = _encoder(w, h, fps, gop, codec)
    out: list[Frame] = []
    for i, img in enumerate(frames):
        vf = av.VideoFrame.from_ndarray(img, format="bgr24")
        vf.pts = i
        for pkt in enc.encode(vf):
            out.append(Frame(bytes(pkt), bool(pkt.is_keyframe)))
    for pkt in enc.encode(None):
        out.append(Frame(bytes(pkt), bool(pkt.is_keyframe)))
    return Clip(tuple(out), float(fps), codec)


@functools.lru_cache(maxsize=4)
def test_pattern(
    width: int = 640,
    height: int = 360,
    fps: int = 25,
    seconds: int = 2,
    gop: int = 25,
    codec: str = "h264",
) -> Clip:
    """Colour bars with a moving block and a frame counter stripe."""
    bars = np.zeros((height, width, 3), np.uint8)
    colours = [
        (255, 255, 255),
        (0, 255, 255),
        (255, 255, 0),
        (0, 255, 0),
        (255, 0, 255),
        (0, 0, 255),
        (255, 0, 0),
    ]
    step = width // len(colours)
    for i, c in enumerate(colours):
        bars[:, i * step : (i + 1) * step] = c
    frames = []
    n = fps * seconds
    for i in range(n):
        img = bars.copy()
        x = int((width - 60) * i / max(1, n - 1))
        img[height // 2 - 30 : height // 2 + 30, x : x + 60] = (32, 32, 32)
        img[height - 12 :, : int(width * (i + 1) / n)] = (0, 0, 0)
        frames.append(img)
    return _encode(frames, fps, gop, codec)


@functools.lru_cache(maxsize=4)
def load_clip(path: Path, max_seconds: float = 30.0, gop: int = 25, codec: str = "h264") -> Clip:
    """H.264 from a file as Annex-B units; any other codec (or ``codec="h265"``) is encoded
    once with libx264 / libx265."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 25)
        limit = int(max_seconds * fps)
        if stream.codec_context.name == "h264" and codec == "h264":
            extradata = stream.codec_context.extradata or b""
            out: list[Frame] = []
            if extradata[:1] == b"\x01":  # avcC (MP4/MKV): convert to Annex-B
                from av.bitstream import BitStreamFilterContext

                bsf = BitStreamFilterContext("h264_mp4toannexb", stream)
                packets = (p for pkt in container.demux(stream) for p in bsf.filter(pkt))
            else:
                packets = (p for p in container.demux(stream))
            for pkt in packets:
                if pkt.size == 0:
                    continue
                out.append(Frame(bytes(pkt), bool(pkt.is_keyframe)))
                if len(out) >= limit:
                    break
            while out and not out[0].keyframe:
                out.pop(0)
            if not out:
                raise ValueError(f"{path}: no H.264 keyframe found")
            return Clip(tuple(out), fps)
        images = []
        for frame in container.decode(stream):
            img = frame.to_ndarray(format="bgr24")
            images.append(img[: img.shape[0] // 2 * 2, : img.shape[1] // 2 * 2])
            if len(images) >= limit:
                break
    if not images:
        raise ValueError(f"{path}: no video frames")
    return _encode(images, round(fps), gop, codec)


def clip_for(path: Path | None, codec: str = "h264") -> Clip:
    return load_clip(Path(path), codec=codec) if path else test_pattern(codec=codec)
