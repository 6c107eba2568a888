"""RFC 3261 §17 transactions on top of :mod:`sip.transport`.

Client side: Timer A/E retransmit over UDP (T1 doubling, capped at T2 for
non-INVITE), Timer B/F give up after 64·T1.  Server side: retransmitted requests
are absorbed by resending the last response; Timer J/K keep the record around
long enough for that; INVITE final responses are retransmitted until the ACK
(Timer G/H).  Timers are ``call_later`` handles, never tasks, so an idle
endpoint holds no coroutine.

Server state is bounded: a non-INVITE request refused (4xx–6xx) is forgotten at once — a
retransmission is simply refused again.  That includes the 401 challenge: RFC 3261 §8.2.7
names challenges as the common use of a stateless UAS, and our nonces carry their own
state, so a retransmitted REGISTER gets a fresh, equally valid challenge (as Kamailio's
stateless replies do) and a flood of junk REGISTERs fills no table.  Past
``max_transactions`` requests are handled without a record (a retransmission is handled
again), so a flood costs no memory and legitimate devices are still answered.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from .message import (
    SipParseError,
    SipRequest,
    SipResponse,
    Via,
    canonical,
    new_branch,
    response_for,
)
from .transport import Peer, SipTransport, TcpLimits

log = structlog.get_logger("sip.transaction")

T1 = 0.5
T2 = 4.0
T4 = 5.0
MAX_FORWARDS = "70"
MAX_TRANSACTIONS = 10_000


class TransactionTimeout(Exception):
    """No final response within Timer B/F (or the caller's shorter limit)."""


@dataclass(eq=False)
class ServerTransaction:
    request: SipRequest
    peer: Peer
    endpoint: Endpoint
    last_response: SipResponse | None = None
    _timer: asyncio.TimerHandle | None = None
    _interval: float = T1

    @property
    def key(self) -> tuple[str, str, str]:
        return server_key(self.request)

    def respond(self, resp: SipResponse) -> None:
        self.last_response = resp
        self.endpoint.transport.send(resp, self.peer)
        if resp.status < 200:
            return
        ep = self.endpoint
        if self.request.method == "INVITE" and self.peer.transport == "UDP":
            self._interval = ep.t1
            self._arm_retransmit()
            ep.invite_awaiting_ack[(self.request.call_id, self.request.cseq[0])] = self
            self._timer_h = ep.loop.call_later(64 * ep.t1, self._terminate)
        elif resp.status >= 400 or self.peer.transport != "UDP":
            self._terminate()  # refused: nothing worth absorbing retransmissions for
        else:
            ep.loop.call_later(64 * ep.t1, self._terminate)  # Timer J

    def reply(self, status: int, reason: str | None = None, **kwargs: str) -> SipResponse:
        resp = response_for(self.request, status, reason, to_tag=self.endpoint.local_tag)
        for name, value in kwargs.items():
            resp.set(name.replace("_", "-"), value)
        self.respond(resp)
        return resp

    def _arm_retransmit(self) -> None:
        self._timer = self.endpoint.loop.call_later(self._interval, self._retransmit)

    def _retransmit(self) -> None:
        if self.last_response is not None:
            self.endpoint.transport.send(self.last_response, self.peer)
        self._interval = min(self._interval * 2, T2)
        self._arm_retransmit()

    def acked(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _terminate(self) -> None:
        self.acked()
        ep = self.endpoint
        if ep.server_transactions.get(self.key) is self:
            del ep.server_transactions[self.key]
        ep.invite_awaiting_ack.pop((self.request.call_id, self.request.cseq[0]), None)


@dataclass(eq=False)
class ClientTransaction:
    request: SipRequest
    peer: Peer
    future: asyncio.Future[SipResponse]
    on_provisional: Callable[[SipResponse], None] | None = None
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    interval: float = T1
    got_provisional: bool = False
    timeout: float = 32.0

    def cancel_timers(self) -> None:
        for t in self.timers:
            t.cancel()
        self.timers.clear()


def server_key(req: SipRequest) -> tuple[str, str, str]:
    via = req.via
    method = "INVITE" if req.method == "ACK" else req.method
    return (via.branch or req.call_id + str(req.cseq[0]), method, f"{via.host}:{via.port}")


RequestHandler = Callable[[ServerTransaction], None]
AckHandler = Callable[[SipRequest, Peer], None]


class Endpoint:
    """A SIP endpoint: transport + transactions.  The owner handles requests."""

    def __init__(
        self,
        on_request: RequestHandler,
        on_ack: AckHandler | None = None,
        t1: float = T1,
        user_agent: str = "vms-gb28181",
        tcp_limits: TcpLimits | None = None,
        max_transactions: int = MAX_TRANSACTIONS,
    ) -> None:
        self.on_request = on_request
        self.on_ack = on_ack
        self.t1 = t1
        self.user_agent = user_agent
        self.max_transactions = max_transactions
        self.unstored = 0  # requests handled without a record: the table was full
        self.absorbed = 0  # retransmitted requests answered from their transaction
        self.transport = SipTransport(self._on_message, self._on_error, tcp_limits)
        self.client_transactions: dict[tuple[str, str], ClientTransaction] = {}
        self.server_transactions: dict[tuple[str, str, str], ServerTransaction] = {}
        self.invite_awaiting_ack: dict[tuple[str, int], ServerTransaction] = {}
        self.local_tag = ""
        self.bad_messages = 0
        self.on_stray_response: Callable[[SipResponse, Peer], None] | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    async def listen(
        self,
        host: str,
        port: int,
        transports: tuple[str, ...] = ("udp", "tcp"),
        tls: ssl.SSLContext | None = None,
        tls_port: int = 0,
    ) -> None:
        await self.transport.listen(host, port, transports, tls, tls_port)

    @property
    def host(self) -> str:
        return self.transport.host

    @property
    def port(self) -> int:
        return self.transport.port

    async def close(self) -> None:
        for tx in list(self.client_transactions.values()):
            tx.cancel_timers()
            if not tx.future.done():
                tx.future.set_exception(TransactionTimeout("endpoint closed"))
        self.client_transactions.clear()
        for stx in list(self.server_transactions.values()):
            stx.acked()
        self.server_transactions.clear()
        await self.transport.close()

    # --- incoming ---------------------------------------------------------------

    def _on_error(self, data: bytes, peer: Peer, exc: SipParseError) -> None:
        self.bad_messages += 1
        resp = bad_request_for(data, str(exc))
        if resp is not None:
            self.transport.send(resp, peer)

    def _on_message(self, msg: SipRequest | SipResponse, peer: Peer) -> None:
        if isinstance(msg, SipResponse):
            self._on_response(msg, peer)
            return
        if msg.method == "ACK":
            stx = self.invite_awaiting_ack.pop((msg.call_id, msg.cseq[0]), None)
            if stx is not None:
                stx.acked()
            if self.on_ack is not None:
                self.on_ack(msg, peer)
            return
        self._note_received(msg, peer)
        key = server_key(msg)
        stx = self.server_transactions.get(key)
        if stx is not None:  # retransmission: absorb
            self.absorbed += 1
            if stx.last_response is not None:
                self.transport.send(stx.last_response, peer)
            return
        stx = ServerTransaction(msg, peer, self)
        if len(self.server_transactions) < self.max_transactions:
            self.server_transactions[key] = stx
        else:
            self.unstored += 1
        try:
            self.on_request(stx)
        except Exception as exc:
            log.exception("request handler failed", method=msg.method, error=repr(exc))
            if stx.last_response is None:
                stx.reply(500)

    @staticmethod
    def _note_received(msg: SipRequest, peer: Peer) -> None:
        if peer.transport == "UDP":
            msg.note_received(peer.host, peer.port)

    def _on_response(self, resp: SipResponse, peer: Peer) -> None:
        try:
            key = (resp.via.branch, resp.cseq[1])
        except SipParseError:
            return
        tx = self.client_transactions.get(key)
        if tx is None:  # stray or retransmitted final response (Timer K absorbs)
            if self.on_stray_response is not None:
                self.on_stray_response(resp, peer)
            return
        if resp.status < 200:
            tx.got_provisional = True
            if tx.request.method == "INVITE":
                tx.cancel_timers()  # Timer A stops on any provisional
                self._arm_timeout(tx, tx.timeout)
            if tx.on_provisional is not None:
                tx.on_provisional(resp)
            return
        tx.cancel_timers()
        self.client_transactions.pop(key, None)
        if not tx.future.done():
            tx.future.set_result(resp)

    # --- outgoing ---------------------------------------------------------------

    def via_for(self, peer: Peer, branch: str | None = None) -> str:
        branch = branch or new_branch()
        return f"SIP/2.0/{peer.transport} {self.host}:{self.port};rport;branch={branch}"

    async def request(
        self,
        req: SipRequest,
        peer: Peer,
        timeout: float | None = None,
        on_provisional: Callable[[SipResponse], None] | None = None,
    ) -> SipResponse:
        """Send a request and wait for its final response (raises TransactionTimeout)."""
        if not req.get_all("Via"):
            req.prepend("Via", self.via_for(peer))
        if req.get("Max-Forwards") is None:
            req.set("Max-Forwards", MAX_FORWARDS)
        if req.get("User-Agent") is None:
            req.set("User-Agent", self.user_agent)
        fut: asyncio.Future[SipResponse] = self.loop.create_future()
        tx = ClientTransaction(req, peer, fut, on_provisional)
        tx.interval = self.t1
        tx.timeout = min(timeout or 64 * self.t1, 64 * self.t1)
        key = (req.via.branch, req.method)
        self.client_transactions[key] = tx
        data = req.serialise()
        self.transport.send_bytes(data, peer)
        if peer.transport == "UDP":
            tx.timers.append(self.loop.call_later(self.t1, self._retransmit, tx, data))
        self._arm_timeout(tx, tx.timeout)
        try:
            return await fut
        finally:
            tx.cancel_timers()
            self.client_transactions.pop(key, None)

    def _arm_timeout(self, tx: ClientTransaction, delay: float) -> None:
        def expire() -> None:
            if not tx.future.done():
                tx.future.set_exception(
                    TransactionTimeout(f"{tx.request.method} to {tx.peer.addr}: no final response")
                )

        tx.timers.append(self.loop.call_later(delay, expire))

    def _retransmit(self, tx: ClientTransaction, data: bytes) -> None:
        if tx.future.done():
            return
        if tx.request.method == "INVITE" and tx.got_provisional:
            return
        self.transport.send_bytes(data, tx.peer)
        if tx.request.method == "INVITE":
            tx.interval *= 2
        else:
            tx.interval = min(tx.interval * 2, T2) if not tx.got_provisional else T2
        tx.timers.append(self.loop.call_later(tx.interval, self._retransmit, tx, data))

    def send_ack(self, ack: SipRequest, peer: Peer) -> None:
        """ACK for a 2xx is its own transaction-less request (RFC 3261 §13.2.2.4)."""
        if not ack.get_all("Via"):
            ack.prepend("Via", self.via_for(peer))
        ack.set("Max-Forwards", MAX_FORWARDS)
        self.transport.send(ack, peer)


def bad_request_for(data: bytes, reason: str) -> SipResponse | None:
    """A 400 for bytes that failed to parse, when enough headers survive to address it."""
    try:
        text = data.decode("utf-8", errors="replace")
    except Exception:  # noqa: BLE001
        return None
    head = text.replace("\r\n", "\n").split("\n\n", 1)[0].split("\n")
    if not head or head[0].startswith("SIP/") or " SIP/2.0" not in head[0]:
        return None
    found: dict[str, list[str]] = {}
    for line in head[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip():
            found.setdefault(canonical(name), []).append(value.strip())
    if not all(k in found for k in ("Via", "From", "To", "Call-ID", "CSeq")):
        return None
    try:
        Via.parse(found["Via"][0])
    except SipParseError:
        return None
    resp = SipResponse(status=400, reason="Bad Request")
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        for v in found[name]:
            resp.add(name, v.replace("\r", " ")[:500])
    resp.set("Warning", f'399 - "{reason[:100]}"'.replace("\n", " "))
    return resp
