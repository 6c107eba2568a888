"""The whole chain on one node, every part real:

simulated NVR (SIP REGISTER + Catalog, INVITE, PS over RTP) → media hub → analyzer pool
(person model on real pedestrian video) → alarm service (DB + object store) → uplink outbox
→ a real HTTP receiver on 127.0.0.1, which gets Table 4 alarm and clear with the same ALARM_ID.
"""

from __future__ import annotations

import asyncio
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from sqlalchemy import select

from simdevice.nvr import NvrConfig, SimulatedNvr
from storage.db import Database
from storage.models import Alarm, Channel, Device, OrgKind
from storage.objects import LocalObjectStore
from storage.org_tree import create_org
from vms.alarm_component import AlarmComponent
from vms.alarms import codes
from vms.analyzer_component import AnalyzerComponent
from vms.media.hub import StreamHub
from vms.services import Services
from vms.sip_component import sip_component
from vms.uplink.receiver import Receiver

from .alarms_support import make_settings
from .analyzers_support import COFFEE, FULL_FRAME, MODELS, VTEST, require_model

ENTERPRISE_CODE = "370102001"
DEVICE_ID = "37010200001180000001"
CAMERA = f"{ENTERPRISE_CODE}01320000001"  # 9-digit enterprise code + 0132 + serial


def write_clip(path: Path, people_s: float = 4.0, empty_s: float = 5.0, fps: int = 10) -> Path:
    """Real pedestrians (vtest.avi), then an empty scene, as an H.264 MP4 for the NVR."""
    frames: list[np.ndarray] = []
    with av.open(str(VTEST)) as src:
        for frame in src.decode(video=0):
            frames.append(frame.to_ndarray(format="bgr24"))
            if len(frames) >= people_s * fps:
                break
    h, w = frames[0].shape[:2]
    frames += [cv2.resize(cv2.imread(str(COFFEE)), (w, h))] * int(empty_s * fps)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        stream.codec_context.gop_size = fps
        stream.codec_context.options = {"preset": "ultrafast"}
        for i, img in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(img, format="bgr24")
            vf.pts = i
            out.mux(stream.encode(vf))
        out.mux(stream.encode(None))
    return path


NVR_PASSWORD = "e2e-nvr-pass-1"


async def until(check, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_nvr_to_analyzer_to_province(tmp_path: Path) -> None:
    require_model("person", 320)
    receiver = Receiver().start()
    settings = make_settings(
        tmp_path, [{"name": "province", "table4_url": receiver.url("table4"), "timeout_s": 5}]
    )
    settings.sip.port = 0
    settings.media.rtp_port_min, settings.media.rtp_port_max = 33000, 33999
    settings.analyzers.models_dir = MODELS
    db = Database(settings.database_url)
    db.open()
    services = Services(settings, db, LocalObjectStore(settings.objects_path))
    with db.session() as s:
        province = create_org(s, "山东省", OrgKind.province, None, "370000")
        city = create_org(s, "济南市", OrgKind.city, province, "370100")
        county = create_org(s, "历下区", OrgKind.county, city, "370102")
        site = create_org(s, "示例化工", OrgKind.enterprise, county, ENTERPRISE_CODE)
        s.add(Device(device_id=DEVICE_ID, name="NVR", org_id=site.id, sip_password=NVR_PASSWORD))

    sip = sip_component(services)
    assert sip is not None
    hub = StreamHub(services)
    alarms = AlarmComponent(services)
    nvr = SimulatedNvr(
        NvrConfig(
            device_id=DEVICE_ID,
            server_id=settings.sip.server_id,
            server_domain=settings.sip.domain,
            server_host="127.0.0.1",
            server_port=0,
            password=NVR_PASSWORD,  # its own: there is no default device password
            channel_ids=[CAMERA],
            video=write_clip(tmp_path / "yard.mp4"),
        )
    )
    analyzers: AnalyzerComponent | None = None
    try:
        await sip.start()
        await hub.start()
        services.media = hub
        await alarms.start()
        nvr.config.server_port = services.sip.port
        await nvr.start(wait=True)

        def camera_known() -> bool:
            with db.session() as s:
                return s.scalar(select(Channel).where(Channel.channel_id == CAMERA)) is not None

        await until(camera_known, 15, "the NVR's catalog")
        with db.session() as s:
            channel = s.scalar(select(Channel).where(Channel.channel_id == CAMERA))
            channel.analysis = {
                "enabled": True,
                "input_size": 320,
                "sample": {"mode": "fps", "fps": 2},
                "zones": {"yard": FULL_FRAME},
                "rules": [
                    {
                        "type": "intrusion",
                        "zones": ["yard"],
                        "min_score": 0.25,
                        "confirm_s": 1,
                        "clear_s": 1,
                        "cooldown_s": 0,
                    }
                ],
            }
        analyzers = AnalyzerComponent(services)
        await analyzers.start()  # subscribes → INVITE → RTP/PS from the NVR

        def posts() -> list:
            return [r for r in receiver.snapshot() if r.path == "/table4"]

        await until(lambda: len(posts()) >= 2, 90, "alarm and clear at the receiver")
        alarm, clear = posts()[0], posts()[1]
        assert alarm.errors == [] and clear.errors == []
        assert alarm.fields["ALARM_STATUS"] == "1" and clear.fields["ALARM_STATUS"] == "0"
        assert alarm.fields["ALARM_ID"] == clear.fields["ALARM_ID"]
        assert codes.is_uuid36(alarm.fields["ALARM_ID"])
        assert alarm.fields["ALARM_TYPE"] == "4"  # area intrusion, enterprise table
        assert alarm.fields["VIDEO_CODE"] == CAMERA
        for post in (alarm, clear):
            img = cv2.imdecode(np.frombuffer(post.image, np.uint8), cv2.IMREAD_COLOR)
            assert img is not None and img.shape[:2] == (576, 768)
        with db.session() as s:
            row = s.scalar(select(Alarm).where(Alarm.alarm_id == alarm.fields["ALARM_ID"]))
            assert row is not None and row.cleared_at is not None and not row.active
            assert services.objects.exists(row.image_key)
            assert services.objects.exists(row.clear_image_key)
            assert row.org_id == site.id
    finally:
        if analyzers is not None:
            await analyzers.stop()
        await nvr.stop()
        await alarms.stop()
        await hub.stop()
        await sip.stop()
        db.close()
        receiver.stop()
