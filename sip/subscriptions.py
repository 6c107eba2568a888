"""Subscriptions this platform holds on its devices (RFC 6665 dialogs, GB/T 28181 bodies).

On every (re)connection of a device it is subscribed to what ``settings.subscribe`` names
— Catalog (``Event: Catalog``), Alarm and MobilePosition (``Event: presence``) — each a
dialog of its own.  A subscription is refreshed in its dialog at 80 % of the lifetime the
device granted; one the device lost (481 or another refusal of the refresh) is made
again from scratch; one whose device is gone (offline, unregistered) by then is left to
run out and dropped at its expiry — no retry against a device that vanished, no timer
left behind.  A (re)connection replaces what the device's previous life held.  The NOTIFYs
of these dialogs are matched here; applying what they carry is the server's.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from . import manscdp
from .manscdp import CONTENT_TYPE
from .message import NameAddr, SipParseError, SipRequest, SipResponse
from .notify import SETTING_NAMES, SUBSCRIBE_EVENT, subscription_query_xml
from .registry import Registration
from .settings import ServerSettings
from .tasks import Spawn
from .transaction import Endpoint, TransactionTimeout
from .transport import Peer

log = structlog.get_logger("sip.subscriptions")

REFRESH_AT = 0.8  # of the granted lifetime
RETRY_S = 30.0  # an unanswered refresh is tried again this often, until the expiry
REQUEST_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 2.0
_EXPIRES_PARAM = re.compile(r"expires\s*=\s*(\d+)", re.I)


class DeviceRequests(Protocol):
    """Requests to registered devices (``sip.outgoing.Outgoing``)."""

    def charset_of(self, device_id: str) -> str: ...

    async def route(self, device_id: str) -> tuple[Registration, Peer]: ...

    def new_request(self, method: str, target_id: str, peer: Peer) -> SipRequest: ...


class Presence(Protocol):
    """Who is online now (``sip.registry.Registry``)."""

    def online(self, device_id: str) -> Registration | None: ...


@dataclass(eq=False)
class Subscription:
    """One subscription dialog: ``state`` pending → active → expired / refused / terminated."""

    device_id: str
    kind: str  # Catalog / Alarm / MobilePosition
    call_id: str
    local_from: str  # our From, with our tag
    remote_to: str = ""  # the device's To, with its tag (from the 2xx)
    remote_target: str = ""  # its Contact (the in-dialog Request-URI)
    cseq: int = 1
    state: str = "pending"
    expires_at: float = 0.0  # monotonic
    granted_s: int = 0
    notifies: int = 0
    last_error: str = ""
    timer: asyncio.TimerHandle | None = None

    def as_dict(self, now: float) -> dict[str, object]:
        return {
            "device_id": self.device_id,
            "kind": self.kind,
            "state": self.state,
            "expires_in_s": max(0, round(self.expires_at - now)) if self.state == "active" else 0,
            "granted_s": self.granted_s,
            "notifies": self.notifies,
            "last_error": self.last_error,
        }


def wanted_kinds(names: Sequence[str]) -> list[str]:
    """Subscription kinds from the setting (``catalog``, ``alarm``, ``mobile_position``)."""
    out = []
    for name in names:
        kind = SETTING_NAMES.get(name.lower(), name if name in SUBSCRIBE_EVENT else None)
        if kind and kind not in out:
            out.append(kind)
    return out


class DeviceSubscriptions:
    """The platform's subscriptions, by (device, kind); one timer handle each, no task idle."""

    def __init__(
        self,
        endpoint: Endpoint,
        requests: DeviceRequests,
        presence: Presence,
        settings: ServerSettings,
        *,
        contact: Callable[[], str],
        spawn: Spawn,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint = endpoint
        self.requests = requests
        self.presence = presence
        self.settings = settings
        self.contact = contact
        self.spawn = spawn
        self.clock = clock
        self.subs: dict[tuple[str, str], Subscription] = {}
        self.by_call_id: dict[str, Subscription] = {}
        self._sn = 0
        self.closed = False  # no new subscription or timer once the server is closing

    @property
    def kinds(self) -> list[str]:
        return wanted_kinds(self.settings.subscribe)

    # --- the connect listener ----------------------------------------------------------

    async def device_connected(self, device_id: str, reason: str) -> None:
        """A (re)connection: what its previous life held is gone; subscribe afresh."""
        for kind in self.kinds:
            await self.subscribe(device_id, kind)

    # --- subscribe / refresh / expire ------------------------------------------------

    async def subscribe(self, device_id: str, kind: str) -> Subscription:
        """A new subscription dialog (replacing any of this kind); returns it in its state."""
        self._drop(self.subs.get((device_id, kind)))
        sub = Subscription(device_id, kind, call_id="", local_from="")
        if self.closed:
            return self._failed(sub, "refused", "server closing")
        self.subs[(device_id, kind)] = sub
        try:
            _, peer = await self.requests.route(device_id)
        except Exception as exc:  # noqa: BLE001 - SipError: offline or unreachable
            return self._failed(sub, "refused", str(exc))
        req = self.requests.new_request("SUBSCRIBE", device_id, peer)
        sub.call_id, sub.local_from = req.call_id, req.get("From") or ""
        sub.cseq, sub.remote_target = req.cseq[0], req.uri
        self.by_call_id[sub.call_id] = sub  # a NOTIFY may overtake the 200 (RFC 6665 §4.1.2.4)
        self._fill(req, sub, self.settings.subscribe_expires_s)
        await self._send(sub, req, peer, initial=True)
        return sub

    def _fill(self, req: SipRequest, sub: Subscription, expires: int) -> None:
        self._sn += 1
        req.set("Contact", f"<{self.contact()}>")
        req.set("Event", SUBSCRIBE_EVENT[sub.kind])
        req.set("Expires", str(expires))
        req.set("Content-Type", CONTENT_TYPE)
        inner = subscription_query_xml(sub.kind, self.settings.mobile_position_interval_s)
        req.body = manscdp.encode(
            "Query",
            sub.kind,
            self._sn,
            sub.device_id,
            inner,
            self.requests.charset_of(sub.device_id),
        )

    async def _send(self, sub: Subscription, req: SipRequest, peer: Peer, initial: bool) -> None:
        try:
            resp = await self.endpoint.request(req, peer, timeout=REQUEST_TIMEOUT_S)
        except (TransactionTimeout, OSError) as exc:
            if initial:
                self._failed(sub, "refused", f"no answer: {exc}")
            else:
                self._retry_later(sub, f"no answer to refresh: {exc}")
            return
        if self.subs.get((sub.device_id, sub.kind)) is not sub:
            return  # replaced (a reconnection) while we waited
        if 200 <= resp.status < 300:
            self._granted(sub, resp, int(req.get("Expires") or 0))
        elif initial:
            self._failed(sub, "refused", f"{resp.status} {resp.reason}")
        else:  # the device lost it (481), or refuses it now: start over
            log.info(
                "subscription refresh refused",
                device_id=sub.device_id,
                kind=sub.kind,
                status=resp.status,
            )
            self.spawn(self.subscribe(sub.device_id, sub.kind), "sip-resubscribe")

    def _granted(self, sub: Subscription, resp: SipResponse, asked: int) -> None:
        granted = _expires_of(resp, asked)
        if granted <= 0:
            self._end(sub, "terminated", "granted no lifetime")
            return
        if not sub.remote_to:
            sub.remote_to = resp.get("To") or ""
            sub.remote_target = _contact_uri(resp) or sub.remote_target
        sub.state, sub.granted_s, sub.last_error = "active", granted, ""
        sub.expires_at = self.clock() + granted
        self._arm(sub, granted * REFRESH_AT, self._refresh)
        log.info("subscribed", device_id=sub.device_id, kind=sub.kind, expires=granted)

    def _arm(
        self, sub: Subscription, delay: float, action: Callable[[Subscription], object]
    ) -> None:
        if sub.timer is not None:
            sub.timer.cancel()
            sub.timer = None
        if not self.closed:
            sub.timer = asyncio.get_running_loop().call_later(max(0.0, delay), action, sub)

    def _refresh(self, sub: Subscription) -> None:
        sub.timer = None
        if self.subs.get((sub.device_id, sub.kind)) is not sub:
            return
        if self.presence.online(sub.device_id) is None:  # gone: let it run out, cleanly
            self._arm(sub, sub.expires_at - self.clock(), self._expire)
            return
        self.spawn(self._send_refresh(sub), "sip-subscription-refresh")

    async def _send_refresh(self, sub: Subscription) -> None:
        try:
            _, peer = await self.requests.route(sub.device_id)
        except Exception as exc:  # noqa: BLE001 - went offline meanwhile
            self._retry_later(sub, str(exc))
            return
        sub.cseq += 1
        req = SipRequest(method="SUBSCRIBE", uri=sub.remote_target)
        req.add("From", sub.local_from)
        req.add("To", sub.remote_to)
        req.add("Call-ID", sub.call_id)
        req.add("CSeq", f"{sub.cseq} SUBSCRIBE")
        self._fill(req, sub, self.settings.subscribe_expires_s)
        await self._send(sub, req, peer, initial=False)

    def _retry_later(self, sub: Subscription, error: str) -> None:
        sub.last_error = error
        left = sub.expires_at - self.clock()
        if left <= 1.0:
            self._expire(sub)
        else:
            self._arm(sub, min(RETRY_S, left / 2), self._refresh)

    def _expire(self, sub: Subscription) -> None:
        log.info("subscription expired", device_id=sub.device_id, kind=sub.kind)
        self._end(sub, "expired", sub.last_error or "device gone")

    def _failed(self, sub: Subscription, state: str, error: str) -> Subscription:
        log.info("subscribe failed", device_id=sub.device_id, kind=sub.kind, error=error)
        self._end(sub, state, error)
        return sub

    def _end(self, sub: Subscription, state: str, error: str) -> None:
        """The subscription is over; it stays listed (with why) until replaced."""
        sub.state, sub.last_error = state, error
        if sub.timer is not None:
            sub.timer.cancel()
            sub.timer = None
        if self.by_call_id.get(sub.call_id) is sub:
            del self.by_call_id[sub.call_id]

    def _drop(self, sub: Subscription | None) -> None:
        if sub is not None:
            self._end(sub, "terminated", "replaced")

    # --- NOTIFY from a device ----------------------------------------------------------

    def on_notify(self, req: SipRequest) -> Subscription | None:
        """The active subscription a NOTIFY belongs to (None: none of ours)."""
        sub = self.by_call_id.get(req.call_id)
        if sub is None:
            return None
        sub.notifies += 1
        state = (req.get("Subscription-State") or "active").strip().lower()
        if state.startswith("terminated"):
            log.info(
                "subscription ended by device", device_id=sub.device_id, kind=sub.kind, state=state
            )
            self._end(sub, "terminated", state)
            if ("timeout" in state or "deactivated" in state) and self.presence.online(
                sub.device_id
            ):
                self.spawn(self.subscribe(sub.device_id, sub.kind), "sip-resubscribe")
        return sub

    # --- ending --------------------------------------------------------------------------

    async def unsubscribe(self, device_id: str, kind: str) -> None:
        """End a subscription in its dialog (``Expires: 0``)."""
        sub = self.subs.get((device_id, kind))
        if sub is None or sub.state != "active":
            return
        self._end(sub, "terminated", "unsubscribed")
        try:
            _, peer = await self.requests.route(device_id)
        except Exception:  # noqa: BLE001 - offline: nothing to tell it
            return
        sub.cseq += 1
        req = SipRequest(method="SUBSCRIBE", uri=sub.remote_target)
        for name, value in (("From", sub.local_from), ("To", sub.remote_to)):
            req.add(name, value)
        req.add("Call-ID", sub.call_id)
        req.add("CSeq", f"{sub.cseq} SUBSCRIBE")
        self._fill(req, sub, 0)
        try:
            await self.endpoint.request(req, peer, timeout=CLOSE_TIMEOUT_S)
        except (TransactionTimeout, OSError):
            pass

    async def close(self) -> None:
        """Unsubscribe what is active (best effort, briefly) and cancel every timer."""
        self.closed = True
        active = [s for s in self.subs.values() if s.state == "active"]
        if active:
            ends = [self.unsubscribe(s.device_id, s.kind) for s in active]
            try:
                await asyncio.wait_for(
                    asyncio.gather(*ends, return_exceptions=True), CLOSE_TIMEOUT_S
                )
            except TimeoutError:
                log.info("subscriptions left without unsubscribe answer", count=len(active))
        for sub in list(self.subs.values()):
            if sub.timer is not None:
                sub.timer.cancel()
                sub.timer = None
        self.by_call_id.clear()

    def snapshot(self, device_id: str | None = None) -> list[dict[str, object]]:
        now = self.clock()
        return [
            s.as_dict(now)
            for (dev, _), s in sorted(self.subs.items())
            if device_id is None or dev == device_id
        ]


def _expires_of(resp: SipResponse, asked: int) -> int:
    raw = (resp.get("Expires") or "").strip()
    if raw.isdigit() and len(raw) < 9:
        return int(raw)
    m = _EXPIRES_PARAM.search(resp.get("Contact") or "")
    return int(m.group(1)) if m else asked


def _contact_uri(resp: SipResponse) -> str | None:
    contact = resp.get("Contact")
    if not contact:
        return None
    try:
        return NameAddr.parse(contact).uri
    except SipParseError:
        return None
