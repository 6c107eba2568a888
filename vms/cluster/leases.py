"""Sharing the cameras out among the live nodes of one kind, by leases.

Each round (one heartbeat) a node renews what it holds, lets go of cameras no longer wanted
and of those above its fair share (so a node that joins gets work), and claims free or
expired leases up to its share.  It prefers the cameras that rank highest for it by
rendezvous hashing, so nodes claiming at once reach for different cameras, and a camera
returns to the same node when the set of nodes comes back to what it was.  What is wanted
(which cameras to pull or analyse: a read of every camera row) is read every few rounds or when
an event says it changed; the leases themselves are read every round, so a dead node's cameras
move within one heartbeat of its lease running out.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.orm import Session

from sip.channel_ref import ChannelRef
from vms.cluster.registry import Registry
from vms.logging import get_logger

log = get_logger("vms.cluster.leases")

Changed = Callable[[set[ChannelRef], set[ChannelRef]], Awaitable[None]]  # (gained, lost)


def rank(node: str, channel: ChannelRef) -> int:
    digest = hashlib.blake2b(f"{node}|{channel}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def plan(
    me: str,
    alive: list[str],
    wanted: list[ChannelRef],
    leases: dict[ChannelRef, tuple[str, bool]],
    held: set[ChannelRef],
) -> tuple[set[ChannelRef], list[ChannelRef]]:
    """(to release, to try to claim in order) for one round; pure, so it can be tested."""
    nodes = sorted(set(alive) | {me})
    low = len(wanted) // len(nodes)  # every node ends between low and high
    high = math.ceil(len(wanted) / len(nodes))
    wanted_set = set(wanted)
    release = held - wanted_set
    keep = sorted(held & wanted_set, key=lambda c: rank(me, c), reverse=True)
    loads = {n: 0 for n in nodes}
    for channel, (node, valid) in leases.items():
        if valid and channel in wanted_set and node in loads:
            loads[node] += 1
    free = [
        c
        for c in wanted
        if c not in held and (c not in leases or not leases[c][1] or leases[c][0] not in nodes)
    ]
    # give away only when nothing is free and another node is below the low mark
    deficit = sum(max(low - loads[n], 0) for n in nodes if n != me)
    if not free and deficit and len(keep) > low:
        n_give = min(len(keep) - low, deficit)
        release |= set(keep[len(keep) - n_give :])
        keep = keep[: len(keep) - n_give]
    room = max(high - len(keep), 0)
    claim = sorted(free, key=lambda c: rank(me, c), reverse=True)[:room]
    return release, claim


class LeaseKeeper:
    """The cameras of one kind this node holds, kept by :meth:`round` each heartbeat."""

    def __init__(
        self,
        registry: Registry,
        kind: str,
        role: str,
        wanted: Callable[[Session], list[ChannelRef]],
        changed: Changed,
        wanted_every: int = 5,
    ) -> None:
        self.registry = registry
        self.wanted_every = wanted_every  # rounds between reads of what is wanted
        self._wanted: list[ChannelRef] | None = None
        self._wanted_age = 0
        self.kind = kind
        self.role = role
        self.wanted = wanted
        self.changed = changed
        self.held: set[ChannelRef] = set()
        self.rounds = 0

    def _round(self, s: Session) -> tuple[set[ChannelRef], set[ChannelRef]]:
        reg = self.registry
        held = reg.renew(s, self.kind)
        if self._wanted is None or self._wanted_age >= self.wanted_every:
            self._wanted, self._wanted_age = self.wanted(s), 0
        self._wanted_age += 1
        wanted = self._wanted
        release, claim = plan(
            reg.name, reg.alive(s, self.role), wanted, reg.leases(s, self.kind), held
        )
        if release:
            reg.release(s, self.kind, release)
            held -= release
        for channel in claim:
            if reg.claim(s, self.kind, channel):
                held.add(channel)
        return held, release

    async def round(self) -> None:
        held, released = await self.registry.db.run(self._round)
        gained = held - self.held
        lost = self.held - held
        self.held = held
        self.rounds += 1
        if gained or lost:
            log.info(
                "leases changed",
                kind=self.kind,
                gained=len(gained),
                lost=len(lost),
                released=len(released),
                held=len(held),
            )
            await self.changed(gained, lost)

    def invalidate(self) -> None:
        """What is wanted may have changed (a device came or went, a camera's settings):
        read it again at the next round instead of up to ``wanted_every`` rounds later."""
        self._wanted = None

    async def drop_all(self) -> None:
        """This node stops: its cameras are let go (the lease rows go in ``Registry.leave``)."""
        lost, self.held = self.held, set()
        if lost:
            await self.changed(set(), lost)

    def status(self) -> dict[str, Any]:
        return {"kind": self.kind, "held": len(self.held)}
