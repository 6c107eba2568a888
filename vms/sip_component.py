"""Wires the GB28181 SIP server (``sip.server.SipServer``) into the node.

The server is created by the factory so ``services.sip`` exists before the media
component (which registers its session listener) is built; it listens on ``start``.
"""

from __future__ import annotations

from sip.cascade import Upstream, UpstreamConfig
from sip.server import ServerConfig, SipServer
from vms.logging import get_logger
from vms.services import Services
from vms.sip_store import DbDeviceStore

log = get_logger("vms.sip")


def server_config(services: Services) -> ServerConfig:
    s = services.settings
    sip = s.sip
    return ServerConfig(
        server_id=sip.server_id,
        domain=sip.domain,
        host=sip.host,
        port=sip.port,
        transports=tuple(sip.transports),
        password=sip.password,
        auto_create_devices=sip.auto_create_devices,
        allowed_device_ids=tuple(sip.allowed_device_ids),
        keepalive_interval_s=sip.keepalive_interval_s,
        keepalive_misses=sip.keepalive_misses,
        nonce_ttl_s=sip.nonce_ttl_s,
        query_timeout_s=sip.query_timeout_s,
        catalog_timeout_s=sip.catalog_timeout_s,
        invite_timeout_s=sip.invite_timeout_s,
        sdp_ip=s.media.sdp_ip,
        timezone=s.server.timezone,
        catalog_on_register=sip.catalog_on_register,
    )


class SipComponent:
    name = "sip"

    def __init__(self, services: Services) -> None:
        self.services = services
        self.server = SipServer(server_config(services), DbDeviceStore(services))
        services.sip = self.server
        self.upstreams: list[Upstream] = []

    async def start(self) -> None:
        await self.server.start()
        for up in self.services.settings.sip.upstreams:
            upstream = Upstream(
                self.server,
                UpstreamConfig(
                    server_id=up.server_id,
                    domain=up.domain,
                    host=up.host,
                    port=up.port,
                    password=up.password,
                    transport=up.transport,
                    local_id=up.local_id,
                    expires_s=up.expires_s,
                    keepalive_interval_s=up.keepalive_interval_s,
                    keepalive_misses=up.keepalive_misses,
                ),
            )
            await upstream.start()
            self.upstreams.append(upstream)

    async def stop(self) -> None:
        await self.server.close()


def sip_component(services: Services) -> SipComponent | None:
    if not services.settings.sip.enabled:
        return None
    return SipComponent(services)
