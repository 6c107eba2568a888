"""A node for the playback-control and download tests: the real SIP server, the stream hub,
one simulated NVR (its recordings are a looped test pattern at 25 fps, GOP 1 s), the
playback sessions and the download jobs, and an API client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from api.app import create_app
from simdevice.nvr import NvrConfig, SimulatedNvr
from sip import sdp as sdplib
from sip.server import SipServer
from sip.settings import ServerConfig
from sip.store import MemoryDeviceStore
from storage.models import Device
from vms.recording.downloads import Downloads
from vms.recording.playback_sessions import PlaybackSessions
from vms.services import Services

from .recording_support import seed, start_hub

DEVICE = "34020000001180000001"
PASSWORD = "replay-nvr-pass"  # not a vendor default: there is none


@dataclass
class ReplayNode:
    services: Services
    nvr: SimulatedNvr
    channel: str
    token: str
    org_id: int

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(self.services)),
            base_url="http://test",
            headers={"Authorization": f"Bearer {token or self.token}"},
            timeout=30,
        )

    def offers(self, session_name: str) -> list[sdplib.Sdp]:
        """The INVITE offers the NVR received with this ``s=`` (Playback, Download)."""
        found = [sdplib.parse(req.body) for req in self.nvr.state.invites]
        return [o for o in found if o.session_name == session_name]

    def rtsp(self) -> list[str]:
        """The MANSRTSP bodies the NVR received, in order."""
        return [body for _, body in self.nvr.media.rtsp]


@contextlib.asynccontextmanager
async def replay_node(services: Services, **nvr: Any) -> AsyncIterator[ReplayNode]:
    server = SipServer(
        ServerConfig(host="127.0.0.1", port=0, transports=("udp",), password=PASSWORD, t1=0.1),
        MemoryDeviceStore(),
    )
    await server.start()
    services.sip = server
    # RTP over TCP: a loaded 2-core runner may drop loopback datagrams, and these tests
    # are about control and completeness, not loss (the media tests cover that)
    services.settings.media.transport = "tcp-passive"
    services.settings.media.rtp_port_min, services.settings.media.rtp_port_max = 33000, 33999
    device = SimulatedNvr(
        NvrConfig(
            device_id=DEVICE,
            server_id=server.config.server_id,
            server_domain=server.config.domain,
            server_host="127.0.0.1",
            server_port=server.port,
            password=PASSWORD,
            channels=1,
            t1=0.1,
            **nvr,
        )
    )
    hub = playback = downloads = None
    try:
        await device.start(wait=True, timeout=10)
        org_id, token = seed(services, device.channels)
        with services.db.session() as s:  # the seeded device becomes the simulated NVR
            s.scalars(select(Device)).one().device_id = DEVICE
        hub = await start_hub(services)
        playback = PlaybackSessions(services)
        await playback.start()
        downloads = Downloads(services)
        await downloads.start()
        yield ReplayNode(services, device, device.channels[0], token, org_id)
    finally:
        for part in (services.downloads, playback, hub):
            if part is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(part.stop(), 20)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(device.stop(), 10)
        await server.close()


async def until(check: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    """Poll ``check`` (sync or async) until it returns something true; that value."""
    async with asyncio.timeout(timeout):
        while True:
            value = check()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(0.05)


def ffprobe(path: Path) -> dict[str, Any]:
    """Debian ffmpeg's own reading of a file: format and video stream."""
    out = subprocess.run(
        [
            "ffprobe", "-v", "error", "-count_frames", "-show_entries",
            "format=duration,format_name:stream=codec_name,width,height,nb_read_frames",
            "-select_streams", "v:0", "-of", "json", str(path),
        ],
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return json.loads(out.stdout)
