"""Per-device lockout after wrong digests, with a back-off that doubles per lockout.

A guesser gets ``max_failures`` tries, then the device id is locked for ``first_s``, then
twice that after the next round of failures, up to ``max_s``.  Memory is bounded: the
table keeps at most ``max_entries`` ids (the stalest go first), so guessing against
random ids cannot grow it.  Who is exempt while locked (the device's own live
registration) is the caller's decision.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Entry:
    failures: int = 0
    lockouts: int = 0  # lockouts so far; the next lasts first_s · 2**lockouts
    until: float = 0.0  # locked until (clock); 0 → not locked
    last: float = 0.0  # last failure


class AuthLockout:
    def __init__(
        self,
        max_failures: int = 5,
        first_s: float = 60.0,
        max_s: float = 3600.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.first_s = first_s
        self.max_s = max_s
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[str, _Entry] = {}
        self.lockouts = 0  # lockouts started, all devices

    def locked_for(self, device_id: str) -> float:
        """Seconds the device id stays locked (0 when it is not)."""
        e = self._entries.get(device_id)
        if e is None:
            return 0.0
        return max(0.0, e.until - self.clock())

    def failed(self, device_id: str) -> bool:
        """A wrong digest for the device id; True when it starts a lockout."""
        now = self.clock()
        e = self._entries.pop(device_id, None) or _Entry()
        self._entries[device_id] = e  # most recent last: eviction takes the stalest
        if now - e.last > self.max_s and e.until < now:
            e.failures = 0  # a long quiet spell forgives the earlier tries
            e.lockouts = 0
        e.last = now
        e.failures += 1
        started = False
        if e.failures >= self.max_failures and e.until <= now:
            e.until = now + min(self.max_s, self.first_s * 2**e.lockouts)
            e.lockouts += 1
            e.failures = 0
            self.lockouts += 1
            started = True
        while len(self._entries) > self.max_entries:
            self._entries.pop(next(iter(self._entries)))
        return started

    def succeeded(self, device_id: str) -> None:
        """The right password: the failure count starts again.  A lockout running and the
        back-off level stay — the device's own refresh must not reset a guesser's clock;
        the level decays after ``max_s`` without failures."""
        e = self._entries.get(device_id)
        if e is not None:
            e.failures = 0

    def __len__(self) -> int:
        return len(self._entries)
