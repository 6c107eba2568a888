"""INVITE dialogs towards devices: the signalling half of ``PlayController``.

INVITE (live / playback / download, UDP or TCP media; the offer from ``play_offer``) → 200
→ ACK; BYE from either side; CANCEL when the caller gives up before the final answer; INFO
with MANSRTSP for playback control; MediaStatus 121 ends a playback.  Listeners hear about
every session the device (its disappearance, its re-registration) ends, never about our
own ``stop``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import structlog

from . import play_offer
from . import sdp as sdplib
from .media_api import (
    MediaAnswer,
    MediaOffer,
    PlayError,
    PlayRequest,
    PlaySession,
    SessionEndListener,
)
from .message import NameAddr, SipRequest, SipResponse
from .registry import Registration
from .settings import ServerSettings
from .tasks import Spawn, tell
from .transaction import Endpoint, ServerTransaction, TransactionTimeout
from .transport import Peer

log = structlog.get_logger("sip.sessions")

BYE_TIMEOUT_S = 5.0


@dataclass
class Dialog:
    call_id: str
    device_id: str
    peer: Peer
    local_from: str
    remote_to: str
    remote_target: str
    cseq: int
    session: PlaySession
    rtsp_cseq: itertools.count  # type: ignore[type-arg]


class DeviceRequests(Protocol):
    """Out-of-dialog requests to registered devices (``sip.outgoing.Outgoing``)."""

    async def route(self, device_id: str) -> tuple[Registration, Peer]: ...

    def new_request(self, method: str, target_id: str, peer: Peer) -> SipRequest: ...


class InviteSessions:
    """Our INVITE dialogs with devices: the signalling half of ``PlayController``."""

    def __init__(
        self,
        endpoint: Endpoint,
        requests: DeviceRequests,
        settings: ServerSettings,
        *,
        contact: Callable[[], str],
        spawn: Spawn,
    ) -> None:
        self.endpoint = endpoint
        self.requests = requests
        self.settings = settings
        self.contact = contact  # our Contact URI, as devices reach us
        self.spawn = spawn
        self.dialogs: dict[str, Dialog] = {}
        self.listeners: list[SessionEndListener] = []
        self._abandoned: set[str] = set()  # call-ids we CANCELled: a late 200 gets ACK + BYE
        endpoint.on_stray_response = self._stray

    def add_listener(self, listener: SessionEndListener) -> None:
        self.listeners.append(listener)

    async def play(self, request: PlayRequest, offer: MediaOffer) -> PlaySession:
        body = play_offer.offer_sdp(request, offer).serialise()  # refuses a wrong offer first
        try:
            _, peer = await self.requests.route(request.device_id)
        except Exception as exc:  # noqa: BLE001 - SipError → PlayError for the media layer
            raise PlayError(str(exc), getattr(exc, "status", None)) from None
        req = self.requests.new_request("INVITE", request.channel_id, peer)
        c = self.settings
        req.set("Contact", f"<{self.contact()}>")
        req.set("Subject", play_offer.subject(request, offer, c.server_id))
        req.set("Content-Type", "APPLICATION/SDP")
        req.body = body
        log.info("invite", channel=request.channel_id, mode=request.mode.value, ssrc=offer.ssrc)
        try:
            resp = await self.endpoint.request(req, peer, timeout=c.invite_timeout_s)
        except TransactionTimeout:
            self._cancel(req, peer)
            raise PlayError(f"no answer to INVITE for {request.channel_id}", 408) from None
        except asyncio.CancelledError:
            self._cancel(req, peer)
            raise
        if resp.status >= 300:
            raise PlayError(f"device refused: {resp.status} {resp.reason}", resp.status)
        dialog_peer = peer
        ack_uri = _contact_uri(resp) or req.uri
        remote_to = resp.get("To") or ""
        self._ack(req, resp, ack_uri, dialog_peer)
        try:
            ans = sdplib.parse(resp.body)
        except sdplib.SdpError as exc:
            await self._bye_raw(req, remote_to, ack_uri, dialog_peer)
            raise PlayError(f"bad SDP answer: {exc}", 488) from None
        transport = offer.transport
        answer = MediaAnswer(
            ans.ip,
            ans.port,
            ans.ssrc,
            transport,
            ans.file_size,
            payload_types=sdplib.payload_types(ans),
        )
        session = PlaySession(
            call_id=req.call_id,
            request=request,
            offer=offer,
            answer=answer,
            started_at=datetime.now(UTC),
            extra={"device_setup": ans.setup or ""},
        )
        self.dialogs[req.call_id] = Dialog(
            call_id=req.call_id,
            device_id=request.device_id,
            peer=dialog_peer,
            local_from=req.get("From") or "",
            remote_to=remote_to,
            remote_target=ack_uri,
            cseq=req.cseq[0],
            session=session,
            rtsp_cseq=itertools.count(1),
        )
        return session

    def _ack(self, invite: SipRequest, resp: SipResponse, uri: str, peer: Peer) -> None:
        ack = SipRequest(method="ACK", uri=uri)
        ack.add("From", invite.get("From") or "")
        ack.add("To", resp.get("To") or "")
        ack.add("Call-ID", invite.call_id)
        ack.add("CSeq", f"{invite.cseq[0]} ACK")
        self.endpoint.send_ack(ack, peer)

    def _cancel(self, invite: SipRequest, peer: Peer) -> None:
        cancel = SipRequest(method="CANCEL", uri=invite.uri)
        cancel.add("Via", invite.get("Via") or "")
        for name in ("From", "To", "Call-ID"):
            cancel.add(name, invite.get(name) or "")
        cancel.add("CSeq", f"{invite.cseq[0]} CANCEL")
        cancel.add("Max-Forwards", "70")
        self._abandoned.add(invite.call_id)
        self.endpoint.transport.send(cancel, peer)
        asyncio.get_running_loop().call_later(
            64 * self.settings.t1, self._abandoned.discard, invite.call_id
        )

    def _stray(self, resp: SipResponse, peer: Peer) -> None:
        """A 200 to an INVITE we gave up on: acknowledge it and hang up at once."""
        if resp.cseq[1] != "INVITE" or resp.status >= 300 or resp.call_id not in self._abandoned:
            return
        self._abandoned.discard(resp.call_id)
        invite = SipRequest(method="INVITE", uri=_contact_uri(resp) or "sip:unknown@invalid")
        for name in ("From", "Call-ID", "CSeq"):
            invite.add(name, resp.get(name) or "")
        uri = invite.uri
        self._ack(invite, resp, uri, peer)
        self.spawn(self._bye_raw(invite, resp.get("To") or "", uri, peer), "sip-late-bye")

    async def _bye_raw(self, invite: SipRequest, remote_to: str, uri: str, peer: Peer) -> None:
        bye = SipRequest(method="BYE", uri=uri)
        bye.add("From", invite.get("From") or "")
        bye.add("To", remote_to)
        bye.add("Call-ID", invite.call_id)
        bye.add("CSeq", f"{invite.cseq[0] + 1} BYE")
        try:
            await self.endpoint.request(bye, peer, timeout=BYE_TIMEOUT_S)
        except TransactionTimeout:
            log.info("no answer to BYE", call_id=invite.call_id)

    async def _in_dialog(
        self, d: Dialog, method: str, body: bytes = b"", ctype: str = ""
    ) -> SipResponse:
        d.cseq += 1
        req = SipRequest(method=method, uri=d.remote_target)
        req.add("From", d.local_from)
        req.add("To", d.remote_to)
        req.add("Call-ID", d.call_id)
        req.add("CSeq", f"{d.cseq} {method}")
        if ctype:
            req.add("Content-Type", ctype)
        req.body = body
        return await self.endpoint.request(req, d.peer, timeout=BYE_TIMEOUT_S)

    async def stop(self, session: PlaySession) -> None:
        d = self.dialogs.pop(session.call_id, None)
        if d is None:
            return
        try:
            await self._in_dialog(d, "BYE")
        except TransactionTimeout:
            log.info("no answer to BYE", call_id=d.call_id)

    async def control_playback(
        self,
        session: PlaySession,
        *,
        scale: float | None = None,
        seek_s: float | None = None,
        pause: bool | None = None,
    ) -> None:
        d = self.dialogs.get(session.call_id)
        if d is None:
            raise PlayError("no such session", 481)
        bodies = []
        if pause is True:
            bodies.append(("PAUSE", "PauseTime: now"))
        elif pause is False:
            bodies.append(("PLAY", "Range: npt=now-"))
        if seek_s is not None:
            bodies.append(("PLAY", f"Range: npt={max(0.0, seek_s):g}-"))
        if scale is not None:
            bodies.append(("PLAY", f"Scale: {scale:.6f}"))
        for verb, line in bodies:
            text = f"{verb} RTSP/1.0\r\nCSeq: {next(d.rtsp_cseq)}\r\n{line}\r\n\r\n"
            try:
                resp = await self._in_dialog(d, "INFO", text.encode(), "Application/MANSRTSP")
            except TransactionTimeout:
                raise PlayError("no answer to INFO", 408) from None
            if resp.status != 200:
                raise PlayError(f"INFO refused: {resp.status}", resp.status)

    # --- from the device -----------------------------------------------------------

    def on_request(self, stx: ServerTransaction) -> None:
        req = stx.request
        d = self.dialogs.get(req.call_id)
        if d is None:
            stx.reply(481)
            return
        if req.method == "BYE":
            stx.reply(200)
            self.dialogs.pop(req.call_id, None)
            self.spawn(self._notify(d.session, "bye"), "sip-session-end")
        else:
            stx.reply(200)

    async def media_ended(self, call_id: str) -> None:
        """MediaStatus 121: the file ended; hang up and tell the listeners."""
        d = self.dialogs.pop(call_id, None)
        if d is None:
            return
        try:
            await self._in_dialog(d, "BYE")
        except TransactionTimeout:
            pass
        await self._notify(d.session, "media-status-121")

    async def device_gone(self, device_id: str, reason: str) -> None:
        for call_id, d in list(self.dialogs.items()):
            if d.device_id == device_id:
                self.dialogs.pop(call_id, None)
                await self._notify(d.session, f"device-{reason}")

    async def device_reconnected(self, device_id: str, peer: Peer) -> None:
        """The device registered anew while we held dialogs with it (a reboot, a new address):
        they belong to its old life.  Hang them up at its new address (best effort: a rebooted
        device answers 481) and tell the listeners, so wanted streams are INVITEd again."""
        for call_id, d in list(self.dialogs.items()):
            if d.device_id != device_id:
                continue
            self.dialogs.pop(call_id, None)
            d.peer = peer
            self.spawn(self._bye_quietly(d), "sip-stale-bye")
            await self._notify(d.session, "device-reconnected")

    async def _bye_quietly(self, d: Dialog) -> None:
        try:
            await self._in_dialog(d, "BYE")
        except (TransactionTimeout, OSError) as exc:
            log.info("no answer to BYE of a stale session", call_id=d.call_id, error=repr(exc))

    async def _notify(self, session: PlaySession, reason: str) -> None:
        log.info("session ended by device", call_id=session.call_id, reason=reason)
        await tell(self.listeners, session, reason)

    async def close_all(self, timeout: float = 2.0) -> None:
        stops = [self.stop(d.session) for d in list(self.dialogs.values())]
        if stops:
            try:
                await asyncio.wait_for(asyncio.gather(*stops, return_exceptions=True), timeout)
            except TimeoutError:
                log.info("sessions left without BYE answer", count=len(stops))


def _contact_uri(resp: SipResponse) -> str | None:
    contact = resp.get("Contact")
    if not contact:
        return None
    try:
        return NameAddr.parse(contact).uri
    except ValueError:
        return None
