"""Receive ports and SSRCs for pulled streams.

One port per stream (more robust than one shared port, WVP/ZLM advice) from
``media.rtp_port_min..rtp_port_max``, handed out round-robin so a port just
freed is not reused at once (a device may still be sending to it).  SSRCs
follow GB28181 (WVP ``SSRCFactory``): 10 decimal digits, the first ``0`` live
or ``1`` history, digits 2–6 = digits 4–8 of the SIP domain, 7–10 a sequence.
"""

from __future__ import annotations


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


SSRC_SEQUENCE_MAX = 9999


class SsrcAllocator:
    def __init__(self, domain: str) -> None:
        if len(domain) != 10 or not domain.isdigit():
            raise ValueError(f"SIP domain must be 10 digits, got {domain!r}")
        self.prefix = domain[3:8]
        self._used: set[str] = set()
        self._next = 1

    def allocate(self, history: bool = False) -> str:
        head = ("1" if history else "0") + self.prefix
        for _ in range(SSRC_SEQUENCE_MAX):
            seq = self._next
            self._next = 1 if seq >= SSRC_SEQUENCE_MAX else seq + 1
            ssrc = f"{head}{seq:04d}"
            if ssrc not in self._used:
                self._used.add(ssrc)
                return ssrc
        raise PoolExhausted("all 9999 SSRC sequence numbers are in use")

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
