"""RFC 3261 transaction behaviour over real UDP sockets: retransmission timers, absorption of
retransmitted requests, timeouts, and INVITE 2xx retransmission until the ACK."""

from __future__ import annotations

import asyncio
import socket

import pytest

from sip.auth import DigestCheck, authorization_header, parse_digest
from sip.message import SipRequest, SipResponse, parse_datagram, response_for
from sip.store import MemoryDeviceStore
from sip.transaction import Endpoint, ServerTransaction, TransactionTimeout
from sip.transport import Peer

from .sip_support import running_server


def _sock() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


async def _recv(sock: socket.socket, timeout: float = 2.0) -> bytes:
    return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 65535), timeout)


def _request(method: str = "OPTIONS") -> SipRequest:
    req = SipRequest(method=method, uri="sip:34020000001180000001@127.0.0.1")
    req.add("From", "<sip:34020000002000000001@3402000000>;tag=a")
    req.add("To", "<sip:34020000001180000001@127.0.0.1>")
    req.add("Call-ID", "tx-test")
    req.add("CSeq", f"1 {method}")
    return req


async def test_client_retransmits_until_answered_then_times_out() -> None:
    ep = Endpoint(lambda stx: None, t1=0.05)
    await ep.listen("127.0.0.1", 0, ("udp",))
    sock = _sock()
    try:
        peer = Peer("UDP", "127.0.0.1", sock.getsockname()[1])
        task = asyncio.create_task(ep.request(_request(), peer))
        copies = [await _recv(sock) for _ in range(4)]  # first send + Timer E retransmissions
        assert len(set(copies)) == 1
        req = parse_datagram(copies[0])
        assert isinstance(req, SipRequest)
        sock.sendto(response_for(req, 200).serialise(), ("127.0.0.1", ep.port))
        resp = await asyncio.wait_for(task, 2)
        assert resp.status == 200
        with pytest.raises(TransactionTimeout):  # Timer F: 64·T1 without an answer
            await ep.request(_request(), peer)
        assert not ep.client_transactions
    finally:
        sock.close()
        await ep.close()


async def test_server_absorbs_retransmitted_requests() -> None:
    async with running_server() as server:
        sock = _sock()
        try:
            req = _request("OPTIONS")
            req.prepend("Via", "SIP/2.0/UDP 127.0.0.1:5999;rport;branch=z9hG4bKabsorb")
            data, addr = req.serialise(), ("127.0.0.1", server.port)
            sock.sendto(data, addr)
            first = await _recv(sock)
            sock.sendto(data, addr)  # a retransmission: same branch
            second = await _recv(sock)
            assert first == second  # the stored answer, resent
            assert server.endpoint.absorbed == 1
            resp = parse_datagram(first)
            assert isinstance(resp, SipResponse) and resp.status == 200
            via = resp.get("Via") or ""
            assert "rport=" in via and "received=127.0.0.1" in via  # RFC 3581
        finally:
            sock.close()


async def test_challenge_is_stateless() -> None:
    """RFC 3261 §8.2.7: a 401 keeps no transaction; a retransmitted REGISTER is challenged
    afresh, and either nonce works (they carry their own state)."""
    device = "34020000001180000001"
    store = MemoryDeviceStore({device: "absorb-pass-1"})
    async with running_server(store) as server:
        sock = _sock()
        try:
            data = (
                b"REGISTER sip:34020000002000000001@3402000000 SIP/2.0\r\n"
                b"Via: SIP/2.0/UDP 127.0.0.1:5999;rport;branch=z9hG4bKabsorb\r\n"
                b"From: <sip:34020000001180000001@3402000000>;tag=1\r\n"
                b"To: <sip:34020000001180000001@3402000000>\r\n"
                b"Call-ID: absorb\r\nCSeq: 1 REGISTER\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n"
            )
            addr = ("127.0.0.1", server.port)
            sock.sendto(data, addr)
            first = parse_datagram(await _recv(sock))
            sock.sendto(data, addr)  # a retransmission: same branch
            second = parse_datagram(await _recv(sock))
            assert isinstance(first, SipResponse) and isinstance(second, SipResponse)
            assert first.status == second.status == 401
            assert first.get("WWW-Authenticate") != second.get("WWW-Authenticate")
            assert server.endpoint.server_transactions == {}
            assert server.stats["register"] == 2 and server.endpoint.absorbed == 0
            via = first.get("Via") or ""
            assert "rport=" in via and "received=127.0.0.1" in via  # RFC 3581
            client = ("UDP", "127.0.0.1", sock.getsockname()[1])
            for resp in (first, second):  # both challenges are good for this device
                challenge = parse_digest(resp.get("WWW-Authenticate") or "")
                header = authorization_header(
                    device, "absorb-pass-1", "REGISTER", "sip:x", challenge
                )
                check = server.registrar.auth.digest.check_nonce(header, client, device)
                assert isinstance(check, DigestCheck)
        finally:
            sock.close()


async def test_invite_2xx_is_retransmitted_until_ack() -> None:
    def on_request(stx: ServerTransaction) -> None:
        stx.reply(200)

    ep = Endpoint(on_request, t1=0.05)
    await ep.listen("127.0.0.1", 0, ("udp",))
    sock = _sock()
    try:
        invite = _request("INVITE")
        invite.headers.insert(
            0, ("Via", f"SIP/2.0/UDP 127.0.0.1:{sock.getsockname()[1]};branch=z9hG4bKinv")
        )
        sock.sendto(invite.serialise(), ("127.0.0.1", ep.port))
        answers = [await _recv(sock) for _ in range(3)]  # 200, then Timer G retransmissions
        assert all(a.startswith(b"SIP/2.0 200") for a in answers)
        ack = _request("ACK")
        ack.headers.insert(0, ("Via", "SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKack"))
        sock.sendto(ack.serialise(), ("127.0.0.1", ep.port))
        await asyncio.sleep(0.3)
        while True:
            try:
                sock.recv(65535)
            except BlockingIOError:
                break
        await asyncio.sleep(0.4)
        with pytest.raises(BlockingIOError):
            sock.recv(65535)  # the ACK stopped the retransmissions
        assert not ep.invite_awaiting_ack
    finally:
        sock.close()
        await ep.close()
