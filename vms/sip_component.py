"""Wires the GB28181 SIP server (``sip.server.SipServer``) into the node.

The server is created by the factory so ``services.sip`` exists before the media
component (which registers its session listener) is built; it listens on ``start``.
It gets ``settings.sip`` whole (a ``sip.settings.ServerSettings``, superiors included);
the two values it needs from other sections are named here.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from sip.server import SipServer
from storage.models import Device
from vms.cascade import attach as attach_cascade
from vms.logging import get_logger
from vms.services import Services
from vms.sip_store import DbDeviceStore

log = get_logger("vms.sip")

MAX_NAMED = 20  # devices named in the start-up warning


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
        if not self.services.settings.sip.password:
            await self._warn_passwordless()

    async def _warn_passwordless(self) -> None:
        """There is no default device password: name the devices that cannot register (an
        upgrade from a node that relied on one needs ``sip.password`` or their own)."""

        def fn(s: Session) -> list[str]:
            stmt = select(Device.device_id).where(
                or_(Device.sip_password.is_(None), Device.sip_password == "")
            )
            return list(s.scalars(stmt.order_by(Device.device_id).limit(MAX_NAMED + 1)))

        ids = await self.services.db.run(fn)
        if ids:
            log.warning(
                "devices without a SIP password cannot register: set sip.password or theirs",
                devices=ids[:MAX_NAMED],
                more=len(ids) > MAX_NAMED,
            )

    async def stop(self) -> None:
        await self.server.close()
        await self.cascade.close()


def sip_component(services: Services) -> SipComponent | None:
    if not services.settings.sip.enabled:
        return None
    return SipComponent(services)
