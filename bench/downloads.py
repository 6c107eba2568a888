"""Download job cost: what fetching a 1080p camera's hour into an MP4 costs per CPU.

Real x264 access units (the pedestrian clip scaled to 1080p) go through the download's part
writer (MPEG-TS on local disk, as the units arrive), the resume scan of that part (what a
restarted node reads) and the remux of the part into the MP4 — each against a plain write of
the same bytes to one file, measured in the same run.  The figures say how fast a device
may send (``a=downloadspeed``) before one core cannot keep up.  ``--quick`` runs in seconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vms.media.frames import AccessUnit
from vms.recording.download_parts import PartSpan, PartWriter, build_mp4, scan_part

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
FPS = 25


def encode(frames: int) -> list[tuple[bool, bytes]]:
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = 1920, 1080, "yuv420p"
    enc.time_base = Fraction(1, FPS)
    enc.options = {"bf": "0", "g": "50", "preset": "ultrafast", "crf": "25"}
    enc.options["x264-params"] = "repeat-headers=1"
    out: list[tuple[bool, bytes]] = []
    with av.open(str(VTEST)) as src:
        for i, frame in enumerate(src.decode(video=0)):
            if i >= frames:
                break
            f = frame.reformat(1920, 1080, "yuv420p")
            f.pts = i
            out += [(p.is_keyframe, bytes(p)) for p in enc.encode(f)]
    out += [(p.is_keyframe, bytes(p)) for p in enc.encode(None)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one minute of video, not ten")
    args = parser.parse_args()
    source = encode(100)
    frames = FPS * (60 if args.quick else 600)
    units = [
        AccessUnit("c", i * 3600, *source[i % len(source)]) for i in range(frames)
    ]  # keyframes every 2 s, as the clip loops on a GOP boundary
    mbit = sum(len(u.data) for u in units) * 8 / (frames / FPS) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.process_time()
        with (root / "plain.bin").open("wb") as f:
            for u in units:
                f.write(u.data)
        plain = time.process_time() - t0

        writer = PartWriter(root / "part-1.ts")
        t0 = time.process_time()
        for u in units:
            writer.write(u)
        writer.close()
        write = time.process_time() - t0

        t0 = time.process_time()
        scan = scan_part(root / "part-1.ts", closed=True)
        scanned = time.process_time() - t0
        assert scan is not None

        start = datetime.now(UTC)
        span = PartSpan(root / "part-1.ts", start, None)
        t0 = time.process_time()
        result = build_mp4([span], start + timedelta(hours=1), root / "out.mp4")
        remux = time.process_time() - t0
        assert result.frames == frames

    seconds = frames / FPS
    print(f"stream: 1080p H.264 at {mbit:.1f} Mbit/s, {seconds:.0f} s ({frames} frames)")
    print(f"plain file write:  {frames / plain:10.0f} frames/CPU-s")
    print(
        f"part writer (TS):  {frames / write:10.0f} frames/CPU-s = ×{seconds / write:.0f} real time"
    )
    print(f"resume scan:       {scanned * 1000:10.1f} ms for the whole part (head + tail only)")
    print(
        f"MP4 remux:         {frames / remux:10.0f} frames/CPU-s = ×{seconds / remux:.0f} real time"
    )
    hour = 3600 * FPS
    per_hour_write, per_hour_remux = hour * write / frames, hour * remux / frames
    print(f"one camera-hour:   {per_hour_write:.1f} CPU-s to write, {per_hour_remux:.1f} to remux")


if __name__ == "__main__":
    main()
