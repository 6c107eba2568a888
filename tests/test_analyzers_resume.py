"""Alarms that outlive a restart: continued with the same ALARM_ID, or cleared by the system.

The node is real (database, object store, alarm service with its uplink outbox, analyzer pool
with one worker process); the detections are scripted: each test puts a real picture in the
worker's frame ring and hands the pool a result tuple, exactly as the worker does.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from sqlalchemy import func, select

from analyzers.detector import Detection
from analyzers.events import AlarmEvent, AlarmStatus
from storage.db import Database
from storage.models import Alarm, AlarmAction, Channel, OutboxItem
from storage.objects import LocalObjectStore
from vms.alarm_component import AlarmComponent
from vms.analyzer_component import AnalyzerComponent
from vms.analyzer_resume import NOTE_PREFIX
from vms.config import load_settings
from vms.media.hub import StreamHub
from vms.services import Services

from .alarms_support import Site, seed_site, wait_until
from .analyzers_support import FULL_FRAME, MODELS, require_model
from .testdata import vision

FRAME = cv2.imread(str(vision() / "bus.jpg"))
PERSON = Detection("person", "Normal", 0.9, (0.4, 0.3, 0.5, 0.8), "person")


def analysis(*rules: dict[str, Any]) -> dict[str, Any]:
    return {
        "enabled": True,
        "input_size": 320,
        "zones": {"yard": FULL_FRAME},
        "rules": list(rules),
    }


INTRUSION = {"type": "intrusion", "zones": ["yard"], "confirm_s": 0, "clear_s": 1, "cooldown_s": 0}
GATHERING = {"type": "gathering", "zones": ["yard"], "min_people": 3}


@dataclass
class Node:
    services: Services
    site: Site
    tmp: Path
    handled: list[AlarmEvent] = field(default_factory=list)
    analyzers: AnalyzerComponent | None = None
    t: float = 0.0

    async def start(self) -> AnalyzerComponent:
        self.analyzers = AnalyzerComponent(self.services)
        self.analyzers.resume.frame_wait_s = 3.0
        await self.analyzers.start()
        return self.analyzers

    async def stop(self) -> None:
        if self.analyzers is not None:
            await self.analyzers.stop()
            self.analyzers = None

    async def frames(self, cid: str, seconds: float, dets: list[Detection]) -> None:
        """Scripted results at 4 fps of stream time, each with a real picture in the ring."""
        pool = self.analyzers.pool  # type: ignore[union-attr]
        ref = self.site.camera(cid)
        for _ in range(int(seconds * 4)):
            cam = pool.cams[ref]
            before = cam.stats.analysed
            slot, seq = pool._rings[cam.worker].write(FRAME)
            pts, wall = int(self.t * 90000), 1.7e9 + self.t
            result = ("result", cam.key, slot, seq, pts, wall, dets, False, 0, 1.0)
            pool._results.put_nowait(result)  # the worker names the camera by its key
            await wait_until(lambda c=cam, b=before: c.stats.analysed > b, 5, "result handled")
            self.t += 0.25

    def rows(self, model: Any, *where: Any) -> list[Any]:
        with self.services.db.session() as s:
            out = list(s.scalars(select(model).where(*where)))
            s.expunge_all()
            return out


def configure(db: Database, cid: str, raw: dict[str, Any] | None) -> None:
    with db.session() as s:
        s.scalars(select(Channel).where(Channel.channel_id == cid)).one().analysis = raw


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    require_model("person", 320)
    settings = load_settings(
        server={"data_dir": tmp_path / "data"},
        auth={"jwt_secret": "test-secret-not-for-production-0123456789"},
        analyzers={"models_dir": str(MODELS), "workers": 1},
        uplink={"receivers": [{"name": "province", "table4_url": "http://127.0.0.1:9/t4"}]},
    )
    db = Database(settings.database_url)
    db.open()
    services = Services(settings, db, LocalObjectStore(settings.objects_path))
    site = seed_site(db, cameras=2)
    alarms = AlarmComponent(services, spool_retry_s=0.2)
    hub = StreamHub(services)  # no SIP: the pool's subscriptions simply stay empty
    await alarms.start()
    await hub.start()
    n = Node(services, site, tmp_path)
    try:
        yield n
    finally:
        await n.stop()
        await hub.stop()
        await alarms.stop()
        db.close()


def install_recorder(n: Node) -> None:
    original = n.services.alarms.handle

    async def record(event: AlarmEvent) -> Any:
        n.handled.append(event)
        return await original(event)

    n.services.alarms.handle = record  # type: ignore[method-assign]


async def raise_before_restart(n: Node, cid: str, rule: str = "intrusion", code: str = "4") -> str:
    """An alarm committed by the previous run of the node, still active."""
    _, img = cv2.imencode(".jpg", FRAME)
    ev = AlarmEvent(
        alarm_id=str(uuid.uuid4()),
        status=AlarmStatus.alarm,
        channel_id=cid,
        device_id=n.site.devices.get(cid, ""),  # "" for a camera no longer in the catalog
        profile="enterprise",
        rule=rule,
        alarm_type=code,
        at=datetime.now(UTC) - timedelta(minutes=5),
        snapshot_jpeg=img.tobytes(),
        detail={"rule_name": rule},
    )
    await n.services.alarms.handle(ev)
    return ev.alarm_id


def clears_in_outbox(n: Node, alarm_id: str) -> int:
    """Table 4 clear records queued for the province (what the uplink sender posts)."""
    with n.services.db.session() as s:
        rows = s.scalars(select(OutboxItem).where(OutboxItem.table == "table4")).all()
        return sum(
            1
            for r in rows
            if r.payload["ALARM_ID"] == alarm_id and r.payload["ALARM_STATUS"] == "0"
        )


def alarm_count(n: Node) -> int:
    with n.services.db.session() as s:
        return int(s.scalar(select(func.count(Alarm.id))) or 0)


async def test_restart_with_rule_false_clears_same_alarm_id_once(node: Node) -> None:
    cam = node.site.cameras[0]
    alarm_id = await raise_before_restart(node, cam)
    configure(node.services.db, cam, analysis(INTRUSION))
    install_recorder(node)
    await node.start()
    await node.frames(cam, 3, [])  # empty yard for 3 s of stream time (clear_s = 1)

    assert [(e.alarm_id, e.status) for e in node.handled] == [(alarm_id, AlarmStatus.clear)]
    assert node.handled[0].device_id == node.site.devices[cam]  # the camera, not the code alone
    raw = cv2.imdecode(np.frombuffer(node.handled[0].raw_jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert raw.shape == FRAME.shape  # the current frame, not a placeholder
    (alarm,) = node.rows(Alarm)
    assert alarm.alarm_id == alarm_id and not alarm.active and alarm.clear_image_key
    assert alarm_count(node) == 1
    assert clears_in_outbox(node, alarm_id) == 1


async def test_restart_with_rule_true_no_duplicate_then_clear(node: Node) -> None:
    cam = node.site.cameras[0]
    alarm_id = await raise_before_restart(node, cam)
    configure(node.services.db, cam, analysis(INTRUSION))
    install_recorder(node)
    await node.start()
    await node.frames(cam, 2, [PERSON])  # intruder still there: no new alarm
    assert node.handled == [] and alarm_count(node) == 1
    await node.stop()  # clean shutdown: nothing faked, the alarm stays active
    assert node.handled == [] and node.rows(Alarm)[0].active

    await node.start()  # second restart, intruder still there, then gone
    await node.frames(cam, 1, [PERSON])
    await node.frames(cam, 2, [])
    assert [(e.alarm_id, e.status) for e in node.handled] == [(alarm_id, AlarmStatus.clear)]
    assert alarm_count(node) == 1 and not node.rows(Alarm)[0].active


async def test_alarms_no_longer_analysed_are_cleared_by_the_system(node: Node) -> None:
    analysed, switched_off = node.site.cameras
    removed_rule = await raise_before_restart(node, analysed)  # intrusion rule gone
    analysis_off = await raise_before_restart(node, switched_off)
    gone = await raise_before_restart(node, "37010200101329999999")  # camera deleted since
    configure(node.services.db, analysed, analysis(GATHERING))
    configure(node.services.db, switched_off, {**analysis(INTRUSION), "enabled": False})
    install_recorder(node)
    await node.start()
    await node.frames(analysed, 0.5, [])  # a frame comes: the clear uses it
    await wait_until(lambda: len(node.handled) == 3, 10, "three system clears")
    # handled lists a clear as it starts; its note is written after the clear committed
    await wait_until(lambda: len(node.rows(AlarmAction)) == 3, 10, "three system clear notes")

    by_id = {e.alarm_id: e for e in node.handled}
    assert set(by_id) == {removed_rule, analysis_off, gone}
    assert all(e.status == AlarmStatus.clear for e in node.handled)
    assert by_id[removed_rule].detail["frame"] is True
    assert by_id[analysis_off].detail["frame"] is False  # no frames: the alarm's own image
    for alarm_id, why in (
        (removed_rule, "rule no longer analysed"),
        (analysis_off, "analysis disabled or not started"),
        (gone, "camera gone"),
    ):
        (alarm,) = node.rows(Alarm, Alarm.alarm_id == alarm_id)
        assert not alarm.active and alarm.clear_image_key
        assert node.services.objects.get(alarm.clear_image_key)[:3] == b"\xff\xd8\xff"
        (note,) = node.rows(AlarmAction, AlarmAction.alarm_pk == alarm.id)
        assert note.action == "system_clear" and note.note == f"{NOTE_PREFIX}: {why}"
        assert note.user_id is None
        assert clears_in_outbox(node, alarm_id) == 1
    assert alarm_count(node) == 3


def test_engine_resume_takes_newest_of_its_rule_and_returns_the_rest() -> None:
    """A crash that already left two alarms open for one rule: one continues, one is cleared."""
    from analyzers.config import AnalysisConfig
    from analyzers.engine import ActiveAlarm, CameraEngine
    from analyzers.rules import FrameView

    cfg = AnalysisConfig.model_validate(analysis(INTRUSION))
    eng = CameraEngine("37010200101320000001", "enterprise", cfg)
    t0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)

    def active(minutes: int, rule: str = "intrusion", code: str = "4") -> ActiveAlarm:
        return ActiveAlarm(
            str(uuid.uuid4()), eng.channel_id, "enterprise", rule, rule, code,
            t0 + timedelta(minutes=minutes),
        )  # fmt: skip

    old, new, other = active(0), active(5), active(1, "fire", "1")
    assert {a.alarm_id for a in eng.resume([old, new, other])} == {old.alarm_id, other.alarm_id}
    assert eng.active_ids() == {new.alarm_id}
    still = FrameView(0.0, t0, [PERSON], lambda: None)
    assert eng.process(still) == []  # condition holds: no second alarm
    fired = [f for t in (1.0, 1.5, 2.5) for f in eng.process(FrameView(t, t0, [], lambda: None))]
    assert [(f.transition.status, f.transition.alarm_id) for f in fired] == [(0, new.alarm_id)]
