"""Who may feed a pulled stream: the media source check.

An RTP port and a 10-digit SSRC are not secrets (a blind scan finds them), so a
stream takes packets from one source only.  With ``media.rtp_source = "device"``
that source must be on one of the device's hosts — the address it signals from
(its registration) or the ``c=`` address of its SDP answer — and the first valid
packet from there pins the exact (host, port); ``"any"`` drops the host
condition (a device behind a NAT whose media leaves from another address).
Until the answer arrives the hosts are not all known, so transports hold what
comes (bounded) and decide when :meth:`SourceGate.answered` is called.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable

from vms.logging import get_logger, worth_logging

log = get_logger("vms.media.source")


class SourcePolicy(enum.StrEnum):
    device = "device"  # only from the device's signalling host or its SDP c= host
    any = "any"  # from anywhere; still one source, pinned at its first valid packet


def normalise_host(host: str) -> str | None:
    """An IP address in its canonical text (IPv4-mapped IPv6 as IPv4); None if unusable."""
    try:
        ip = ipaddress.ip_address(host.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified or ip.is_multicast:
        return None
    return str(ip)


class SourceGate:
    """The allowed hosts of one stream and, once chosen, its pinned source."""

    def __init__(
        self,
        policy: SourcePolicy | str = SourcePolicy.any,
        hosts: Iterable[str] = (),
        *,
        answered: bool = True,
    ) -> None:
        self.policy = SourcePolicy(policy)
        self.hosts: set[str] = {h for h in map(normalise_host, hosts) if h}
        self.final = answered  # False: the SDP answer (and its c= host) is still to come
        self.pinned: tuple[str, int] | None = None

    @classmethod
    def waiting(cls, policy: SourcePolicy | str, hosts: Iterable[str]) -> SourceGate:
        """A gate for a stream being INVITEd: decisions wait for :meth:`answered`."""
        return cls(policy, hosts, answered=False)

    def answered(self, sdp_host: str | None) -> None:
        """The device's SDP answer came: its ``c=`` host joins the allowed ones."""
        host = normalise_host(sdp_host or "")
        if host:
            self.hosts.add(host)
        self.final = True

    def allows(self, host: str) -> bool | None:
        """True: may feed the stream; False: never; None: undecided until the answer."""
        norm = normalise_host(host) or host
        if self.pinned is not None:
            return norm == self.pinned[0]
        if self.policy is SourcePolicy.any or norm in self.hosts:
            return True if self.final else None
        return False if self.final else None

    def pin(self, addr: tuple[str, int]) -> None:
        """The stream's source from now on (a TCP reconnection must come from its host)."""
        self.pinned = (normalise_host(addr[0]) or addr[0], addr[1])
        log.info("media source pinned", host=self.pinned[0], port=addr[1])


def log_dropped(what: str, count: int, **fields: object) -> None:
    """Warn at the 1st, 10th, 100th… drop of a stream: visible, yet bounded under a flood."""
    if worth_logging(count):
        log.warning(what, dropped=count, **fields)
