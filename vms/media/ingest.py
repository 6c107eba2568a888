"""Per-packet work of a pulled stream: SSRC filter, sequence order, then the parser.

:class:`RtpIngest` checks the SSRC, puts packets in sequence order (UDP) or checks
their continuity (TCP), and routes them by payload type to the PS demuxer or a raw
H.264/H.265 depacketizer, whose units go to a sink.  Foreign SSRCs are dropped
("ssrc mismatched"); the device's own SSRC from its SDP answer is accepted by
:meth:`RtpIngest.rekey`.  Which *source* may send is the transports' business
(:mod:`vms.media.receiver`, :mod:`vms.media.source`).
"""

from __future__ import annotations

from collections.abc import Callable

from rtp.packet import split as split_rtp
from vms.logging import get_logger

from . import payload as pt_map
from .frames import AccessUnit, AudioUnit, Codec, Gap
from .ps import PsDemuxer
from .reorder import SEQ_MOD, ReorderBuffer, SequenceStats
from .rtp_h26x import H26xDepacketizer
from .stats import StreamStats

log = get_logger("vms.media.ingest")

Sink = Callable[[AccessUnit | Gap | AudioUnit], None]
Parser = PsDemuxer | H26xDepacketizer
_DROP = object()  # route of a payload type we recognise but cannot parse (MPEG-TS)
SNIFF_BUFFER = 64  # packets of an unknown payload type held while sniffing


