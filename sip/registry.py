"""Who is registered, and where requests to them go: the registrar writes, senders read.

A table of its own so the parts that send to devices (queries, INVITE sessions) find a
device without depending on the registrar.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .transport import Peer

CHARSETS = ("UTF-8", "GB2312", "GBK", "GB18030")


@dataclass
class Registration:
    device_id: str
    peer: Peer  # where requests go: the latest REGISTER or MESSAGE source
    contact: str
    call_id: str
    expires_at: float
    last_seen: float
    online: bool = True
    charset: str = "GB2312"
    gb_version: str = ""
    source: tuple[str, str, int] = ("", "", 0)  # transport, host, port of the last REGISTER
    cseq: int = 0  # CSeq of the last accepted REGISTER
    registered_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def sent_by(self, peer: Peer) -> bool:
        """Whether ``peer`` is where this registration lives: the transport address of its
        REGISTER on UDP; on TCP the very connection requests to the device go down."""
        if peer.transport != self.peer.transport:
            return False
        if peer.stream:
            return peer.conn is not None and peer.conn is self.peer.conn
        return (peer.transport, peer.host, peer.port) == self.source


class Registry:
    """Registrations by device id: written by the registrar, read by whoever sends."""

    def __init__(self) -> None:
        self._by_id: dict[str, Registration] = {}

    def get(self, device_id: str) -> Registration | None:
        return self._by_id.get(device_id)

    def online(self, device_id: str) -> Registration | None:
        """The device's registration if it is online (requests may go to it)."""
        reg = self._by_id.get(device_id)
        return reg if reg is not None and reg.online else None

    def charset_of(self, device_id: str) -> str:
        """The charset its MESSAGEs use (a bodies' prolog or the device record)."""
        reg = self._by_id.get(device_id)
        return reg.charset if reg and reg.charset in CHARSETS else "GB2312"

    def moved(self, device_id: str, peer: Peer) -> None:
        """Requests to the device go to ``peer`` now (a TCP connection re-opened)."""
        reg = self._by_id.get(device_id)
        if reg is not None:
            reg.peer = peer

    def put(self, reg: Registration) -> None:
        self._by_id[reg.device_id] = reg

    def pop(self, device_id: str) -> Registration | None:
        return self._by_id.pop(device_id, None)

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._by_id

    def __getitem__(self, device_id: str) -> Registration:
        return self._by_id[device_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def values(self) -> list[Registration]:
        return list(self._by_id.values())
