"""End to end with real video and the real person model: H.264 access units through the media
hub's Subscription into the pool's worker process, and intrusion alarms with their clear.

The clip is real: pedestrians from opencv-doc's vtest.avi, then scikit-image's coffee.png
(no people), encoded to H.264 with PyAV.  Needs ``make models`` (person-320.onnx).
"""

from __future__ import annotations

import asyncio

import cv2
import numpy as np
import pytest

from analyzers.config import AnalysisConfig
from analyzers.events import AlarmEvent, AlarmStatus
from analyzers.pool import AnalyzerPool
from vms.media.frames import AccessUnit, Gap
from vms.media.hub import StreamHub

from .analyzers_support import CAMERA, CHANNEL, FULL_FRAME, MODELS, pedestrian_clip, require_model


@pytest.fixture(scope="module")
def clip() -> list[AccessUnit]:
    return pedestrian_clip()


async def run_clip(services, units, config: dict, profile: str = "enterprise"):
    require_model("person", 320)
    hub = StreamHub(services)  # no SIP server: units arrive through hub.publish
    events: list[AlarmEvent] = []

    async def collect(event: AlarmEvent) -> None:
        events.append(event)

    pool = AnalyzerPool(
        services.settings.analyzers, hub, models_dir=MODELS, timezone="Asia/Shanghai", emit=collect
    )
    await pool.start()
    try:
        await pool.configure(CAMERA, profile, AnalysisConfig.model_validate(config))
        for au in units:
            hub.publish(CAMERA, au)
            await asyncio.sleep(0.05)  # twice real time: the worker keeps up at 2 fps
        # wait until the worker has gone quiet: every sampled frame analysed
        loop = asyncio.get_running_loop()
        deadline, last, quiet_since = loop.time() + 90, -1, loop.time()
        while loop.time() < deadline:
            analysed = pool.stats()[CAMERA]["analysed"]
            if analysed != last:
                last, quiet_since = analysed, loop.time()
            elif loop.time() - quiet_since > 2.0:
                break
            await asyncio.sleep(0.1)
        return events, pool.stats()[CAMERA]
    finally:
        await pool.stop()
        await hub.stop()


def check_jpeg(data: bytes, shape: tuple[int, int] | None = None) -> np.ndarray:
    assert data[:2] == b"\xff\xd8" and 0 < len(data) <= 4_000_000  # the uplink's cap
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    if shape is not None:
        assert img.shape[:2] == shape
    return img


async def test_intrusion_alarm_and_clear_from_real_pedestrian_video(services, clip) -> None:
    config = {
        "enabled": True,
        "input_size": 320,
        "sample": {"mode": "fps", "fps": 2},
        "zones": {"yard": FULL_FRAME},
        "rules": [
            {
                "type": "intrusion",
                "zones": ["yard"],
                "min_score": 0.25,  # vtest's pedestrians are ~17 px tall at 320 px input
                "confirm_s": 1,
                "clear_s": 1,
                "cooldown_s": 0,
            }
        ],
    }
    events, stats = await run_clip(services, clip, config)
    assert [e.status for e in events] == [AlarmStatus.alarm, AlarmStatus.clear], stats
    alarm, clear = events
    assert alarm.alarm_id == clear.alarm_id and len(alarm.alarm_id) == 36
    assert alarm.alarm_type == "4" and alarm.rule == "intrusion" and alarm.profile == "enterprise"
    assert alarm.channel_id == CHANNEL and alarm.device_id == CAMERA.device_id
    assert alarm.at.tzinfo is not None
    assert alarm.detail["boxes"] and all(b["label"] == "person" for b in alarm.detail["boxes"])
    raw = check_jpeg(alarm.raw_jpeg, (576, 768))
    drawn = check_jpeg(alarm.snapshot_jpeg, (576, 768))
    assert float(np.abs(raw.astype(int) - drawn.astype(int)).mean()) > 0.5  # boxes were drawn
    check_jpeg(clear.raw_jpeg, (576, 768))
    check_jpeg(clear.snapshot_jpeg, (576, 768))
    assert alarm.detail["stream_t"] < 4.0 <= clear.detail["stream_t"]
    assert stats["analysed"] >= 10 and stats["fps"] > 0


async def test_gathering_keyframes_only_with_gas_station_profile_refused(services, clip) -> None:
    """Keyframes only (one per second); gathering has no code for a gas station → refused."""
    config = {
        "enabled": True,
        "zones": {"yard": FULL_FRAME},
        "rules": [
            {
                "type": "gathering",
                "min_people": 2,
                "min_score": 0.25,
                "confirm_s": 0,
                "clear_s": 1,
                "cooldown_s": 0,
            }
        ],
    }
    from analyzers.engine import ConfigRejected

    with pytest.raises(ConfigRejected, match="gathering"):
        await run_clip(services, clip, config, profile="gas_station")
    events, stats = await run_clip(services, clip, config)
    keyframes = sum(1 for u in clip if u.keyframe)
    assert stats["sent"] == keyframes and stats["received"] == len(clip)
    assert [e.status for e in events] == [AlarmStatus.alarm, AlarmStatus.clear]
    assert events[0].alarm_type == "6" and events[0].rule == "gathering"


async def test_back_pressure_drops_instead_of_queueing(services, clip) -> None:
    """Units arrive far faster than inference: the bounded worker queue overflows, units are
    dropped up to the next keyframe, decoded-but-stale frames are replaced; analysis goes on
    across stream restarts (timestamps start again at 0)."""
    require_model("person", 320)
    services.settings.analyzers.queue_size = 4
    hub = StreamHub(services)
    pool = AnalyzerPool(
        services.settings.analyzers, hub, models_dir=MODELS, timezone="Asia/Shanghai"
    )
    await pool.start()
    try:
        config = {
            "enabled": True,
            "sample": {"mode": "fps", "fps": 30},
            "rules": [{"type": "gathering", "min_people": 2}],
        }
        await pool.configure(CAMERA, "enterprise", AnalysisConfig.model_validate(config))
        for _ in range(3):  # the clip three times, as a stream that restarts twice
            for au in clip:
                hub.publish(CAMERA, au)
                await asyncio.sleep(0.002)  # ~50x real time, far beyond inference speed
            hub.publish(CAMERA, Gap(CHANNEL, "restarted"))
        for _ in range(300):
            st = pool.stats()[CAMERA]
            if st["analysed"] >= 4:
                break
            await asyncio.sleep(0.1)
        st = pool.stats()[CAMERA]
        assert st["dropped_queue"] > 0 and st["analysed"] >= 4, str(st)
        assert st["sent"] + st["dropped_queue"] <= st["received"]
        assert pool._inqs[0].qsize() <= 4  # bounded, never more than queue_size waiting
    finally:
        await pool.stop()
        await hub.stop()