class RtpIngest:
    """SSRC check → sequence order → PS demux or H.264/H.265 depacketizer → sink."""

    def __init__(
        self,
        demuxer: PsDemuxer,
        sink: Sink,
        ssrc: int | None,
        stats: StreamStats,
        reorder: bool = True,
        payload_types: dict[int, str] | None = None,
    ) -> None:
        self.demuxer = demuxer
        self.depacketizers: dict[Codec, H26xDepacketizer] = {}
        self._active: Parser = demuxer
        self.set_payload_types(payload_types or {})
        self.sink = sink
        self.ssrcs: set[int] = set() if ssrc is None else {ssrc}
        self.stats = stats
        self.reorder: ReorderBuffer[tuple[bytes, bool, int, int]] | None = (
            ReorderBuffer() if reorder else None
        )
        self.sequence = self.reorder.stats if self.reorder else SequenceStats()
        self._next_seq: int | None = None

    def rekey(self, ssrc: int) -> None:
        """Accept the SSRC the device announced in its answer (it may differ from ours)."""
        self.ssrcs.add(ssrc)

    def accepts(self, data: bytes) -> bool:
        """Whether a packet is RTP of this stream's SSRC (may pin its source); counts refusals."""
        parts = split_rtp(data)
        if parts is None:
            self.stats.bad_packets += 1
            return False
        if self.ssrcs and parts[4] not in self.ssrcs:
            self.stats.foreign_ssrc += 1
            return False
        return True

    def set_payload_types(self, answered: dict[int, str]) -> None:
        """Route payload types as the device's SDP answer maps them (over the defaults)."""
        self.payload_types = pt_map.payload_type_map(answered)
        ps = [pt for pt, enc in self.payload_types.items() if enc == pt_map.PS]
        self._ps_pt = ps[0] if ps else -1  # the hot path: one compare per packet
        self._routes: dict[int, object] = {}
        self._sniffing: dict[int, list[tuple[bytes, bool, int, int]]] = {}

    @property
    def resolution(self) -> tuple[int, int] | None:
        return self._active.resolution

    def on_packet(self, data: bytes, now: float) -> None:
        """One RTP packet (a datagram, or a deframed TCP packet)."""
        parts = split_rtp(data)
        if parts is None:
            self.stats.bad_packets += 1
            return
        pt, marker, seq, ts, ssrc, payload = parts
        if self.ssrcs and ssrc not in self.ssrcs:
            self.stats.foreign_ssrc += 1
            return
        self.stats.on_packet(len(data), now)
        if self.reorder is not None:
            for lost, (p, m, t, k) in self.reorder.push(seq, (payload, marker, ts, pt), now):
                self._demux(p, m, t, k, lost)
        else:
            lost = 0
            if self._next_seq is not None:
                lost = (seq - self._next_seq) % SEQ_MOD
                if lost >= SEQ_MOD // 2:
                    lost = 1  # went backwards: sender restart over TCP
                self.sequence.lost += lost
            self.sequence.received += 1
            self._next_seq = (seq + 1) % SEQ_MOD
            self._demux(payload, marker, ts, pt, lost)

    def _demux(self, payload: bytes, marker: bool, ts: int, pt: int, lost: int) -> None:
        if pt != self._ps_pt:
            self._route(payload, marker, ts, pt, lost)
            return
        self._feed_ps(payload, marker, lost)

    def _feed_ps(self, payload: bytes, marker: bool, lost: int) -> None:
        """The PS demuxer's packet step: loss first, then the bytes, then the frame end."""
        sink = self.sink
        if lost:
            for item in self.demuxer.mark_loss():
                sink(item)
        for item in self.demuxer.feed(payload):
            sink(item)
        if marker:
            for item in self.demuxer.end_of_frame():
                sink(item)

    def _route(self, payload: bytes, marker: bool, ts: int, pt: int, lost: int) -> None:
        """Any payload type but the first PS one: its parser, found once per type."""
        if pt not in self.payload_types:
            self.stats.unknown_pt += 1
        parser = self._routes.get(pt)
        if parser is None:
            self._choose(pt, payload, marker, ts, lost)
        else:
            self._feed(parser, payload, marker, ts, lost)

    def _feed(self, parser: object, payload: bytes, marker: bool, ts: int, lost: int) -> None:
        sink = self.sink
        if parser is self.demuxer:
            self._active = self.demuxer
            self._feed_ps(payload, marker, lost)
        elif isinstance(parser, H26xDepacketizer):
            self._active = parser
            if lost:
                for item in parser.mark_loss():
                    sink(item)
            for item in parser.feed(payload, ts, marker):
                sink(item)

    def _choose(self, pt: int, payload: bytes, marker: bool, ts: int, lost: int) -> None:
        """Pick the parser for ``pt`` from the answer's map, else by sniffing its first packets.

        Packets of an unknown type are held (bounded) until their bytes decide: a PS
        pack header (or MPEG-TS, dropped: unsupported) at once, H.264 after
        ``SNIFF_PACKETS`` plausible NAL headers in a row.
        """
        enc = self.payload_types.get(pt)
        held = [(payload, marker, ts, lost)]
        if enc is None:
            held = self._sniffing.setdefault(pt, [])
            held.append((payload, marker, ts, lost))
            kinds = [pt_map.sniff(p) for p, *_ in held]
            if pt_map.PS in kinds or pt_map.TS in kinds:
                enc = pt_map.PS if pt_map.PS in kinds else pt_map.TS
            elif len(held) >= pt_map.SNIFF_PACKETS and all(
                k == pt_map.H264 for k in kinds[-pt_map.SNIFF_PACKETS :]
            ):
                enc = pt_map.H264
            else:
                if len(held) > SNIFF_BUFFER:
                    del held[0]
                return
            del self._sniffing[pt]
            log.info("unknown payload type sniffed", pt=pt, encoding=enc)
        parser: object
        if enc == pt_map.PS:
            parser = self.demuxer
        elif enc in (pt_map.H264, pt_map.H265):
            codec = Codec.h264 if enc == pt_map.H264 else Codec.h265
            if codec not in self.depacketizers:
                self.depacketizers[codec] = H26xDepacketizer(
                    self.demuxer.channel_id, codec, self.demuxer.clock
                )
            parser = self.depacketizers[codec]
        else:
            log.warning("payload type not supported: dropped", pt=pt, encoding=enc)
            parser = _DROP
        self._routes[pt] = parser
        for p, m, t, k in held:
            self._feed(parser, p, m, t, k)

    def tick(self, now: float) -> None:
        """Timer: give up reorder holes that waited too long."""
        if self.reorder is not None:
            for lost, (p, m, t, k) in self.reorder.flush(now):
                self._demux(p, m, t, k, lost)

    def _parsers(self) -> list[Parser]:
        return [self.demuxer, *self.depacketizers.values()]

    def connection_lost(self) -> None:
        """A TCP connection ended: what follows is not contiguous with what came before."""
        self._next_seq = None
        for parser in self._parsers():
            for item in parser.mark_loss("connection-lost"):
                self.sink(item)

    def flush(self) -> list[AccessUnit | Gap | AudioUnit]:
        """End of stream: the last whole frame of every parser in use."""
        out: list[AccessUnit | Gap | AudioUnit] = []
        for parser in self._parsers():
            out += parser.flush()
        return out
