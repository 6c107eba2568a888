"""Attacks on REGISTER digest (issue 19), each against the real server with a legitimate
simulated NVR registered: a captured Authorization replayed, foreign realm or username,
a refresh without credentials, password guessing, and a flood of junk REGISTERs that
must not create a single device row (on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sqlalchemy import func, select

from simdevice.nvr import SimulatedNvr
from sip.auth import authorization_header, parse_digest
from sip.message import SipRequest, new_branch, parse_datagram
from sip.server import SipServer
from sip.store import MemoryDeviceStore
from storage.db import Database
from storage.models import Device, DeviceStatus
from storage.objects import LocalObjectStore
from vms.config import load_settings
from vms.services import Services
from vms.sip_store import DbDeviceStore

from .sip_attack import UdpAttacker, keepalive, register
from .sip_support import (
    DOMAIN,
    nvr_config,
    nvr_id,
    running_nvr,
    running_server,
    server_config,
    wait_until,
)

URI = f"sip:34020000002000000001@{DOMAIN}"


def _answer(challenge_resp: object, device_id: str, password: str, **kw: str) -> str:
    """The Authorization an attacker computes for a 401 (``kw`` overrides realm/username)."""
    challenge = parse_digest(challenge_resp.get("WWW-Authenticate") or "")  # type: ignore[attr-defined]
    challenge.update(kw)
    user = kw.get("username", device_id)
    return authorization_header(user, password, "REGISTER", URI, challenge)


def _capture(nvr: SimulatedNvr) -> list[bytes]:
    """What the NVR puts on the wire (as a sniffer on the LAN sees it)."""
    sent: list[bytes] = []
    transport = nvr.endpoint.transport
    original = transport.send_bytes

    def send_bytes(data: bytes, peer: object) -> None:
        sent.append(data)
        original(data, peer)  # type: ignore[arg-type]

    transport.send_bytes = send_bytes  # type: ignore[method-assign]
    return sent


def _fresh_copy(data: bytes, port: int) -> SipRequest:
    """The captured request as a new transaction from ``port`` (Authorization unchanged)."""
    req = parse_datagram(data)
    assert isinstance(req, SipRequest)
    req.set("Via", f"SIP/2.0/UDP 127.0.0.1:{port};rport;branch={new_branch()}")
    req.set("CSeq", "900 REGISTER")
    return req


async def test_captured_authorization_replayed_from_another_port_or_again_is_refused() -> None:
    dev = nvr_id(1)
    store = MemoryDeviceStore({dev: "nvr-secret-9"})
    async with running_server(store, auto_create_devices=False) as server:
        nvr = SimulatedNvr(nvr_config(server, password="nvr-secret-9"))
        sent = _capture(nvr)
        await nvr.start(wait=True)
        try:
            captured = next(d for d in sent if d.startswith(b"REGISTER") and b"Authorization" in d)
            source = server.registrations[dev].source
            async with UdpAttacker(server.port) as evil:
                resp = await evil.ask(_fresh_copy(captured, evil.port))
                assert resp.status == 401  # the nonce was issued to the NVR's address
            # the same bytes again from the NVR's own socket: the nonce count is used up
            replay = _fresh_copy(captured, nvr.endpoint.port)
            assert (await nvr.endpoint.request(replay, await nvr.peer())).status == 401
            assert server.registrations[dev].source == source
            assert server.stats["auth_stale"] == 2
            assert await nvr.keepalive() == 200
            assert await nvr.register() == 200  # its own refresh: the next nonce count
        finally:
            await nvr.stop()


async def test_own_realm_or_anothers_username_is_refused() -> None:
    a, b = nvr_id(1), nvr_id(2)  # the attacker runs enterprise A's NVR and knows its password
    store = MemoryDeviceStore({a: "a-secret-11", b: "b-secret-22"})
    async with running_server(store, auto_create_devices=False) as server:
        async with running_nvr(nvr_config(server, n=2, password="b-secret-22")) as nvr_b:
            source = server.registrations[b].source
            async with UdpAttacker(server.port) as evil:
                # register as B, with A's username and A's password
                challenge = await evil.ask(register(b, evil.port))
                auth = _answer(challenge, b, "a-secret-11", username=a)
                resp = await evil.ask(register(b, evil.port, authorization=auth))
                assert resp.status == 403
                # A's own id and password, but the client's own realm
                challenge = await evil.ask(register(a, evil.port))
                auth = _answer(challenge, a, "a-secret-11", realm="9999999999")
                assert (await evil.ask(register(a, evil.port, authorization=auth))).status == 403
                # with our realm it is A's legitimate registration
                challenge = await evil.ask(register(a, evil.port))
                auth = _answer(challenge, a, "a-secret-11")
                assert (await evil.ask(register(a, evil.port, authorization=auth))).status == 200
            assert server.stats["auth_failed"] == 2
            assert server.registrations[b].source == source
            assert await nvr_b.keepalive() == 200


async def test_refresh_without_credentials_on_a_known_call_id_is_challenged() -> None:
    dev = nvr_id(1)
    async with running_server() as server, running_nvr(nvr_config(server)) as nvr:
        reg = server.registrations[dev]
        source, call_id = reg.source, reg.call_id
        async with UdpAttacker(server.port) as evil:
            req = register(dev, evil.port, call_id=call_id, cseq=reg.cseq + 1)
            assert (await evil.ask(req)).status == 401
        # the same from the NVR's own socket: a REGISTER without credentials is never enough
        own = nvr.agent.register_request(3600)
        assert (await nvr.endpoint.request(own, await nvr.peer())).status == 401
        assert server.registrations[dev].source == source
        assert server.registrations[dev].cseq == reg.cseq
        assert await nvr.keepalive() == 200


async def test_password_guessing_locks_the_id_out_but_not_the_registered_nvr() -> None:
    dev = nvr_id(1)
    store = MemoryDeviceStore({dev: "right-pass-1"})
    async with running_server(
        store, auto_create_devices=False, auth_max_failures=5, auth_lockout_s=1.0
    ) as server:
        async with running_nvr(nvr_config(server, password="right-pass-1")) as nvr:
            async with UdpAttacker(server.port) as evil:
                challenge = await evil.ask(register(dev, evil.port))
                reasons: list[str] = []
                t0 = time.monotonic()
                for n in range(300):  # 300 guesses, as fast as the platform answers
                    auth = _answer(challenge, dev, f"guess-{n:04d}")
                    resp = await evil.ask(register(dev, evil.port, authorization=auth))
                    reasons.append(f"{resp.status} {resp.reason}")
                guessing_s = time.monotonic() - t0
                assert reasons[:5] == ["403 Wrong Credentials"] * 5
                assert set(reasons[5:]) == {"403 Locked Out"}
                # no new challenge while locked, and even the right password does not help
                resp = await evil.ask(register(dev, evil.port))
                assert resp.status == 403 and resp.reason == "Locked Out"
                assert 1 <= int(resp.get("Retry-After") or 0) <= 2
                auth = _answer(challenge, dev, "right-pass-1")
                resp = await evil.ask(register(dev, evil.port, authorization=auth))
                assert resp.status == 403 and resp.reason == "Locked Out"
                # the NVR's own registration is untouched and refreshes as usual
                assert await nvr.register() == 200
                assert await nvr.keepalive() == 200
                # after the lockout: five more tries, then twice as long
                await asyncio.sleep(1.1)
                for n in range(5):
                    challenge = await evil.ask(register(dev, evil.port))
                    auth = _answer(challenge, dev, f"again-{n}")
                    resp = await evil.ask(register(dev, evil.port, authorization=auth))
                resp = await evil.ask(register(dev, evil.port))
                assert resp.reason == "Locked Out" and int(resp.get("Retry-After") or 0) >= 2
            assert server.stats["auth_failed"] == 10 and server.stats["auth_locked"] >= 297
            assert server.registrar.auth.lockout.lockouts == 2
            print(f"300 guesses answered in {guessing_s:.2f} s")


async def _flood(evil: UdpAttacker, requests: list[SipRequest], window: int = 200) -> list[int]:
    """Send ``requests`` ``window`` at a time; the statuses of the answers that came."""
    statuses: list[int] = []
    for i in range(0, len(requests), window):
        batch = requests[i : i + window]
        results = await asyncio.gather(
            *(evil.ask(r, timeout=15) for r in batch), return_exceptions=True
        )
        statuses += [r.status for r in results if not isinstance(r, BaseException)]
    return statuses


def _node(tmp_path: Path, db_url: str, **sip: object) -> tuple[Services, Database]:
    settings = load_settings(
        server={"data_dir": tmp_path / "data"},
        database={"url": db_url},
        sip={"host": "127.0.0.1", "port": 0, **sip},
    )
    settings.server.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url)
    db.open()
    return Services(settings, db, LocalObjectStore(settings.objects_path)), db


def _rows(db: Database) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(Device)) or 0


async def test_junk_registers_create_no_device_rows(tmp_path: Path, db_url: str) -> None:
    services, db = _node(tmp_path, db_url, password="global-pass-1")
    server = SipServer(server_config(password="global-pass-1"), DbDeviceStore(services))
    await server.start()
    try:
        async with UdpAttacker(server.port) as evil:
            fake = [f"3402000000118{n:07d}" for n in range(100, 5100)]
            junk = 'Digest username="x",realm="3402000000",nonce="00",uri="sip:x",response="0"'
            plain = [register(d, evil.port) for d in fake[:2000]]
            forged = [register(d, evil.port, authorization=junk) for d in fake[2000:4000]]
            t0 = time.monotonic()
            statuses = await _flood(evil, plain + forged)
            # and 1,000 that answered their challenge, with a guessed password
            challenges = await asyncio.gather(
                *(evil.ask(register(d, evil.port)) for d in fake[4000:])
            )
            guessed = [
                register(d, evil.port, authorization=_answer(c, d, "guess-0001"))
                for d, c in zip(fake[4000:], challenges, strict=True)
            ]
            statuses += await _flood(evil, guessed)
            flood_s = time.monotonic() - t0
        assert statuses.count(401) == 4000 and statuses.count(403) == 1000
        assert _rows(db) == 0  # not one row for 5,000 unauthenticated REGISTERs
        assert server.stats["auth_failed"] == 1000
        # the legitimate device with the configured password becomes a pending row
        async with running_nvr(nvr_config(server, password="global-pass-1")):

            def online() -> Device | None:
                with db.session() as s:
                    return s.scalar(select(Device).where(Device.online.is_(True)))

            await wait_until(online, 10, "the pending device online")
            device = online()
            assert device is not None and device.device_id == nvr_id(1)
            assert device.status == DeviceStatus.pending and _rows(db) == 1
        print(f"5,000 junk REGISTERs answered in {flood_s:.2f} s, 0 rows")
    finally:
        await server.close()
        db.close()


async def test_without_a_global_password_unknown_devices_are_only_listed(tmp_path: Path) -> None:
    services, db = _node(tmp_path, f"sqlite:///{tmp_path / 'u.db'}")
    server = SipServer(server_config(password=""), DbDeviceStore(services))
    await server.start()
    try:
        async with UdpAttacker(server.port) as evil:
            dev = nvr_id(7)
            challenge = await evil.ask(register(dev, evil.port))
            auth = _answer(challenge, dev, "whatever-1")
            resp = await evil.ask(register(dev, evil.port, authorization=auth))
            assert resp.status == 403 and resp.reason == "Unknown Device"
            assert (await evil.ask(keepalive(dev, evil.port))).status == 404
        assert _rows(db) == 0
        unknown = server.registrar.auth.unknown[dev]
        assert unknown.source == ("UDP", "127.0.0.1", evil.port) and unknown.attempts == 1
        # a device row without a password of its own cannot register either: no default one
        with db.session() as s:
            s.add(Device(device_id=nvr_id(8), name="no password"))
        nvr = SimulatedNvr(nvr_config(server, n=8, password="anything-1"))
        await nvr.endpoint.listen("127.0.0.1", 0, ("udp",))
        try:
            assert await nvr.register() == 403
        finally:
            await nvr.endpoint.close()
    finally:
        await server.close()
        db.close()
