"""Shared by the analyzer tests: where the built models are, and a real H.264 pedestrian clip."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from analyzers.manifest import all_manifests, status
from sip.channel_ref import ChannelRef
from vms.media.frames import AccessUnit

from .testdata import vision

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "var" / "models"
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
VISION = vision()
COFFEE = VISION / "coffee.png"
CHANNEL = "37010000001320000001"
DEVICE = "37010000001180000001"  # the NVR listing CHANNEL
CAMERA = ChannelRef(DEVICE, CHANNEL)  # how the hub and the pool name the camera
FULL_FRAME = [[0, 0], [1, 0], [1, 1], [0, 1]]


def require_model(name: str, size: int, precision: str = "fp32") -> None:
    m = {m.name: m for m in all_manifests(MODELS)}[name]
    st = status(MODELS, m, size, precision=precision)
    if st != "ok":
        shown = m.onnx_name(size, precision)
        pytest.fail(f"model {shown} is {st} in {MODELS}: run `make models` first")


def pedestrian_clip(
    people_s: float = 4.0, empty_s: float = 4.0, fps: int = 10, channel: str = CHANNEL
) -> list[AccessUnit]:
    """vtest.avi frames, then an empty scene, as H.264 access units (keyframe every second)."""
    frames: list[np.ndarray] = []
    with av.open(str(VTEST)) as src:
        for frame in src.decode(video=0):
            frames.append(frame.to_ndarray(format="bgr24"))
            if len(frames) >= people_s * fps:
                break
    h, w = frames[0].shape[:2]
    empty = cv2.resize(cv2.imread(str(COFFEE)), (w, h))
    frames += [empty] * int(empty_s * fps)
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
    enc.time_base = Fraction(1, fps)
    enc.gop_size = fps
    enc.options = {"preset": "ultrafast", "tune": "zerolatency", "x264-params": "repeat-headers=1"}
    units = []
    for i, img in enumerate([*frames, None]):
        if img is None:
            packets = enc.encode(None)
        else:
            vf = av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format="yuv420p")
            vf.pts = i
            packets = enc.encode(vf)
        for p in packets:
            units.append(
                AccessUnit(
                    channel,
                    int(p.pts) * 90000 // fps,
                    p.is_keyframe,
                    bytes(p),
                    wallclock=1.7e9 + p.pts / fps,
                )
            )
    return units
