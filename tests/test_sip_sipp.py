"""Interop with a peer we did not write: SIPp plays a GB28181 device (REGISTER with digest,
Keepalive, a Catalog answer in two GB2312 MESSAGEs) against our server on a real port,
persisting through the application's database store."""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import pytest
from sqlalchemy import select

from sip.server import SipServer
from storage.models import Channel, Device, DeviceEvent, DeviceStatus
from vms.services import Services
from vms.sip_store import DbDeviceStore

from .sip_support import server_config, wait_until

SIPP = shutil.which("sipp")
SCENARIOS = Path(__file__).parent / "sipp"
DEVICE = "34020000001180000077"
pytestmark = pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) not installed")


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run_sipp(server: SipServer, transport: str, password: str) -> asyncio.subprocess.Process:
    kind = socket.SOCK_DGRAM if transport == "u1" else socket.SOCK_STREAM
    return await asyncio.create_subprocess_exec(
        SIPP or "sipp",
        "-sf",
        str(SCENARIOS / "device_register.xml"),
        "-oocsf",
        str(SCENARIOS / "device_catalog_ooc.xml"),
        "-i",
        "127.0.0.1",
        "-p",
        str(free_port(kind)),
        "-t",
        transport,
        "-m",
        "1",
        "-s",
        DEVICE,
        "-au",
        DEVICE,
        "-ap",
        password,
        "-set",
        "server_id",
        server.config.server_id,
        "-set",
        "domain",
        server.config.domain,
        "-nostdin",
        "-timeout",
        "20s",
        "-timeout_error",
        f"127.0.0.1:{server.port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


def _device(services: Services) -> tuple[Device | None, list[Channel], list[str]]:
    with services.db.session() as s:
        d = s.scalar(select(Device).where(Device.device_id == DEVICE))
        if d is None:
            return None, [], []
        s.expunge(d)
        chans = list(s.scalars(select(Channel).where(Channel.device_pk == d.id)))
        for c in chans:
            s.expunge(c)
        kinds = list(s.scalars(select(DeviceEvent.kind).where(DeviceEvent.device_pk == d.id)))
        return d, chans, kinds


@pytest.mark.parametrize("transport", ["u1", "t1"])
async def test_sipp_device_registers_keeps_alive_and_answers_catalog(
    services: Services, transport: str
) -> None:
    store = DbDeviceStore(services)
    server = SipServer(server_config(password="sipp-pass-1"), store)
    await server.start()
    try:
        async with services.events.subscribe() as events:
            proc = await run_sipp(server, transport, "sipp-pass-1")
            try:
                await wait_until(
                    lambda: _device(services)[0] is not None and _device(services)[0].online,
                    10,
                    "SIPp device online",
                )
                result = await server.catalog(DEVICE)
                assert result.complete and result.sum_num == 3
                out, _ = await asyncio.wait_for(proc.communicate(), 30)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            assert proc.returncode == 0, out.decode(errors="replace")[-2000:]
            kinds = []
            while not events.empty():
                kinds.append(events.get_nowait().kind)
            assert "device.online" in kinds and "catalog.updated" in kinds
        device, channels, history = _device(services)
        assert device is not None and device.online and device.status == DeviceStatus.pending
        assert device.transport == ("udp" if transport == "u1" else "tcp")
        assert device.keepalive_at is not None
        assert sorted((c.channel_id, c.name) for c in channels) == [
            ("34020000001310000001", "北门枪机"),
            ("34020000001310000002", "罐区球机"),
            ("34020000001310000003", "装卸区"),
        ]
        assert history == ["online"]
    finally:
        await server.close()


async def test_sipp_device_with_wrong_password_is_refused(services: Services) -> None:
    server = SipServer(server_config(password="sipp-pass-1"), DbDeviceStore(services))
    await server.start()
    try:
        proc = await run_sipp(server, "u1", "not-the-password")
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode != 0  # SIPp got 403 where its scenario expects 200
        device, _, _ = _device(services)
        assert device is None  # an unverified REGISTER never creates a row
    finally:
        await server.close()
