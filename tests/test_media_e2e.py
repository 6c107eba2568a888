"""End to end: real SIP server + simulated NVR (GB28181 INVITE, PS over RTP) + the stream hub."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from sip.device import NvrConfig, SimulatedNvr
from storage.models import Channel
from vms.media.frames import AccessUnit, Codec
from vms.media.hub import StreamHub
from vms.services import Services
from vms.sip_component import sip_component

from .media_support import decode_units

DEVICE = "34020000001180000001"


async def until(check, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("transport", ["udp", "tcp-passive", "tcp-active"])
async def test_nvr_stream_reaches_subscribers(services: Services, transport: str) -> None:
    settings = services.settings
    settings.media.transport = transport
    settings.media.rtp_port_min, settings.media.rtp_port_max = 32000, 32999
    settings.media.idle_close_s = 0
    sip = sip_component(services)
    assert sip is not None
    await sip.start()
    hub = StreamHub(services)
    await hub.start()
    nvr = SimulatedNvr(
        NvrConfig(
            device_id=DEVICE,
            server_id=settings.sip.server_id,
            server_domain=settings.sip.domain,
            server_host="127.0.0.1",
            server_port=services.sip.port,
            password=settings.sip.password,
            channels=2,
        )
    )
    try:
        await nvr.start(wait=True)

        def channels() -> list[str]:
            with services.db.session() as s:
                return sorted(s.scalars(select(Channel.channel_id)))

        await until(lambda: len(channels()) == 2)  # catalog on register filled the DB
        channel = channels()[0]
        sub = hub.subscribe(channel, "e2e")
        units: list[AccessUnit] = []
        async with asyncio.timeout(15):
            while len(units) < 30:
                item = await sub.get()
                if isinstance(item, AccessUnit):
                    units.append(item)
        assert units[0].keyframe and all(u.codec is Codec.h264 for u in units)
        assert len(decode_units(units)) >= len(units) - 1
        stats = hub.stats(channel)
        assert stats["state"] == "receiving" and stats["lost"] == 0
        assert hub.request_keyframe(channel)
        await until(lambda: (channel, "IFameCmd", "Send") in nvr.state.controls)
        assert stats["device_id"] == DEVICE and stats["transport"] == transport
        sub.close()
        await until(lambda: not nvr.media.streams)  # our BYE stopped the device's stream
        assert hub.ports.in_use() == 0
    finally:
        await hub.stop()
        await nvr.stop()
        await sip.stop()
