"""SIP settings reach the server whole: every field of ``sip`` is one the server reads."""

from __future__ import annotations

from sip.settings import ServerConfig, ServerSettings, UpstreamConfig, UpstreamSettings
from vms.config import SipSettings, SipUpstreamSettings
from vms.services import Services
from vms.sip_component import sip_component


def _members(protocol: type) -> set[str]:
    return {n for n, v in vars(protocol).items() if isinstance(v, property)}


def test_every_sip_setting_is_read_by_the_server_and_nothing_else_is_needed() -> None:
    node_only = {"enabled"}  # whether the component runs at all
    assert set(SipSettings.model_fields) - node_only == _members(ServerSettings)
    assert set(SipUpstreamSettings.model_fields) == _members(UpstreamSettings)
    # the dataclasses for tests and standalone use carry the same fields
    assert set(ServerConfig.__dataclass_fields__) == _members(ServerSettings)
    assert set(UpstreamConfig.__dataclass_fields__) == _members(UpstreamSettings)


async def test_the_component_hands_over_the_settings_object_itself(services: Services) -> None:
    settings = services.settings
    settings.sip.t1 = 0.25
    settings.sip.max_pending = 7
    settings.media.sdp_ip = "192.0.2.10"
    settings.sip.upstreams = [
        SipUpstreamSettings(
            server_id="44010000002000000001",
            domain="4401000000",
            host="127.0.0.1",
            retry_s=5,
            catalog_group=8,
        )
    ]
    component = sip_component(services)
    assert component is not None
    server = component.server
    assert server.config is settings.sip
    assert server.endpoint.t1 == 0.25 and server.sdp_ip == "192.0.2.10"
    assert server.contact().startswith("sip:34020000002000000001@192.0.2.10:")
    up = server.add_upstream(settings.sip.upstreams[0])
    assert up.agent.settings.retry_s == 5 and up.agent.settings.catalog_per_message == 8
