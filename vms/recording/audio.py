"""The audio stream of recorded segments: AAC as the camera sent it, or G.711 made AAC.

MPEG-TS (ISO/IEC 13818-1 Table 2-34) and MP4 have no stream type for G.711, and the
players of HLS replay and MP4 exports take AAC, so G.711 A-law/µ-law is transcoded here,
in the channel's writer thread: one table lookup per sample, then FFmpeg's AAC encoder
(about 1 % of a core per stream, see bench/recording.py).  The live path never transcodes:
WebRTC gets G.711 as is (``vms.live``).  AAC from the camera is stored as is (its ADTS
frames are what the TS muxer writes).
"""

from __future__ import annotations

import functools
import io
from fractions import Fraction

import av
import numpy as np

from vms.media.audio import AdtsHeader
from vms.media.frames import AudioCodec, AudioUnit

CLOCK_HZ = 90000
AAC_FRAME = 1024
AAC_BITRATE = 32000  # mono speech at 8 kHz
MAX_PAD_S = 2.0  # a hole in the audio shorter than this is filled with silence
RESYNC_S = 0.3  # the camera's audio clock and our sample count may differ by this much
G711_DECODERS = {AudioCodec.pcma: "pcm_alaw", AudioCodec.pcmu: "pcm_mulaw"}

Packet = tuple[int, bytes]  # (pts on the 90 kHz clock of the run, AAC frame)


@functools.cache
def g711_table(codec: AudioCodec) -> np.ndarray:
    """Each of the 256 G.711 code words as a float sample (FFmpeg's own decoder made it)."""
    dec = av.CodecContext.create(G711_DECODERS[codec], "r")
    dec.sample_rate, dec.layout = 8000, "mono"
    frame = dec.decode(av.Packet(bytes(range(256))))[0]
    return (frame.to_ndarray()[0].astype(np.float32) / 32768.0).astype(np.float32)


class AudioTrack:
    """How one camera's audio goes into segments; ``packets`` gives what to mux for a unit."""

    codec: AudioCodec
    sample_rate: int
    channels: int

    def matches(self, unit: AudioUnit) -> bool:
        return (unit.codec, unit.sample_rate, unit.channels) == (
            self.codec,
            self.sample_rate,
            self.channels,
        )

    def add_stream(self, container: av.container.OutputContainer) -> av.stream.Stream:
        raise NotImplementedError

    def packets(self, rel_pts: int, unit: AudioUnit) -> list[Packet]:
        raise NotImplementedError

    def end_run(self) -> list[Packet]:
        """The run ends (gap, stop): what is still buffered; the next unit starts afresh."""
        return []

    def close(self) -> None:
        """Release codec resources."""


class AacPassthrough(AudioTrack):
    """The camera's ADTS frames, muxed as they came; parameters read from the first one."""

    def __init__(self, unit: AudioUnit) -> None:
        self.codec, self.sample_rate, self.channels = unit.codec, unit.sample_rate, unit.channels
        header = AdtsHeader.parse(unit.data)
        if header is None or header.length != len(unit.data):
            raise ValueError("not one whole ADTS frame")
        self._container = av.open(io.BytesIO(unit.data), format="aac")
        self._template = self._container.streams.audio[0]
        ctx = self._template.codec_context
        if ctx.name != "aac" or ctx.sample_rate != header.sample_rate or not ctx.channels:
            self._container.close()
            raise ValueError(f"unusable AAC parameters ({ctx.name}, {ctx.sample_rate} Hz)")

    def add_stream(self, container: av.container.OutputContainer) -> av.stream.Stream:
        return container.add_stream_from_template(self._template)

    def packets(self, rel_pts: int, unit: AudioUnit) -> list[Packet]:
        return [(rel_pts, unit.data)]

    def close(self) -> None:
        self._container.close()


