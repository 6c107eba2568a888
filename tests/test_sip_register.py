"""REGISTER and keepalive against the real server over UDP and TCP, with simulated NVRs."""

from __future__ import annotations

import asyncio
import re

from simdevice.nvr import SimulatedNvr
from sip.auth import authorization_header, parse_digest
from sip.message import SipRequest
from sip.store import MemoryDeviceStore

from .sip_support import PASSWORD, nvr_config, nvr_id, running_nvr, running_server, wait_until


async def test_register_401_then_200_with_date_and_device_online() -> None:
    store = MemoryDeviceStore()
    async with running_server(store) as server:
        nvr = SimulatedNvr(nvr_config(server))
        await nvr.start()
        try:
            await asyncio.wait_for(nvr.state.registered.wait(), 5)
            dev = store.devices[nvr_id(1)]
            assert dev.pending and dev.online  # auto-created as pending
            assert dev.transport == "udp" and dev.expires_s == 3600
            reg = server.registrations[nvr_id(1)]
            assert reg.online and reg.peer.port == nvr.endpoint.port
            # A refresh on the same Call-ID is challenged like any REGISTER without credentials
            peer = await nvr.peer()
            resp = await nvr.endpoint.request(nvr.agent.register_request(3600), peer)
            assert resp.status == 401
            req = nvr.agent.register_request(3600)
            challenge = parse_digest(resp.get("WWW-Authenticate") or "")
            req.add(
                "Authorization",
                authorization_header(nvr_id(1), PASSWORD, "REGISTER", req.uri, challenge),
            )
            resp = await nvr.endpoint.request(req, peer)
            assert resp.status == 200
            # The 200 OK carries the GB28181 Date header, local time with millis, no zone.
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}", resp.get("Date") or "")
            assert resp.get("Expires") == "3600"
        finally:
            await nvr.stop()
        await wait_until(lambda: not store.devices[nvr_id(1)].online, what="unregister offline")
        assert nvr_id(1) not in server.registrations
        kinds = [h[0] for h in store.devices[nvr_id(1)].history]
        assert kinds == ["online", "offline"]
        assert store.devices[nvr_id(1)].history[-1][2] == "unregister"


async def test_wrong_password_is_403_and_unknown_device_refused_by_config() -> None:
    store = MemoryDeviceStore({nvr_id(1): "per-device-secret"})
    async with running_server(store, auto_create_devices=False) as server:
        nvr = SimulatedNvr(nvr_config(server))
        await nvr.endpoint.listen("127.0.0.1", 0, ("udp",))
        try:
            assert await nvr.register(password=PASSWORD) == 403  # global pw ≠ per-device pw
            assert await nvr.register(password="per-device-secret") == 200
            assert store.devices[nvr_id(1)].online
            other = SimulatedNvr(nvr_config(server, n=2))
            await other.endpoint.listen("127.0.0.1", 0, ("udp",))
            try:
                assert await other.register() == 403  # unknown, auto-create off
                assert nvr_id(2) not in store.devices
            finally:
                await other.endpoint.close()
        finally:
            await nvr.endpoint.close()


async def test_allow_list_missing_expires_and_bad_id() -> None:
    async with running_server(allowed_device_ids=(nvr_id(1),)) as server:
        nvr = SimulatedNvr(nvr_config(server, n=3))
        await nvr.endpoint.listen("127.0.0.1", 0, ("udp",))
        try:
            assert await nvr.register() == 403
            peer = await nvr.peer()
            req = nvr.agent.register_request(60)
            req.remove("Expires")
            assert (await nvr.endpoint.request(req, peer)).status == 400
            bad = SipRequest(method="REGISTER", uri=req.uri, headers=list(req.headers))
            bad.set("From", "<sip:12345@3402000000>;tag=1")
            bad.set("Expires", "60")
            bad.remove("Via")
            bad.set("CSeq", "99 REGISTER")
            assert (await nvr.endpoint.request(bad, peer)).status == 403
        finally:
            await nvr.endpoint.close()


async def test_keepalive_keeps_online_then_misses_make_offline() -> None:
    store = MemoryDeviceStore()
    async with running_server(store, keepalive_interval_s=0.15, keepalive_misses=2) as server:
        cfg = nvr_config(server, keepalive_interval_s=0.1)
        async with running_nvr(cfg) as nvr:
            await wait_until(lambda: nvr.state.keepalives_sent >= 5, what="keepalives")
            assert server.registrations[nvr_id(1)].online
            assert store.devices[nvr_id(1)].keepalive_at is not None
            nvr.keepalive_enabled = False  # the NVR goes silent
            await wait_until(lambda: not store.devices[nvr_id(1)].online, 3, "offline")
            assert store.devices[nvr_id(1)].history[-1][2] == "keepalive-timeout"
            nvr.keepalive_enabled = True  # back: the next keepalive brings it online again
            await wait_until(lambda: store.devices[nvr_id(1)].online, 3, "online again")


async def test_registration_expiry_and_keepalive_from_unknown_device() -> None:
    store = MemoryDeviceStore()
    async with running_server(store) as server:
        cfg = nvr_config(server, expires_s=1, keepalive_interval_s=30)
        nvr = SimulatedNvr(cfg)
        await nvr.endpoint.listen("127.0.0.1", 0, ("udp",))
        try:
            assert await nvr.register() == 200
            await wait_until(lambda: not store.devices[nvr_id(1)].online, 4, "expiry")
            assert store.devices[nvr_id(1)].history[-1][2] == "expired"
            assert await nvr.keepalive() == 404  # not registered: tells the NVR to register
        finally:
            await nvr.endpoint.close()


async def test_register_over_tcp_and_query_on_the_same_connection() -> None:
    store = MemoryDeviceStore()
    async with running_server(store) as server:
        async with running_nvr(nvr_config(server, transport="tcp")):
            reg = server.registrations[nvr_id(1)]
            assert reg.peer.transport == "TCP"
            assert store.devices[nvr_id(1)].transport == "tcp"
            info = await server.device_info(nvr_id(1))  # request goes down the device's socket
            assert info.channels == 4
            assert len(server.endpoint.transport.connections) == 1


async def test_register_storm_is_shed_with_503() -> None:
    """Past ``max_pending`` a REGISTER that needs the store is shed with 503; a challenge
    needs none (it is answered as the request arrives), so it still comes."""
    async with running_server(max_pending=0) as server:
        nvr = SimulatedNvr(nvr_config(server))
        await nvr.endpoint.listen("127.0.0.1", 0, ("udp",))
        try:
            assert await nvr.agent.register(60) == 503
            assert server.registrar.auth.counts["challenged"] == 1
        finally:
            await nvr.endpoint.close()
