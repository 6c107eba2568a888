"""End to end: real SIP server + simulated NVR (GB28181 INVITE, PS over RTP) + the stream hub."""

from __future__ import annotations

import asyncio

import pytest

from vms.media.frames import Codec
from vms.services import Services

from .media_support import collect_units, decode_units, nvr_rig

DEVICE = "34020000001180000001"


async def until(check, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("transport", ["udp", "tcp-passive", "tcp-active"])
async def test_nvr_stream_reaches_subscribers(services: Services, transport: str) -> None:
    async with nvr_rig(services, DEVICE, transport, channels=2) as rig:
        hub, nvr, channel, camera = rig.hub, rig.nvr, rig.channels[0], rig.cameras[0]
        assert len(rig.channels) == 2
        sub = hub.subscribe(camera, "e2e")
        units = await collect_units(sub, 30)
        assert units[0].keyframe and all(u.codec is Codec.h264 for u in units)
        assert len(decode_units(units)) >= len(units) - 1
        stats = hub.stats(camera)
        assert stats["state"] == "receiving" and stats["lost"] == 0
        assert hub.request_keyframe(camera)
        await until(lambda: (channel, "IFameCmd", "Send") in nvr.state.controls)
        assert stats["device_id"] == DEVICE and stats["transport"] == transport
        sub.close()
        await until(lambda: not nvr.media.streams)  # our BYE stopped the device's stream
        assert hub.ports.in_use() == 0
