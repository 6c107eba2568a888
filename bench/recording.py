"""Recording cost: mux + segment + upload + index of a 4 Mbit/s 1080p H.264 stream, per CPU.

Feeds real x264 access units (the pedestrian clip scaled to 1080p) through the recorder's
segmenting writer into a local object store and a SQLite index, and compares the CPU time
with a plain write of the same bytes to one file (the floor any recorder pays), measured
in the same run.  Then the same stream with the camera's audio: G.711A (transcoded to AAC
by the recorder, TS having no G.711) and AAC (muxed as is), to show what audio adds.
``--quick`` finishes in well under a minute.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select

from simdevice.audio_source import audio_clip
from sip.channel_ref import ChannelRef
from storage.db import Database
from storage.models import RecordingSegment
from storage.objects import LocalObjectStore
from vms.media.frames import AccessUnit, AudioCodec, AudioUnit
from vms.recording.index import store_gap, store_segment
from vms.recording.writer import ChannelWriter

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
CHANNEL = "34010000001320000001"
CAMERA = ChannelRef("34010000001180000001", CHANNEL)  # writer, index: (device, channel)
FPS = 25


def encode(frames: int) -> list[tuple[int, bool, bytes]]:
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = 1920, 1080, "yuv420p"
    enc.time_base = Fraction(1, 90000)
    enc.options = {
        "bf": "0",
        "g": "50",
        "preset": "ultrafast",
        "crf": "25",
        "x264-params": "repeat-headers=1",
    }
    out: list[tuple[int, bool, bytes]] = []
    with av.open(str(VTEST)) as src:
        for i, frame in enumerate(src.decode(video=0)):
            if i >= frames:
                break
            f = frame.reformat(1920, 1080, "yuv420p")
            f.pts, f.time_base = i * 3600, Fraction(1, 90000)
            out += [(p.pts, p.is_keyframe, bytes(p)) for p in enc.encode(f)]
    out += [(p.pts, p.is_keyframe, bytes(p)) for p in enc.encode(None)]
    return sorted(out)


def run_recorder(
    units: list[tuple[int, bool, bytes]], repeat: int, root: Path, audio: str = ""
) -> float:
    """CPU seconds of the writer for the clip ``repeat`` times, with ``audio`` ("" none)."""
    root = root / (audio or "video")
    root.mkdir(parents=True)
    clip = audio_clip(audio) if audio else None
    rate = clip.sample_rate if clip else 8000
    db = Database(f"sqlite:///{root / 'bench.db'}")
    db.open()
    objects = LocalObjectStore(root / "objects")
    writer = ChannelWriter(
        CAMERA,
        root / "spool",
        10.0,
        5.0,
        lambda info: store_segment(db, objects, info),
        lambda gap: store_gap(db, gap),
        audio=bool(audio),
    )
    span = units[-1][0] + 3600
    wall0 = time.time() - 3600
    cpu = time.process_time()
    for r in range(repeat):
        for pts, key, data in units:
            p = pts + r * span
            writer.handle(AccessUnit(CHANNEL, p, key, data, wallclock=wall0 + p / 90000))
            for apts, frame in clip.frames_between(p, p + 3600) if clip else ():
                codec = AudioCodec(audio)
                writer.handle(AudioUnit(CHANNEL, apts, frame, codec, rate, 1, wall0 + apts / 9e4))
    writer.close()
    cpu = time.process_time() - cpu
    with db.session() as s:
        rows = s.scalars(select(RecordingSegment).where(RecordingSegment.is_gap.is_(False))).all()
        missing = [r.id for r in rows if bool(r.audio_codec) != bool(audio)]
    db.close()
    if missing:
        raise SystemExit(f"{len(missing)} segments without the expected audio ({audio or 'none'})")
    return cpu


def run_raw(units: list[tuple[int, bool, bytes]], repeat: int, root: Path) -> float:
    cpu = time.process_time()
    with (root / "raw.h264").open("wb") as f:
        for _ in range(repeat):
            for _, _, data in units:
                f.write(data)
    return time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (< 60 s)")
    args = parser.parse_args()
    frames, repeat = (100, 6) if args.quick else (250, 24)
    t = time.time()
    units = encode(frames)
    size = sum(len(d) for _, _, d in units)
    seconds = frames / FPS
    print(
        f"clip: {frames} frames 1080p, {size * 8 / seconds / 1e6:.2f} Mbit/s, "
        f"encoded in {time.time() - t:.1f} s; fed {repeat}x = {seconds * repeat:.0f} s of video"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run_recorder(units, 1, root / "warm-up")  # lazy codec, muxer and DB set-up, not counted
        rec_cpu = run_recorder(units, repeat, root)
        raw_cpu = max(run_raw(units, repeat, root), 1e-6)
        with_audio = {codec: run_recorder(units, repeat, root, codec) for codec in ("pcma", "aac")}
    video_s = seconds * repeat
    mbit = size * repeat * 8 / 1e6
    per_stream = rec_cpu / video_s * 100  # per-frame costs dominate: fps matters, not bitrate
    print(
        f"recorder (mux TS + segment + upload + index): {rec_cpu:.3f} CPU-s, "
        f"{frames * repeat / rec_cpu:.0f} frames/CPU-s, {mbit / rec_cpu:.0f} Mbit/CPU-s"
    )
    print(
        f"raw file write of the same bytes:             {raw_cpu:.3f} CPU-s, "
        f"{mbit / raw_cpu:.0f} Mbit/CPU-s"
    )
    print(
        f"CPU per {mbit / video_s:.1f} Mbit/s 25 fps 1080p stream recorded: {per_stream:.2f} % "
        "of one core "
        f"(~{100 / per_stream:.0f} streams per core)"
    )
    print(f"ratio recorder / raw write: {rec_cpu / raw_cpu:.1f}x")
    for codec, what in (("pcma", "G.711A → AAC transcode"), ("aac", "AAC muxed as is")):
        cpu = with_audio[codec]
        extra = (cpu - rec_cpu) / video_s * 100
        print(
            f"with {codec} audio ({what}): {cpu:.3f} CPU-s, {cpu / video_s * 100:.2f} % of a core "
            f"per stream, audio adds {extra:.2f} % ({cpu / rec_cpu:.2f}x the video-only recorder)"
        )


if __name__ == "__main__":
    main()
