"""Helpers for the audio tests: ffprobe of what was written, decoded samples, PS with audio."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path
from typing import Any

import av
import numpy as np

from .media_support import nvr_frame, pack_header, pes, psm, system_header


def ffprobe_streams(data: bytes, tmp: Path, suffix: str = ".ts") -> list[dict[str, Any]]:
    """ffprobe's (the ffmpeg binary's, not PyAV's) view of a file's streams."""
    path = tmp / f"probe{suffix}"
    path.write_bytes(data)
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout)["streams"]


def decoded_audio(data: bytes, fmt: str | None = None) -> tuple[np.ndarray, int]:
    """Every audio sample of a file decoded (mono float), and its sample rate."""
    chunks: list[np.ndarray] = []
    rate = 0
    with av.open(io.BytesIO(data), format=fmt) as c:
        stream = c.streams.audio[0]
        for frame in c.decode(stream):
            rate = frame.sample_rate
            chunks.append(frame.to_ndarray().astype(np.float32).reshape(-1))
    return (np.concatenate(chunks) if chunks else np.zeros(0, np.float32)), rate


def audio_packets(data: bytes, fmt: str = "mpegts") -> list[bytes]:
    """The audio stream's packets as muxed (no decode)."""
    with av.open(io.BytesIO(data), format=fmt) as c:
        stream = c.streams.audio[0]
        return [bytes(p) for p in c.demux(stream) if p.size]


def g711_decode(codec: str, data: bytes) -> np.ndarray:
    dec = av.CodecContext.create("pcm_alaw" if codec == "pcma" else "pcm_mulaw", "r")
    dec.sample_rate, dec.layout = 8000, "mono"
    return np.concatenate([f.to_ndarray()[0] for f in dec.decode(av.Packet(data))])


def ps_with_audio(
    units: list[tuple[int, bool, bytes]],
    audio_type: int | None,
    audio: list[tuple[int | None, bytes]],
) -> bytes:
    """NVR-style PS: each video frame, then its audio frames in their own packs."""
    per = max(1, len(audio) // max(1, len(units)))
    out = []
    for i, (pts, key, data) in enumerate(units):
        if key and audio_type is not None:
            head = pack_header(pts) + system_header() + psm(0x1B, audio_type)
            out.append(head + nvr_frame(data, pts, False))
        else:
            out.append(nvr_frame(data, pts, key, with_psm=audio_type is not None))
        for apts, frame in audio[i * per : (i + 1) * per]:
            out.append(pack_header(apts or pts) + pes(0xC0, frame, apts))
    return b"".join(out)
