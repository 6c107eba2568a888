"""Cascade: a second instance of our server plays the superior platform.  Ours registers
upward with digest, keeps alive, answers the superior's Catalog with our channels and
accepts its INVITE for a known channel (404 for an unknown one)."""

from __future__ import annotations

import pytest

from sip.media_api import MediaOffer, PlayError, PlayRequest
from sip.settings import UpstreamConfig
from sip.store import MemoryDeviceStore

from .sip_support import nvr_config, running_nvr, running_server, wait_until

SUPERIOR_ID = "44010000002000000001"
SUPERIOR_DOMAIN = "4401000000"
OUR_ID = "34020000002000000001"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_cascade_register_keepalive_catalog_and_invite(transport: str) -> None:
    superior_store = MemoryDeviceStore({OUR_ID: "cascade-secret"})
    our_store = MemoryDeviceStore()
    async with (
        running_server(
            superior_store,
            server_id=SUPERIOR_ID,
            domain=SUPERIOR_DOMAIN,
            password="",
            auto_create_devices=False,
            keepalive_interval_s=0.2,
            keepalive_misses=3,
        ) as superior,
        running_server(our_store) as ours,
    ):
        async with running_nvr(nvr_config(ours, channels=6)) as nvr:
            await ours.catalog(nvr.config.device_id)  # our own channels, from our NVR
            up = ours.add_upstream(
                UpstreamConfig(
                    server_id=SUPERIOR_ID,
                    domain=SUPERIOR_DOMAIN,
                    host="127.0.0.1",
                    port=superior.port,
                    password="cascade-secret",
                    transport=transport,
                    keepalive_interval_s=0.1,
                    catalog_group=4,
                ),
            )
            await up.start()
            try:
                await wait_until(lambda: up.registered.is_set(), 5, "upward registration")
                assert superior_store.devices[OUR_ID].online
                assert superior.registrations[OUR_ID].peer.transport == transport.upper()
                await wait_until(
                    lambda: superior_store.devices[OUR_ID].keepalive_at, 3, "keepalive"
                )

                result = await superior.catalog(OUR_ID)
                assert result.complete and result.sum_num == 6
                assert sorted(i.device_id for i in result.items) == sorted(nvr.channels)
                assert all(i.parent_id == OUR_ID for i in result.items)
                info = await superior.device_info(OUR_ID)
                assert info.channels == 6 and info.manufacturer == "vms-gb28181"
                status = await superior.device_status(OUR_ID)
                assert (status.online, status.status) == ("ONLINE", "OK")

                with pytest.raises(PlayError) as err:
                    await superior.play(
                        PlayRequest(OUR_ID, "34020000001319999999"),
                        MediaOffer("127.0.0.1", 30000, "0440000001"),
                    )
                assert err.value.status == 404
                session = await superior.play(
                    PlayRequest(OUR_ID, nvr.channels[2]),
                    MediaOffer("127.0.0.1", 30000, "0440000002"),
                )
                assert session.answer.ssrc == "0440000002"
                assert session.call_id in up.dialogs
                await superior.stop(session)
                await wait_until(lambda: not up.dialogs, 3, "BYE from the superior")

                await superior.ptz(OUR_ID, nvr.channels[0], "A50F0100000000B5")
                await wait_until(lambda: nvr.state.ptz_commands, 3, "PTZ forwarded to the NVR")
                assert nvr.state.ptz_commands == [(nvr.channels[0], "A50F0100000000B5")]
            finally:
                await up.stop()
            await wait_until(lambda: not superior_store.devices[OUR_ID].online, 3, "unregistered")


async def test_cascade_wrong_password_stays_unregistered() -> None:
    superior_store = MemoryDeviceStore({OUR_ID: "right"})
    async with (
        running_server(
            superior_store, server_id=SUPERIOR_ID, domain=SUPERIOR_DOMAIN, auto_create_devices=False
        ) as superior,
        running_server() as ours,
    ):
        up = ours.add_upstream(
            UpstreamConfig(
                SUPERIOR_ID, SUPERIOR_DOMAIN, "127.0.0.1", superior.port, "wrong", retry_s=0.1
            ),
        )
        assert await up.register() == 403
        assert not up.registered.is_set() and not superior_store.devices[OUR_ID].online
