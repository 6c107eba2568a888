"""The device-side user agent (shared by the simulated NVR and the cascade): it registers
again when the platform forgets it or stops answering, and dispatches what it is sent."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from simdevice.nvr import SimulatedNvr
from sip.manscdp import DeviceStatusInfo
from sip.server import SipServer
from sip.store import MemoryDeviceStore
from sip.transaction import ServerTransaction

from .sip_support import nvr_config, nvr_id, running_nvr, running_server, server_config, wait_until

T = TypeVar("T")


async def rebind(bind: Callable[[], Awaitable[T]], timeout: float = 10.0) -> T:
    """Bind the port a closed server used, once the loop has really let it go."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await bind()
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_a_restarted_platform_answers_404_and_the_device_registers_again() -> None:
    async with running_server() as first:
        port = first.port
        nvr = SimulatedNvr(nvr_config(first, keepalive_interval_s=0.1))
        await nvr.start(wait=True)
    try:
        store = MemoryDeviceStore()
        second = SipServer(server_config(port=port, transports=("udp",)), store)  # empty registry
        await rebind(second.start)
        try:
            await wait_until(lambda: nvr_id(1) in second.registrations, 10, "registered again")
            assert store.devices[nvr_id(1)].online
            assert nvr.state.register_status == 200
        finally:
            await second.close()
    finally:
        await nvr.stop(unregister=False)


async def test_unanswered_keepalives_make_the_device_register_again() -> None:
    async with running_server() as server:
        port = server.port
        cfg = nvr_config(server, keepalive_interval_s=0.05, keepalive_misses=2, t1=0.02)
        nvr = SimulatedNvr(cfg)
        await nvr.start(wait=True)
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the platform, gone silent
    hole.setblocking(False)

    async def bind() -> None:
        hole.bind(("127.0.0.1", port))

    await rebind(bind)
    loop = asyncio.get_running_loop()
    try:
        seen: list[bytes] = []
        async with asyncio.timeout(20):
            while not any(d.startswith(b"REGISTER ") for d in seen):
                seen.append(await loop.sock_recv(hole, 65535))
        assert any(d.startswith(b"MESSAGE ") for d in seen)  # the keepalives came first
        assert nvr.state.keepalive_failures >= 2
        assert not nvr.state.registered.is_set()
    finally:
        hole.close()
        await nvr.stop(unregister=False)


async def test_extra_methods_are_dispatched_and_unknown_ones_refused() -> None:
    async with running_server() as server, running_nvr(nvr_config(server)) as nvr:
        _, peer = await server.outgoing.route(nvr_id(1))

        async def publish() -> int:  # a method no device role serves (SUBSCRIBE has one now)
            req = server.outgoing.new_request("PUBLISH", nvr_id(1), peer)
            return (await server.endpoint.request(req, peer, timeout=5)).status

        assert await publish() == 405
        heard: list[str] = []

        def on_publish(stx: ServerTransaction) -> None:
            heard.append(stx.request.call_id)
            stx.reply(200)

        nvr.agent.extra_methods["PUBLISH"] = on_publish
        assert await publish() == 200 and len(heard) == 1
        status = await server.device_status(nvr_id(1))  # a DeviceRole answer, via to_xml
        assert isinstance(status, DeviceStatusInfo)
        assert (status.online, status.encode, status.record) == ("ONLINE", "ON", "ON")
