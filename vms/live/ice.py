"""Which local addresses our WebRTC peers offer as ICE host candidates.

aioice gathers on every interface except loopback and has no per-connection
option for it.  A node on a closed network (or a test) must offer exactly the
addresses browsers can reach, so gathering reads them from a context variable
set around ``setLocalDescription``; without it aioice behaves as before.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence

import aioice.ice

_ADDRESSES: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "vms_live_ice_addresses", default=None
)
_original_get_host_addresses = aioice.ice.get_host_addresses


def _scoped_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _ADDRESSES.get()
    if chosen is None:
        return _original_get_host_addresses(use_ipv4, use_ipv6)
    return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]


def install() -> None:
    """Route aioice's host-address discovery through the context variable (idempotent)."""
    aioice.ice.get_host_addresses = _scoped_host_addresses


@contextlib.contextmanager
def host_addresses(addresses: Sequence[str]) -> Iterator[None]:
    """Gather host candidates on ``addresses`` only; an empty list keeps aioice's own choice.

    Tasks created inside the block (aiortc gathers in child tasks) inherit the
    choice, because asyncio copies the context into new tasks.
    """
    install()
    token = _ADDRESSES.set(tuple(addresses) if addresses else None)
    try:
        yield
    finally:
        _ADDRESSES.reset(token)
