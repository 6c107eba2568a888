"""Cross-tenant channel codes (issue 19): enterprise A's NVR lists enterprise B's camera code
in its Catalog.  Reproduced with the real SIP server over the database store and the API:
the copy is refused and counted, and A's user reaches nothing of B's camera — not its
timeline, segments, export, live view, stream or download — while B's user still does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from sip.channel_ref import ChannelRef
from sip.ids import InvalidGbId
from storage.models import Channel, Device, RecordingSegment
from vms.recording.downloads import Downloads
from vms.services import Services
from vms.sip_store import DbDeviceStore

from .recording_support import camera, client, device_of, seed
from .sip_support import nvr_config, running_nvr, running_server

B_CAMERA = "34010000001320000777"  # enterprise B's camera
A_CAMERA = "34010000001320000111"  # enterprise A's own camera
SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


def recorded(services: Services, cam: ChannelRef, start: datetime) -> None:
    """One indexed 10 s segment of the camera's history."""
    with services.db.session() as s:
        s.add(
            RecordingSegment(
                device_id=cam.device_id,
                channel_id=cam.channel_id,
                start=start,
                end=start + timedelta(seconds=10),
                object_key=f"recordings/{cam.device_id}/{cam.channel_id}/x.ts",
                size=1000,
                keyframes=[[0.0, 0]],
            )
        )


async def test_a_catalog_listing_another_enterprises_camera_reaches_nothing(
    services: Services,
) -> None:
    org_b, token_b = seed(services, [B_CAMERA], org_name="Plant B")
    org_a, token_a = seed(services, [], org_name="Plant A")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    recorded(services, camera(org_b, B_CAMERA), start)
    store = DbDeviceStore(services)
    async with running_server(store) as server:
        # The attack: A's NVR (registered with its own password) lists B's code beside its own.
        cfg = nvr_config(server, device_id=device_of(org_a), channel_ids=[A_CAMERA, B_CAMERA])
        async with running_nvr(cfg):
            result = await server.catalog(device_of(org_a))
            assert {i.device_id for i in result.items} == {A_CAMERA, B_CAMERA}
            assert store.refused_channels.by_device[device_of(org_a)] == 1
            # a second Catalog (the NVR insisting) is refused again, still one row each
            await server.catalog(device_of(org_a))
    with services.db.session() as s:
        owners = s.execute(
            select(Device.device_id, Channel.channel_id)
            .join(Channel, Channel.device_pk == Device.id)
            .order_by(Channel.channel_id)
        ).all()
    assert [tuple(o) for o in owners] == [
        (device_of(org_a), A_CAMERA),
        (device_of(org_b), B_CAMERA),
    ]

    span = timedelta(minutes=1)
    window = {"start": (start - span).isoformat(), "end": (start + span).isoformat()}
    as_b_device = {"device_id": device_of(org_b)}
    async with client(services, token_a) as api:
        for params in ({}, as_b_device, {"device_id": device_of(org_a)}):
            q = {**window, **params}
            base = f"/api/recordings/{B_CAMERA}"
            assert (await api.get(f"{base}/timeline", params=q)).status_code == 404
            assert (await api.get(f"{base}/segments", params=q)).status_code == 404
            assert (await api.get(f"{base}/export.mp4", params=q)).status_code == 404
            assert (await api.get(f"{base}/playlist.m3u8", params=q)).status_code == 404
            live = await api.post(f"/api/live/{B_CAMERA}/offer", params=params, json={"sdp": SDP})
            assert live.status_code == 404
            assert (await api.get(f"/api/streams/{B_CAMERA}", params=params)).status_code == 404
        job = {"channel_id": B_CAMERA, **window, **as_b_device}
        downloads = Downloads(services)
        await downloads.start()
        try:
            assert (await api.post("/api/downloads", json=job)).status_code == 404
        finally:
            await downloads.stop()
        # the segment itself, by id, is no way round either
        with services.db.session() as s:
            seg_id = s.scalars(select(RecordingSegment.id)).one()
        assert (await api.get(f"/api/recordings/segment/{seg_id}.ts")).status_code == 404

    async with client(services, token_b) as api:  # B's user is unaffected
        got = await api.get(f"/api/recordings/{B_CAMERA}/timeline", params=window)
        assert got.status_code == 200, got.text
        assert got.json()["device_id"] == device_of(org_b)
        assert got.json()["recorded_s"] == pytest.approx(10)


def test_no_camera_ref_from_an_id_that_could_be_a_path() -> None:
    """Every file name and object key of a camera comes from a ChannelRef, whose parts must
    be 20-digit ids: a code with '/' or '..' from the wire can never become one."""
    good = "34010000001320000777"
    for bad in ("../../../../tmp/xx/yy", "3401000000132000077/", "3401000000132000077\n"):
        with pytest.raises(InvalidGbId):
            ChannelRef(good, bad)
        with pytest.raises(InvalidGbId):
            ChannelRef(bad, good)
    ref = ChannelRef(good, good)
    assert ref.slug.replace("_", "").isdigit() and ChannelRef.from_slug(ref.slug) == ref
    with pytest.raises(InvalidGbId):
        ChannelRef.from_slug(f"{good}_../{good}")
