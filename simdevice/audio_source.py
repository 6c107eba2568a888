"""Audio for the simulated NVR: a generated tone as G.711A, G.711U or AAC (ADTS), looped.

The NVR sends an audio frame in its own PS pack next to the video of the same time, as
recorders do; G.711 in 40 ms frames (320 bytes), AAC one ADTS frame (1024 samples) each.
Encoding happens once per process (cached), with FFmpeg's own encoders.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass

import av
import numpy as np

from rtp.ps_mux import STREAM_TYPE_AAC, STREAM_TYPE_G711A, STREAM_TYPE_G711U

CLOCK_RATE = 90_000
CODECS = ("pcma", "pcmu", "aac")
STREAM_TYPES = {"pcma": STREAM_TYPE_G711A, "pcmu": STREAM_TYPE_G711U, "aac": STREAM_TYPE_AAC}
G711_FRAME = 320  # samples (40 ms at 8 kHz), a common NVR packing
AAC_FRAME = 1024
AAC_RATE = 16000


@dataclass(frozen=True)
class AudioClip:
    codec: str  # pcma / pcmu / aac
    sample_rate: int
    samples_per_frame: int
    frames: tuple[bytes, ...]

    @property
    def stream_type(self) -> int:
        return STREAM_TYPES[self.codec]

    def frame_pts(self, k: int) -> int:
        """The 90 kHz PTS of the ``k``-th frame of the endless loop."""
        return k * self.samples_per_frame * CLOCK_RATE // self.sample_rate

    def frames_between(self, start: int, end: int) -> list[tuple[int, bytes]]:
        """(pts, bytes) of the frames starting in ``[start, end)`` (90 kHz, from the loop's 0)."""
        per = self.samples_per_frame * CLOCK_RATE
        first = -(-start * self.sample_rate // per)  # ceil
        out = []
        k = max(first, 0)
        while (pts := self.frame_pts(k)) < end:
            out.append((pts, self.frames[k % len(self.frames)]))
            k += 1
        return out


def tone(rate: int, seconds: float) -> np.ndarray:
    """A 440 Hz tone rising to 880 Hz and back, as float samples in [-0.5, 0.5]."""
    t = np.arange(int(rate * seconds)) / rate
    freq = 440 + 440 * np.abs(np.sin(np.pi * t / seconds))
    return (0.5 * np.sin(2 * np.pi * np.cumsum(freq) / rate)).astype(np.float32)


def _g711(codec: str, seconds: float) -> AudioClip:
    enc = av.CodecContext.create("pcm_alaw" if codec == "pcma" else "pcm_mulaw", "w")
    enc.sample_rate, enc.layout, enc.format = 8000, "mono", "s16"
    enc.open()
    pcm = (tone(8000, seconds) * 32767).astype(np.int16)
    frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
    frame.sample_rate, frame.pts = 8000, 0
    data = b"".join(bytes(p) for p in enc.encode(frame))
    frames = tuple(
        data[i : i + G711_FRAME] for i in range(0, len(data) - G711_FRAME + 1, G711_FRAME)
    )
    return AudioClip(codec, 8000, G711_FRAME, frames)


def _aac(seconds: float) -> AudioClip:
    buf = io.BytesIO()
    with av.open(buf, "w", format="adts") as out:
        stream = out.add_stream("aac", rate=AAC_RATE, layout="mono")
        samples = tone(AAC_RATE, seconds)
        for i in range(0, len(samples) - AAC_FRAME + 1, AAC_FRAME):
            frame = av.AudioFrame.from_ndarray(
                samples[None, i : i + AAC_FRAME], format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = AAC_RATE, i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    data = buf.getvalue()
    frames = []
    pos = 0
    while pos + 7 <= len(data):
        length = ((data[pos + 3] & 0x03) << 11) | (data[pos + 4] << 3) | (data[pos + 5] >> 5)
        frames.append(data[pos : pos + length])
        pos += length
    return AudioClip("aac", AAC_RATE, AAC_FRAME, tuple(frames))


@functools.lru_cache(maxsize=8)
def audio_clip(codec: str, seconds: float = 2.0) -> AudioClip:
    """The looped audio of a simulated camera in ``codec`` (pcma, pcmu or aac)."""
    if codec not in CODECS:
        raise ValueError(f"unknown audio codec {codec!r}: use one of {', '.join(CODECS)}")
    return _aac(seconds) if codec == "aac" else _g711(codec, seconds)
