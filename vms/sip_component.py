"""Wires the GB28181 SIP server (``sip.server.SipServer``) into the node.

The server is created by the factory so ``services.sip`` exists before the media
component (which registers its session listener) is built; it listens on ``start``.
It gets ``settings.sip`` whole (a ``sip.settings.ServerSettings``, superiors included);
the two values it needs from other sections are named here.
"""

from __future__ import annotations

from sip.server import SipServer
from vms.cascade import attach as attach_cascade
from vms.logging import get_logger
from vms.services import Services
from vms.sip_store import DbDeviceStore

log = get_logger("vms.sip")


def sip_server(services: Services) -> SipServer:
    s = services.settings
    return SipServer(
        s.sip, DbDeviceStore(services), sdp_ip=s.media.sdp_ip, timezone=s.server.timezone
    )


class SipComponent:
    name = "sip"

    def __init__(self, services: Services) -> None:
        self.services = services
        self.server = sip_server(services)
        services.sip = self.server
        self.cascade = attach_cascade(services, self.server)  # what superiors see and get

    async def start(self) -> None:
        await self.server.start()  # and registers with each of sip.upstreams

    async def stop(self) -> None:
        await self.server.close()
        await self.cascade.close()


def sip_component(services: Services) -> SipComponent | None:
    if not services.settings.sip.enabled:
        return None
    return SipComponent(services)
