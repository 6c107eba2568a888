"""Receive ports and SSRCs for pulled streams.

One port per stream (more robust than one shared port, WVP/ZLM advice) from
``media.rtp_port_min..rtp_port_max``, handed out round-robin so a port just
freed is not reused at once (a device may still be sending to it).  SSRCs
keep GB28181's form (WVP ``SSRCFactory``): 10 decimal digits, the first ``0``
live or ``1`` history, digits 2–6 = digits 4–8 of the SIP domain; digits 7–10
are drawn at random (never one in use), so a sender cannot guess the SSRC of
the next session from the last one.
"""

from __future__ import annotations

import secrets


class PoolExhausted(RuntimeError):
    """No free port or SSRC is left."""


class PortPool:
    def __init__(self, first: int, last: int) -> None:
        if first > last:
            raise ValueError(f"empty port range {first}..{last}")
        self.first = first
        self.last = last
        self._used: set[int] = set()
        self._next = first

    def allocate(self) -> int:
        size = self.last - self.first + 1
        for _ in range(size):
            port = self._next
            self._next = self.first if port >= self.last else port + 1
            if port not in self._used:
                self._used.add(port)
                return port
        raise PoolExhausted(f"all {size} RTP ports in {self.first}..{self.last} are in use")

    def release(self, port: int) -> None:
        self._used.discard(port)

    def in_use(self) -> int:
        return len(self._used)


SSRC_SEQUENCE_MAX = 9999  # the last four digits: 0001..9999
RANDOM_TRIES = 32  # random draws before picking among the free ones (a nearly full set)


class SsrcAllocator:
    def __init__(self, domain: str) -> None:
        if len(domain) != 10 or not domain.isdigit():
            raise ValueError(f"SIP domain must be 10 digits, got {domain!r}")
        self.prefix = domain[3:8]
        self._used: set[str] = set()
        self.collisions = 0  # draws that hit an SSRC in use (and were drawn again)

    def allocate(self, history: bool = False) -> str:
        """A random SSRC of the GB28181 form that no open session uses."""
        head = ("1" if history else "0") + self.prefix
        for _ in range(RANDOM_TRIES):
            ssrc = f"{head}{1 + secrets.randbelow(SSRC_SEQUENCE_MAX):04d}"
            if ssrc not in self._used:
                self._used.add(ssrc)
                return ssrc
            self.collisions += 1
        free = [
            ssrc
            for ssrc in (f"{head}{n:04d}" for n in range(1, SSRC_SEQUENCE_MAX + 1))
            if ssrc not in self._used
        ]
        if not free:
            raise PoolExhausted(f"all {SSRC_SEQUENCE_MAX} SSRCs {head}xxxx are in use")
        ssrc = secrets.choice(free)
        self._used.add(ssrc)
        return ssrc

    def release(self, ssrc: str) -> None:
        self._used.discard(ssrc)

    def in_use(self) -> int:
        return len(self._used)


def ssrc_value(ssrc: str) -> int:
    """The RTP header SSRC of a decimal GB28181 SSRC string (``0200000001`` → 0x0BEBC201)."""
    value = int(ssrc)
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"SSRC {ssrc!r} does not fit in 32 bits")
    return value
