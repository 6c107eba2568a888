"""The device side of GB/T 28181: what a camera, an NVR or a lower platform does upward.

Two users here — this node cascading to a superior (``sip.cascade``) and the simulated
NVR (``simdevice``) — so REGISTER with digest, the keepalive / re-register loop, the
answers to MANSCDP queries and the dispatch of INVITE, ACK, BYE, INFO and CANCEL are
written once.  What the device *is* (its catalog, status, recordings, media) comes from
a :class:`DeviceRole`.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Protocol

import structlog

from . import manscdp
from . import sdp as sdplib
from .auth import authorization_header, parse_digest
from .manscdp import (
    CONTENT_TYPE,
    CatalogItem,
    DeviceInfo,
    DeviceStatusInfo,
    Manscdp,
    RecordItem,
    el,
)
from .message import SipRequest, SipResponse, new_call_id, new_tag, response_for
from .settings import AgentSettings
from .tasks import TaskSet
from .transaction import Endpoint, ServerTransaction, TransactionTimeout
from .transport import Peer

log = structlog.get_logger("sip.user_agent")

DISCARD_PORT = 9  # an answer's port when the device connects out (RFC 4145) or sends nothing
MESSAGE_TIMEOUT_S = 10.0
HEARD_MAX = 1024
LOST = (403, 404)  # keepalive answers meaning "the platform forgot you": register again


@dataclass
class AgentState:
    """What the agent did, for its owner and for tests."""

    registered: asyncio.Event = field(default_factory=asyncio.Event)
    register_status: int | None = None
    keepalives_sent: int = 0
    keepalive_failures: int = 0
    losses: int = 0  # times the platform lost us (its sessions with us are gone)
    queries: list[str] = field(default_factory=list)  # CmdTypes heard, the latest HEARD_MAX


class DeviceRole(Protocol):
    """What the device answers and streams; the agent does the SIP around it."""

    async def catalog(self) -> list[CatalogItem]: ...

    async def device_info(self) -> DeviceInfo: ...

    async def device_status(self) -> DeviceStatusInfo: ...

    async def record_info(self, query: Manscdp) -> list[RecordItem] | None: ...  # None: no answer

    async def device_control(self, control: Manscdp) -> bool: ...  # True: answer Result OK

    async def on_invite(self, stx: ServerTransaction) -> None: ...

    def on_ack(self, call_id: str) -> None: ...

    def on_bye(self, call_id: str) -> bool: ...  # False: no such dialog (481)

    def on_info(self, call_id: str, body: str) -> None: ...

    def on_cancel(self, call_id: str) -> None: ...


class DeviceUserAgent:
    """REGISTER, keepalive, MESSAGE and dialog dispatch for one device identity.

    ``endpoint`` is shared when the device lives on another part's socket (the cascade
    on the platform's); without one the agent makes and owns its own.  ``contact_host``
    is our address as the platform reaches it (Contact, Call-IDs).
    """

    def __init__(
        self,
        settings: AgentSettings,
        role: DeviceRole,
        *,
        contact_host: str,
        endpoint: Endpoint | None = None,
        t1: float = 0.5,
        user_agent: str = "vms-gb28181",
        state: AgentState | None = None,
        tz: tzinfo | None = None,
    ) -> None:
        self.settings = settings
        self.role = role
        self.owns_endpoint = endpoint is None
        self.endpoint = endpoint or Endpoint(
            self.on_request, self.on_ack, t1=t1, user_agent=user_agent
        )
        if self.owns_endpoint:
            self.endpoint.local_tag = new_tag()
        self.contact_host = contact_host  # our address as the platform reaches it
        self.tz = tz  # the device's local time, as RecordInfo answers carry it
        self.state = state or AgentState()
        self.tasks = TaskSet()
        self.keepalive_enabled = True  # False: the device goes silent (tests)
        # the registration's identity: a reboot is a new Call-ID (tests set it)
        self.call_id = new_call_id(contact_host)
        self.cseq = itertools.count(1)
        self.extra_methods: dict[str, Callable[[ServerTransaction], None]] = {}
        # Query/Control CmdTypes the role answers itself (PresetQuery, PTZPosition, ...)
        self.extra_queries: dict[str, Callable[[Manscdp], Awaitable[None]]] = {}
        # a <Response> from the platform (an alarm's acknowledgement): who wants to hear of it
        self.on_response: Callable[[Manscdp], None] | None = None
        self._tag = new_tag()
        self._sn = itertools.count(1)
        self._peer: Peer | None = None
        self._challenge: dict[str, str] | None = None  # the platform's last digest challenge
        self._nc = 0  # how often its nonce has been used
        self._runner: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Register and stay registered (keepalive, refresh) until :meth:`stop`."""
        self._runner = asyncio.create_task(self._run(), name=f"ua-{self.settings.device_id}")

    async def stop(self, unregister: bool = True) -> None:
        await self.stop_registering(unregister)
        await self.close()

    async def stop_registering(self, unregister: bool = True) -> None:
        """End the register/keepalive loop, unregistering (Expires 0) if registered."""
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None
        if unregister and self.state.registered.is_set():
            try:
                await asyncio.wait_for(self.register(expires=0), 2)
            except (TimeoutError, TransactionTimeout, OSError):
                pass

    async def close(self) -> None:
        """Cancel what the agent runs; close its endpoint if it owns one."""
        await self.tasks.cancel_all()
        if self.owns_endpoint:
            await self.endpoint.close()

    @property
    def running(self) -> bool:
        return self._runner is not None

    def contact(self, user: str | None = None) -> str:
        return f"<sip:{user or self.settings.device_id}@{self.contact_host}:{self.endpoint.port}>"

    def next_sn(self) -> int:
        return next(self._sn)

    async def peer(self) -> Peer:
        """The platform, on the configured transport (a TCP connection re-opened if lost)."""
        c = self.settings
        p = self._peer
        if p is None or (p.stream and (p.conn is None or not p.conn.is_open)):
            if c.transport in ("tcp", "tls"):
                p = await self.endpoint.transport.connect(
                    c.server_host, c.server_port, tls=c.transport == "tls"
                )
            else:
                p = Peer("UDP", c.server_host, c.server_port)
            self._peer = p
        return p

    async def _run(self) -> None:
        """Register, keep alive, re-register before expiry or once the platform lost us."""
        c = self.settings
        loop = asyncio.get_running_loop()
        while True:
            try:
                status = await self.register()
            except (TransactionTimeout, OSError, TimeoutError) as exc:
                log.info("register failed", device_id=c.device_id, error=repr(exc))
                status = None
            if status != 200:
                await asyncio.sleep(min(c.retry_s, c.keepalive_interval_s))
                continue
            refresh_at = loop.time() + c.expires_s * 0.8
            misses = 0
            while loop.time() < refresh_at:
                await asyncio.sleep(c.keepalive_interval_s)
                if not self.keepalive_enabled:
                    continue
                code = await self.keepalive()
                misses = 0 if code == 200 else misses + 1
                if code in LOST or misses >= c.keepalive_misses:
                    log.info("platform lost", device_id=c.device_id, answer=code)
                    self.state.registered.clear()
                    self.state.losses += 1
                    break

    # --- REGISTER / MESSAGE ------------------------------------------------------

    def register_request(self, expires: int) -> SipRequest:
        c = self.settings
        req = SipRequest(method="REGISTER", uri=f"sip:{c.server_id}@{c.server_domain}")
        req.add("From", f"<sip:{c.device_id}@{c.server_domain}>;tag={self._tag}")
        req.add("To", f"<sip:{c.device_id}@{c.server_domain}>")
        req.add("Call-ID", self.call_id)
        req.add("CSeq", f"{next(self.cseq)} REGISTER")
        req.add("Contact", self.contact())
        req.add("Expires", str(expires))
        return req

    async def register(self, expires: int | None = None, password: str | None = None) -> int:
        """One REGISTER exchange (answering a 401 once); returns the final status.

        A refresh reuses the platform's last nonce with the next ``nc``, as field devices
        do; a platform that wants a new one says so with a 401, answered with the new nonce.
        """
        c = self.settings
        exp = c.expires_s if expires is None else expires
        secret = password or c.password
        peer = await self.peer()
        req = self.register_request(exp)
        if self._challenge is not None:
            self._nc += 1
            req.add("Authorization", self._authorization(req, secret))
        resp = await self.endpoint.request(req, peer)
        if resp.status == 401:
            self._challenge = parse_digest(resp.get("WWW-Authenticate") or "")
            self._nc = 1
            req = self.register_request(exp)
            req.add("Authorization", self._authorization(req, secret))
            resp = await self.endpoint.request(req, peer)
        if resp.status != 200:
            self._challenge = None
        self.state.register_status = resp.status
        if resp.status == 200 and exp > 0:
            self.state.registered.set()
        else:
            self.state.registered.clear()
        return resp.status

    def _authorization(self, req: SipRequest, password: str) -> str:
        assert self._challenge is not None
        c = self.settings
        return authorization_header(
            c.device_id, password, "REGISTER", req.uri, self._challenge, nc=self._nc
        )

    async def keepalive(self) -> int | None:
        """One Keepalive; its answer's status, None when none came."""
        c = self.settings
        body = manscdp.encode(
            "Notify", "Keepalive", self.next_sn(), c.device_id, el("Status", "OK"), c.charset
        )
        self.state.keepalives_sent += 1
        try:
            resp = await self.send_message(body)
        except (TransactionTimeout, OSError) as exc:
            self.state.keepalive_failures += 1
            log.debug("keepalive failed", device_id=c.device_id, error=repr(exc))
            return None
        return resp.status

    async def send_message(self, body: bytes, call_id: str | None = None) -> SipResponse:
        c = self.settings
        peer = await self.peer()
        req = SipRequest(method="MESSAGE", uri=f"sip:{c.server_id}@{c.server_domain}")
        req.add("From", f"<sip:{c.device_id}@{c.server_domain}>;tag={new_tag()}")
        req.add("To", f"<sip:{c.server_id}@{c.server_domain}>")
        req.add("Call-ID", call_id or new_call_id(self.contact_host))
        req.add("CSeq", f"{next(self.cseq)} MESSAGE")
        req.add("Content-Type", CONTENT_TYPE)
        req.body = body
        return await self.endpoint.request(req, peer, timeout=MESSAGE_TIMEOUT_S)

    async def notify(self, cmd_type: str, target_id: str, inner: str, call_id: str = "") -> int:
        """A ``<Notify>`` upward (Alarm, MediaStatus, ...); the platform's answer status."""
        body = manscdp.encode(
            "Notify", cmd_type, self.next_sn(), target_id, inner, self.settings.charset
        )
        return (await self.send_message(body, call_id or None)).status

    async def respond(self, doc: Manscdp, inner: str, device_id: str | None = None) -> None:
        body = manscdp.encode(
            "Response",
            doc.cmd_type,
            doc.sn,
            device_id or doc.device_id or self.settings.device_id,
            inner,
            self.settings.charset,
        )
        await self.send_message(body)

    async def send_list(
        self,
        doc: Manscdp,
        device_id: str,
        list_name: str,
        items: list[str],
        per: int,
        head: str = "",
    ) -> None:
        """A multi-part answer: ``per`` items a MESSAGE, each after the previous one's 200."""
        total = len(items)
        per = max(1, per)
        chunks = [items[i : i + per] for i in range(0, total, per)] or [[]]
        for chunk in chunks:
            inner = (
                head
                + el("SumNum", total)
                + f'<{list_name} Num="{len(chunk)}">\r\n'
                + "".join(chunk)
                + f"</{list_name}>\r\n"
            )
            body = manscdp.encode(
                "Response", doc.cmd_type, doc.sn, device_id, inner, self.settings.charset
            )
            await self.send_message(body)

    # --- requests from the platform ----------------------------------------------

    def on_ack(self, req: SipRequest, peer: Peer) -> None:
        self.role.on_ack(req.call_id)

    def on_request(self, stx: ServerTransaction) -> None:
        req = stx.request
        method = req.method
        if method == "MESSAGE":
            try:
                doc = manscdp.decode(req.body)
            except manscdp.ManscdpError:
                stx.reply(400)
                return
            stx.reply(200)
            self.tasks.spawn(self.answer(doc), "ua-answer")
        elif method == "INVITE":
            self.tasks.spawn(self.role.on_invite(stx), "ua-invite")
        elif method == "BYE":
            stx.reply(200 if self.role.on_bye(req.call_id) else 481)
        elif method == "INFO":
            self.role.on_info(req.call_id, req.body.decode("utf-8", "replace"))
            stx.reply(200)
        elif method == "CANCEL":
            stx.reply(200)
            self.role.on_cancel(req.call_id)
        elif method in self.extra_methods:
            self.extra_methods[method](stx)
        else:
            stx.reply(405)

    async def answer(self, doc: Manscdp) -> None:
        """Answer one Query or Control from the platform with what the role says."""
        heard = self.state.queries
        heard.append(doc.cmd_type)
        if len(heard) > HEARD_MAX:
            del heard[: len(heard) - HEARD_MAX]
        c, role, cmd = self.settings, self.role, doc.cmd_type
        try:
            if doc.root == "Query" and cmd == "Catalog":
                items = [i.to_xml() for i in await role.catalog()]
                await self.send_list(doc, c.device_id, "DeviceList", items, c.catalog_per_message)
            elif doc.root == "Query" and cmd == "DeviceInfo":
                await self.respond(doc, (await role.device_info()).to_xml())
            elif doc.root == "Query" and cmd == "DeviceStatus":
                await self.respond(doc, (await role.device_status()).to_xml())
            elif doc.root == "Query" and cmd == "RecordInfo":
                records = await role.record_info(doc)
                if records is not None:
                    await self.send_list(
                        doc,
                        doc.device_id,
                        "RecordList",
                        [r.to_xml(self.tz) for r in records],
                        c.record_per_message,
                        el("Name", doc.device_id),
                    )
            elif doc.root in ("Query", "Control") and cmd in self.extra_queries:
                await self.extra_queries[cmd](doc)
            elif doc.root == "Response" and self.on_response is not None:
                self.on_response(doc)
            elif doc.root == "Control" and await role.device_control(doc):
                await self.respond(doc, el("Result", "OK"))
        except Exception as exc:  # noqa: BLE001 - logged; the platform asks again
            log.info("answer not delivered", cmd=cmd, device_id=c.device_id, error=repr(exc))

    def answer_invite(self, stx: ServerTransaction, answer: sdplib.Sdp, user: str) -> None:
        """200 OK to an INVITE with our SDP answer; ``user`` is the Contact's (the channel)."""
        resp = response_for(stx.request, 200, to_tag=self.endpoint.local_tag)
        resp.set("Contact", self.contact(user))
        resp.set("Content-Type", "application/sdp")
        resp.body = answer.serialise()
        stx.respond(resp)