class G711ToAac(AudioTrack):
    """G.711 samples → AAC-LC frames at 8 kHz, one encoder per recording run.

    Timestamps come from a sample count anchored at the run's first audio unit, so the
    AAC frames are gapless; a hole up to ``MAX_PAD_S`` is filled with silence, a larger
    jump (or the camera's clock straying more than ``RESYNC_S``) restarts the encoder
    at the new time.
    """

    def __init__(self, unit: AudioUnit, bitrate: int = AAC_BITRATE) -> None:
        self.codec, self.sample_rate, self.channels = unit.codec, 8000, 1
        self.bitrate = bitrate
        self._table = g711_table(unit.codec)
        self._encoder: av.AudioCodecContext | None = None
        self._next: int | None = None  # sample index (run clock) of the next sample we take
        self._fed = 0  # samples handed to the encoder since its start
        self._base = 0  # sample index of the encoder's sample 0
        self._pending = np.zeros(0, np.float32)

    def _open_encoder(self) -> av.AudioCodecContext:
        enc = av.CodecContext.create("aac", "w")
        enc.sample_rate, enc.layout, enc.format = self.sample_rate, "mono", "fltp"
        enc.bit_rate = self.bitrate
        enc.time_base = Fraction(1, self.sample_rate)
        enc.open()
        return enc

    def add_stream(self, container: av.container.OutputContainer) -> av.stream.Stream:
        stream = container.add_stream("aac", rate=self.sample_rate, layout="mono")
        stream.codec_context.bit_rate = self.bitrate  # opened with the container: same ASC
        return stream

    def packets(self, rel_pts: int, unit: AudioUnit) -> list[Packet]:
        start = round(rel_pts * self.sample_rate / CLOCK_HZ)
        out: list[Packet] = []
        if self._next is not None:
            late = start - self._next
            if late > MAX_PAD_S * self.sample_rate or late < -RESYNC_S * self.sample_rate:
                out += self.end_run()
            elif late > RESYNC_S * self.sample_rate:
                out += self._feed(np.zeros(late, np.float32))
        if self._next is None:
            self._next = self._base = start
            self._fed = 0
        out += self._feed(self._table[np.frombuffer(unit.data, np.uint8)])
        return out

    def _feed(self, samples: np.ndarray) -> list[Packet]:
        assert self._next is not None
        self._next += len(samples)
        pending = np.concatenate((self._pending, samples)) if len(self._pending) else samples
        out: list[Packet] = []
        if self._encoder is None:
            self._encoder = self._open_encoder()
        n = len(pending) // AAC_FRAME * AAC_FRAME
        for i in range(0, n, AAC_FRAME):
            frame = av.AudioFrame.from_ndarray(
                pending[None, i : i + AAC_FRAME], format="fltp", layout="mono"
            )
            frame.sample_rate = self.sample_rate
            frame.pts = self._fed
            self._fed += AAC_FRAME
            out += self._encoded(self._encoder.encode(frame))
        self._pending = pending[n:].copy()
        return out

    def _encoded(self, packets: list[av.Packet]) -> list[Packet]:
        rate = self.sample_rate
        return [
            (round((self._base + p.pts) * CLOCK_HZ / rate), bytes(p))
            for p in packets
            if p.pts is not None
        ]

    def end_run(self) -> list[Packet]:
        out: list[Packet] = []
        if self._encoder is not None:
            if len(self._pending):
                pad = np.zeros(AAC_FRAME - len(self._pending), np.float32)
                self._pending = np.concatenate((self._pending, pad))
                out += self._feed(np.zeros(0, np.float32))
            out += self._encoded(self._encoder.encode(None))
            self._encoder = None
        self._next = None
        self._pending = np.zeros(0, np.float32)
        return out


def track_for(unit: AudioUnit) -> AudioTrack:
    """The track that records ``unit``'s codec."""
    if unit.codec is AudioCodec.aac:
        return AacPassthrough(unit)
    return G711ToAac(unit)
