"""The device side of subscriptions: a platform above subscribes to us, we NOTIFY it.

Installed on a :class:`~sip.user_agent.DeviceUserAgent` (``extra_methods["SUBSCRIBE"]``),
so the cascade towards a superior and the simulated NVR share it.  A SUBSCRIBE whose
body asks for Catalog, Alarm or MobilePosition is a subscription dialog: answered 200 with
the lifetime granted and a ``<Response>`` Result OK (as WVP answers), refreshed by the
subscriber in the dialog, ended by ``Expires: 0`` or at its expiry (a final NOTIFY
``terminated;reason=timeout`` then, RFC 6665 §4.2.2).  :meth:`Subscribers.notify` sends a
``<Notify>`` to every live subscriber of a kind.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from . import manscdp
from .manscdp import CONTENT_TYPE, el
from .message import NameAddr, SipParseError, SipRequest, response_for
from .notify import MOBILE_POSITION, subscription_kind
from .transaction import ServerTransaction, TransactionTimeout
from .user_agent import DeviceUserAgent

log = structlog.get_logger("sip.subscribers")

MIN_EXPIRES_S = 1
MAX_EXPIRES_S = 86400
DEFAULT_EXPIRES_S = 3600
NOTIFY_TIMEOUT_S = 10.0

ChangeListener = Callable[["Subscriber", str], None]  # (subscriber, "new" | "refreshed" | "ended")


@dataclass(eq=False)
class Subscriber:
    """A subscription a platform holds on us."""

    kind: str  # Catalog / Alarm / MobilePosition
    event: str  # its Event header, echoed in our NOTIFYs
    call_id: str
    remote: str  # the subscriber's From (with its tag): our NOTIFY's To
    local: str  # our side (its To with our tag): our NOTIFY's From
    target: str  # its Contact: our NOTIFY's Request-URI
    subscriber_id: str
    expires_at: float
    interval_s: int = 0  # MobilePosition <Interval>
    sn: int = 0
    cseq: itertools.count = field(default_factory=lambda: itertools.count(1))  # type: ignore[type-arg]
    sent: int = 0
    timer: asyncio.TimerHandle | None = None


class Subscribers:
    """Subscriptions held on one device identity; ``on_change`` hears of each new one."""

    def __init__(
        self,
        agent: DeviceUserAgent,
        *,
        on_change: ChangeListener | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.agent = agent
        self.on_change = on_change
        self.clock = clock
        self.by_call_id: dict[str, Subscriber] = {}
        agent.extra_methods["SUBSCRIBE"] = self.on_subscribe

    def active(self, kind: str) -> list[Subscriber]:
        now = self.clock()
        return [s for s in self.by_call_id.values() if s.kind == kind and s.expires_at > now]

    def has(self, kind: str) -> bool:
        return bool(self.active(kind))

    # --- SUBSCRIBE ------------------------------------------------------------------

    def on_subscribe(self, stx: ServerTransaction) -> None:
        req = stx.request
        try:
            doc = manscdp.decode(req.body)
        except manscdp.ManscdpError as exc:
            stx.reply(400, f"Bad MANSCDP: {exc}"[:80])
            return
        kind = subscription_kind(doc)
        if kind is None:
            stx.reply(489, "Bad Event")
            return
        expires = _expires(req)
        if expires is None:
            stx.reply(400, "Bad Expires")
            return
        existing = self.by_call_id.get(req.call_id)
        to_tag = _tag(req.get("To"))
        if to_tag and existing is None:
            stx.reply(481)  # a refresh of a subscription we do not hold (expired, rebooted)
            return
        expires = min(expires, MAX_EXPIRES_S)
        if 0 < expires < MIN_EXPIRES_S:
            stx.reply(423, "Interval Too Brief", Min_Expires=str(MIN_EXPIRES_S))
            return
        resp = response_for(req, 200, to_tag=self.agent.endpoint.local_tag)
        resp.set("Expires", str(expires))
        resp.set("Contact", self.agent.contact())
        resp.set("Content-Type", CONTENT_TYPE)
        resp.body = manscdp.encode(
            "Response",
            doc.cmd_type,
            doc.sn,
            doc.device_id,
            el("Result", "OK"),
            self.agent.settings.charset,
        )
        stx.respond(resp)
        if expires == 0:
            if existing is not None:
                self._remove(existing, "unsubscribed")
            return
        sub = existing or self._new(req, resp.get("To") or "", kind)
        sub.expires_at = self.clock() + expires
        sub.sn = doc.sn
        if kind == MOBILE_POSITION:
            text = doc.text("Interval")
            sub.interval_s = int(text) if text.isdigit() and len(text) < 6 else 5
        self._arm(sub, expires)
        log.info(
            "subscribed by platform",
            kind=kind,
            subscriber=sub.subscriber_id,
            expires=expires,
            refresh=existing is not None,
        )
        if self.on_change is not None:
            self.on_change(sub, "refreshed" if existing is not None else "new")

    def _new(self, req: SipRequest, local: str, kind: str) -> Subscriber:
        remote = req.get("From") or ""
        try:
            target = NameAddr.parse(req.get("Contact") or remote).uri
            subscriber_id = req.from_.user
        except SipParseError:
            target, subscriber_id = req.uri, ""
        sub = Subscriber(
            kind=kind,
            event=req.get("Event") or "presence",
            call_id=req.call_id,
            remote=remote,
            local=local,
            target=target,
            subscriber_id=subscriber_id,
            expires_at=0.0,
        )
        self.by_call_id[req.call_id] = sub
        return sub

    def _arm(self, sub: Subscriber, delay: float) -> None:
        if sub.timer is not None:
            sub.timer.cancel()
        sub.timer = asyncio.get_running_loop().call_later(delay, self._expired, sub)

    def _expired(self, sub: Subscriber) -> None:
        sub.timer = None
        if self.by_call_id.get(sub.call_id) is not sub:
            return
        left = sub.expires_at - self.clock()
        if left > 0:  # refreshed meanwhile, or the timer fired a hair early
            self._arm(sub, left)
            return
        log.info("subscription by platform expired", kind=sub.kind, subscriber=sub.subscriber_id)
        self._remove(sub, "expired")
        self.agent.tasks.spawn(self._send(sub, b"", "terminated;reason=timeout"), "sub-final")

    def _remove(self, sub: Subscriber, why: str) -> None:
        if sub.timer is not None:
            sub.timer.cancel()
            sub.timer = None
        self.by_call_id.pop(sub.call_id, None)
        if self.on_change is not None:
            self.on_change(sub, "ended")

    # --- NOTIFY ---------------------------------------------------------------------

    async def notify(self, kind: str, device_id: str, inner: str, cmd_type: str = "") -> int:
        """A ``<Notify>`` to every live subscriber of ``kind``; how many accepted it."""
        ok = 0
        for sub in self.active(kind):
            body = manscdp.encode(
                "Notify",
                cmd_type or kind,
                self.agent.next_sn(),
                device_id,
                inner,
                self.agent.settings.charset,
            )
            left = max(0, round(sub.expires_at - self.clock()))
            if await self._send(sub, body, f"active;expires={left}") == 200:
                ok += 1
        return ok

    async def _send(self, sub: Subscriber, body: bytes, state: str) -> int | None:
        req = SipRequest(method="NOTIFY", uri=sub.target)
        req.add("From", sub.local)
        req.add("To", sub.remote)
        req.add("Call-ID", sub.call_id)
        req.add("CSeq", f"{next(sub.cseq)} NOTIFY")
        req.add("Contact", self.agent.contact())
        req.add("Event", sub.event)
        req.add("Subscription-State", state)
        if body:
            req.add("Content-Type", CONTENT_TYPE)
            req.body = body
        try:
            peer = await self.agent.peer()
            resp = await self.agent.endpoint.request(req, peer, timeout=NOTIFY_TIMEOUT_S)
        except (TransactionTimeout, OSError, TimeoutError) as exc:
            log.info("notify not delivered", kind=sub.kind, error=repr(exc))
            return None
        sub.sent += 1
        if resp.status == 481 and self.by_call_id.get(sub.call_id) is sub:
            self._remove(sub, "subscriber forgot it")  # RFC 6665 §4.2.2: it is over
        return resp.status

    def close(self) -> None:
        for sub in list(self.by_call_id.values()):
            if sub.timer is not None:
                sub.timer.cancel()
        self.by_call_id.clear()


def _expires(req: SipRequest) -> int | None:
    raw = (req.get("Expires") or str(DEFAULT_EXPIRES_S)).strip()
    return int(raw) if raw.isdigit() and len(raw) < 10 else None


def _tag(value: str | None) -> str:
    if not value:
        return ""
    try:
        return NameAddr.parse(value).tag
    except SipParseError:
        return ""
