"""Per-channel segmenting state machine: access units in, closed segments and gaps out.

It runs in the channel's writer thread (never on the event loop).  Segments
start on a keyframe and roll over at the first keyframe after ``segment_s``.
Wall-clock times come from an anchor (wallclock, pts) taken at the start of
each continuous run, so segment boundaries follow the camera's 90 kHz clock
and the time-compressed tests can derive wall-clock time from PTS.

Audio (when the recorder subscribes to it) goes into the segment as a second
stream.  A segment's streams are fixed when it opens, so a run's first keyframe
waits up to ``PROBE_TICKS`` of video for the camera's first audio unit; later
segments carry audio when the one before them saw some.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sip.channel_ref import ChannelRef
from vms.logging import get_logger
from vms.media.frames import AccessUnit, AudioUnit, Gap

from .audio import AudioTrack, track_for
from .segment import SegmentFile, SegmentInfo, StreamTemplate

log = get_logger("vms.recording.writer")

CLOCK_HZ = 90000
DEFAULT_FRAME_TICKS = 3600  # 25 fps, until two frames have been seen
PROBE_TICKS = CLOCK_HZ  # a run's first segment waits this long (video PTS) for audio
PROBE_FRAMES = 100  # ... or this many frames, whichever comes first


@dataclass(frozen=True, slots=True)
class GapInfo:
    channel: ChannelRef
    start: float
    end: float
    reason: str


class ChannelWriter:
    """Cuts one channel's units into segment files; calls back with each closed segment or gap."""

    def __init__(
        self,
        channel: ChannelRef,
        spool: Path,
        segment_s: float,
        max_jump_s: float,
        on_segment: Callable[[SegmentInfo], None],
        on_gap: Callable[[GapInfo], None],
        max_drift_s: float = 2.0,
        anchor_wall: float | None = None,
        audio: bool = False,
    ) -> None:
        self.channel = channel
        self.spool = spool
        self.segment_ticks = round(segment_s * CLOCK_HZ)
        self.max_jump_ticks = round(max_jump_s * CLOCK_HZ)
        self.max_drift_s = max_drift_s
        self.on_segment = on_segment
        self.on_gap = on_gap
        self.current: SegmentFile | None = None
        self.template: StreamTemplate | None = None
        self.anchor: tuple[float, int] | None = None  # (wall seconds, pts) of the current run
        # a replay from the NVR's storage: wall-clock time follows the requested start and the
        # stream's PTS, never the time the units arrived
        self.fixed_wall = anchor_wall
        self.in_run = False
        self.run_base = 0  # pts of the run's first unit: TS timestamps start near 0
        self.seg_first_pts = 0
        self.last_pts: int | None = None
        self.frame_ticks = DEFAULT_FRAME_TICKS
        self.last_end: float | None = None  # wall end of the last closed segment
        self.gap_reason: str | None = None  # set while a gap is open, until the next segment
        self.skipped = 0  # units dropped while waiting for a keyframe
        self.audio_enabled = audio
        self.audio: AudioTrack | None = None
        self.audio_dropped = 0  # audio units no open segment could take
        self.audio_errors = 0
        self._audio_seen = False  # audio came since the current segment opened
        self._probe: list[AccessUnit] | None = None  # a run's first frames, waiting for audio

    # --- input ------------------------------------------------------------------

    def handle(self, item: AccessUnit | Gap | AudioUnit) -> None:
        if item.__class__ is AudioUnit:
            self._audio(item)  # type: ignore[arg-type]
            return
        if isinstance(item, Gap):
            self.break_run(item.reason)
            return
        au: AccessUnit = item  # type: ignore[assignment]
        if self._probe is not None:
            self._probe.append(au)
            if au.pts - self._probe[0].pts >= PROBE_TICKS or len(self._probe) >= PROBE_FRAMES:
                self._end_probe()
            return
        if self.audio_enabled and self.current is None and not self.in_run and au.keyframe:
            self._probe = [au]  # a new run: learn whether the camera sends audio first
            return
        self._video(au)

    def _video(self, au: AccessUnit) -> None:
        if self.current is not None and self.last_pts is not None:
            jump = au.pts - self.last_pts
            if jump > self.max_jump_ticks or jump < -self.max_jump_ticks:
                self.break_run("pts-jump")
        if self.current is None:
            if not au.keyframe:
                self.skipped += 1
                return
            self._open(au, new_run=not self.in_run)
        elif au.keyframe and au.pts - self.seg_first_pts >= self.segment_ticks:
            end = self.wall(au.pts)
            self._close(end)
            self._open(au, new_run=False)
        else:
            if au.keyframe and self.template is not None and not self.template.matches(au):
                self._close(self.wall(au.pts))
                self._open(au, new_run=False)
        assert self.current is not None
        if self.last_pts is not None and self.last_pts < au.pts:
            self.frame_ticks = min(au.pts - self.last_pts, CLOCK_HZ)
        self.current.write(au.pts - self.run_base, au.data, au.keyframe)
        self.last_pts = au.pts

    def _end_probe(self) -> None:
        held, self._probe = self._probe or [], None
        for au in held:
            self._video(au)

    def _audio(self, unit: AudioUnit) -> None:
        self._audio_seen = True
        if self.audio is None or not self.audio.matches(unit):
            self._close_audio()
            try:
                self.audio = track_for(unit)
            except Exception as exc:  # noqa: BLE001 - bad audio must not cost the video
                self.audio_errors += 1
                if self.audio_errors & (self.audio_errors - 1) == 0:
                    log.warning("audio not recordable", channel=str(self.channel), error=repr(exc))
                return
        if self._probe is not None:
            self._end_probe()
        segment, track = self.current, self.audio
        if segment is None or segment.audio is not track or self.last_pts is None:
            self.audio_dropped += 1  # no segment, or one opened without (this) audio
            return
        if abs(unit.pts - self.last_pts) > self.max_jump_ticks:
            self.audio_dropped += 1  # not on the video's clock
            return
        try:
            for pts, data in track.packets(unit.pts - self.run_base, unit):
                if pts >= 0:  # the encoder's priming before the run: nothing to play
                    segment.write_audio(pts, data)
        except Exception as exc:  # noqa: BLE001 - a broken audio frame must not cost the video
            self.audio_errors += 1
            if self.audio_errors & (self.audio_errors - 1) == 0:
                log.warning("audio frame not recorded", channel=str(self.channel), error=repr(exc))

    def _close_audio(self) -> None:
        """End the audio track's run into the open segment (if it has the track) and drop it."""
        track, self.audio = self.audio, None
        if track is None:
            return
        self._flush_audio(track)
        track.close()

    def _flush_audio(self, track: AudioTrack) -> None:
        tail = track.end_run()
        segment = self.current
        if segment is not None and segment.audio is track:
            for pts, data in tail:
                if pts >= 0:
                    segment.write_audio(pts, data)

    def break_run(self, reason: str) -> None:
        """Close the open segment; the next keyframe starts a new run after a recorded gap."""
        if self._probe is not None:
            self._end_probe()
        if self.audio is not None:
            self._flush_audio(self.audio)
        if self.current is not None and self.last_pts is not None:
            self._close(self.wall(self.last_pts + self.frame_ticks))
        self.in_run = False
        if self.fixed_wall is None:
            self.anchor = None
        self.last_pts = None
        if self.last_end is not None and self.gap_reason is None:
            self.gap_reason = reason

    def close(self) -> None:
        """Finish the open segment (on stop or flush); a later unit starts a new run."""
        self.break_run("stopped")
        self._close_audio()
        if self.template is not None:
            self.template.close()
            self.template = None

    # --- internals --------------------------------------------------------------

    def wall(self, pts: int) -> float:
        assert self.anchor is not None
        return self.anchor[0] + (pts - self.anchor[1]) / CLOCK_HZ

    def _open(self, au: AccessUnit, new_run: bool) -> None:
        now = au.wallclock or time.time()
        if self.fixed_wall is not None:
            if self.anchor is None:
                self.anchor = (self.fixed_wall, au.pts)
            if new_run:
                self.run_base = au.pts
        elif new_run or self.anchor is None:
            self.anchor = (now, au.pts)
            self.run_base = au.pts
        elif au.wallclock and abs(self.wall(au.pts) - au.wallclock) > self.max_drift_s:
            # camera clock drifted from ours: follow ours from this segment on
            self.anchor = (au.wallclock, au.pts)
        start = self.wall(au.pts)
        if self.gap_reason is not None and self.last_end is not None and start > self.last_end:
            self.on_gap(GapInfo(self.channel, self.last_end, start, self.gap_reason))
        self.gap_reason = None
        if self.template is None or not self.template.matches(au):
            if self.template is not None:
                self.template.close()
            self.template = StreamTemplate(au)
        self.spool.mkdir(parents=True, exist_ok=True)
        audio = self.audio if self._audio_seen else None
        self._audio_seen = False
        self.current = SegmentFile(self.spool, self.channel, start, self.template, audio)
        self.seg_first_pts = au.pts
        self.in_run = True

    def _close(self, end: float) -> None:
        segment, self.current = self.current, None
        if segment is None:
            return
        try:
            info = segment.close(end)
        except Exception as exc:  # noqa: BLE001 - a failed file must not stop recording
            log.error("segment close failed", channel=str(self.channel), error=repr(exc))
            segment.abort()
            return
        self.last_end = end
        self.on_segment(info)
