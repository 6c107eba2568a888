"""Reorder buffer for RTP over UDP: sequence numbers with 16-bit wrap-around.

Packets are released in sequence order.  A hole is waited for at most
``capacity`` packets or ``max_wait_s`` seconds, then declared lost; the packet
after a hole is released with the number of packets lost before it, so the
demuxer can resync.  Late packets (after their hole was given up) and
duplicates are counted and dropped.  Loss accounting follows RFC 3550 A.3.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

from rtp.packet import SEQ_MOD

T = TypeVar("T")

MAX_DROPOUT = 3000  # RFC 3550 A.1: a jump beyond this is a sender restart
MAX_MISORDER = 100
RECENT = 1024  # sequence numbers remembered to tell duplicates from late packets


@dataclass
class SequenceStats:
    received: int = 0
    lost: int = 0
    duplicates: int = 0
    late: int = 0
    restarts: int = 0

    @property
    def expected(self) -> int:
        return self.received + self.lost

    @property
    def loss_ratio(self) -> float:
        return self.lost / self.expected if self.expected else 0.0


class ReorderBuffer(Generic[T]):
    def __init__(self, capacity: int = 64, max_wait_s: float = 0.1) -> None:
        self.capacity = capacity
        self.max_wait_s = max_wait_s
        self.stats = SequenceStats()
        self._next: int | None = None
        self._held: dict[int, tuple[T, float]] = {}
        self._hole_since: float | None = None
        self._recent: deque[int] = deque()
        self._recent_set: set[int] = set()

    def push(self, seq: int, item: T, now: float) -> list[tuple[int, T]]:
        """Add one packet; returns ``(lost_before, item)`` pairs ready in order."""
        if self._next is None:
            self._next = seq
        d = (seq - self._next) % SEQ_MOD
        if d >= SEQ_MOD // 2:  # behind the release point
            back = SEQ_MOD - d
            if back > MAX_MISORDER and back > MAX_DROPOUT:
                return self._restart(seq, item)
            if seq in self._recent_set:
                self.stats.duplicates += 1
            else:
                self.stats.late += 1
            return []
        if d > MAX_DROPOUT:
            return self._restart(seq, item)
        if seq in self._held:
            self.stats.duplicates += 1
            return []
        self._held[seq] = (item, now)
        out: list[tuple[int, T]] = []
        self._release(out, 0)
        if self._held:
            if self._hole_since is None:
                self._hole_since = now
            if len(self._held) > self.capacity or now - self._hole_since >= self.max_wait_s:
                self._skip_hole(out)
        return out

    def flush(self, now: float) -> list[tuple[int, T]]:
        """Give up a hole that has waited too long (called from a timer)."""
        out: list[tuple[int, T]] = []
        while self._held:
            since = self._hole_since
            if since is None or now - since < self.max_wait_s:
                break
            self._skip_hole(out)
        return out

    def pending(self) -> int:
        return len(self._held)

    def _remember(self, seq: int) -> None:
        self._recent.append(seq)
        self._recent_set.add(seq)
        if len(self._recent) > RECENT:
            self._recent_set.discard(self._recent.popleft())

    def _release(self, out: list[tuple[int, T]], lost: int) -> None:
        assert self._next is not None
        nxt = self._next
        held = self._held
        released = False
        while nxt in held:
            released = True
            item, _ = held.pop(nxt)
            out.append((lost, item))
            lost = 0
            self.stats.received += 1
            self._remember(nxt)
            nxt = (nxt + 1) % SEQ_MOD
        self._next = nxt
        if released:
            self._hole_since = None

    def _skip_hole(self, out: list[tuple[int, T]]) -> None:
        """Declare the first hole lost and release what follows it."""
        assert self._next is not None
        first = min(self._held, key=lambda s: (s - self._next) % SEQ_MOD)  # type: ignore[operator]
        lost = (first - self._next) % SEQ_MOD
        self.stats.lost += lost
        self._next = first
        self._release(out, lost)
        if self._held:
            self._hole_since = min(t for _, t in self._held.values())

    def _restart(self, seq: int, item: T) -> list[tuple[int, T]]:
        """The sender restarted its sequence: drop what is held, start over at ``seq``."""
        self.stats.restarts += 1
        self._held.clear()
        self._hole_since = None
        self._next = (seq + 1) % SEQ_MOD
        self.stats.received += 1
        self._remember(seq)
        return [(1, item)]
