"""Rules, alarm state machine and code tables, driven by scripted detection sequences.

No model here: detections are written by hand, so every rule (including the ones whose real
detector must come from the user: phone, smoking, workwear, extinguisher) is exercised.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
from pydantic import ValidationError

from analyzers.catalog import (
    ENTERPRISE_TABLE,
    GAS_STATION_TABLE,
    REPORT_REASON,
    UnknownAlarm,
    alarm_type,
)
from analyzers.config import AnalysisConfig, TimeWindow
from analyzers.detector import Detection
from analyzers.engine import CameraEngine, ConfigRejected
from analyzers.geometry import crosses_polyline, point_in_polygon
from analyzers.rules import FrameView
from analyzers.state import AlarmState

MONDAY_NOON = datetime(2026, 11, 23, 12, 0)
SQUARE = [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5], [0.1, 0.5]]


def person(x: float, y: float, score: float = 0.9, hint: str = "") -> Detection:
    """A person box whose feet stand at (x, y)."""
    return Detection("person", "Normal", score, (x - 0.03, y - 0.2, x + 0.03, y), "person", hint)


def obj(label: str, x: float, y: float, score: float = 0.9) -> Detection:
    return Detection(label, label, score, (x - 0.02, y - 0.02, x + 0.02, y + 0.02), "user")


def engine(rules: list[dict], profile: str = "enterprise", **extra) -> CameraEngine:
    cfg = AnalysisConfig.model_validate({"enabled": True, "rules": rules, **extra})
    return CameraEngine("37010200101320000001", profile, cfg)


def run(eng: CameraEngine, script: list[tuple[float, list[Detection]]], **kw):
    """Feed (t, detections) frames; returns [(t, status, code, alarm_id)]."""
    out = []
    for t, dets in script:
        frame = FrameView(t, kw.get("at", MONDAY_NOON), dets, kw.get("image", lambda: None))
        for f in eng.process(frame):
            out.append((t, f.transition.status, f.alarm_type, f.transition.alarm_id))
    return out


def every(dt: float, t0: float, t1: float, dets: list[Detection]) -> list:
    n = int(round((t1 - t0) / dt))
    return [(t0 + i * dt, dets) for i in range(n)]


# --- code tables ------------------------------------------------------------------


def test_code_tables_match_spec_and_never_cross_profiles() -> None:
    assert {k: v.code for k, v in ENTERPRISE_TABLE.items()} == {
        "fire": "1", "smoke": "2", "climbing_fence": "3", "intrusion": "4", "off_duty": "5",
        "gathering": "6", "phone": "7", "smoking": "8", "no_helmet": "9", "no_workwear": "10",
    }  # fmt: skip
    assert {k: v.code for k, v in GAS_STATION_TABLE.items()} == {
        "off_duty": "3", "phone": "6", "smoking": "7", "fire": "10", "smoke": "11",
        "extinguisher_missing": "13", "static_discharge": "14",
    }  # fmt: skip
    assert alarm_type("gas_station", "fire").code == "10"
    assert alarm_type("enterprise", "fire").code == "1"
    with pytest.raises(UnknownAlarm):
        alarm_type("gas_station", "gathering")  # code 6 is 'phone' there: never by name
    with pytest.raises(UnknownAlarm):
        alarm_type("enterprise", "static_discharge")


def test_profile_decides_code_for_same_rule() -> None:
    script = every(1, 0, 3, [obj("cigarette", 0.3, 0.3)])
    rule = [{"type": "smoking", "k": 1, "n": 1, "confirm_s": 0}]
    assert run(engine(rule), script)[0][2] == "8"
    assert run(engine(rule, "gas_station"), script)[0][2] == "7"
    with pytest.raises(ConfigRejected, match="no alarm code in the gas_station table"):
        engine([{"type": "intrusion", "zones": ["z"]}], "gas_station", zones={"z": SQUARE})


# --- state machine ------------------------------------------------------------------


def test_state_machine_confirm_clear_and_one_alarm_id() -> None:
    st = AlarmState(confirm_s=2, clear_s=3, cooldown_s=10)
    assert st.update(True, 0) is None
    assert st.update(True, 1.9) is None
    raised = st.update(True, 2.0)
    assert raised is not None and raised.status == 1
    assert st.update(False, 3) is None and st.update(True, 4) is None  # blip: no clear
    assert st.update(False, 5) is None and st.update(False, 7.9) is None
    cleared = st.update(False, 8.0)
    assert cleared is not None and cleared.status == 0 and cleared.alarm_id == raised.alarm_id
    # cool-down: true again at once raises nothing for 10 s
    assert all(st.update(True, t) is None for t in (9, 12, 17.9))
    again = [st.update(True, t) for t in (18.0, 19.0, 20.0)]
    new = [tr for tr in again if tr is not None]
    assert len(new) == 1 and new[0].alarm_id != raised.alarm_id


def test_state_machine_flicker_inside_confirm_never_alarms() -> None:
    st = AlarmState(confirm_s=2, clear_s=1, cooldown_s=0)
    assert [st.update(t % 2 == 0, t * 0.5) for t in range(20)] == [None] * 20


def test_force_clear_reuses_id() -> None:
    st = AlarmState(0, 5, 0)
    raised = st.update(True, 0)
    assert raised is not None
    cleared = st.force_clear(1)
    assert cleared is not None and cleared.alarm_id == raised.alarm_id and cleared.status == 0
    assert st.force_clear(2) is None


# --- presence rules ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "label", "code"),
    [("fire", "fire", "1"), ("smoke", "smoke", "2"), ("no_helmet", "no_helmet", "9"),
     ("phone", "phone", "7"), ("smoking", "cigarette", "8"), ("no_workwear", "no_workwear", "10")],
)  # fmt: skip
def test_presence_k_of_n_in_zone(rule: str, label: str, code: str) -> None:
    eng = engine(
        [{"type": rule, "k": 3, "n": 5, "min_score": 0.5, "zones": ["z"], "clear_s": 2,
          "cooldown_s": 0}],
        zones={"z": SQUARE},
    )  # fmt: skip
    inside, outside, weak = obj(label, 0.3, 0.3), obj(label, 0.8, 0.8), obj(label, 0.3, 0.3, 0.4)
    script = [(0, [inside]), (1, []), (2, [inside]), (3, [outside]), (4, [weak])]  # 2 of 5
    assert run(eng, script) == []
    events = run(eng, [(5, [inside]), (6, [inside])] + every(1, 7, 12, []))  # 3 of 5 at t=6
    assert [(t, s, c) for t, s, c, _ in events] == [(6, 1, code), (9, 0, code)]
    assert events[0][3] == events[1][3]


def test_other_labels_do_not_count() -> None:
    eng = engine([{"type": "fire", "k": 1, "n": 1}])
    assert run(eng, every(1, 0, 5, [obj("smoke", 0.3, 0.3), person(0.3, 0.3)])) == []


# --- zone rules -----------------------------------------------------------------------


def test_intrusion_uses_feet_inside_polygon() -> None:
    eng = engine(
        [{"type": "intrusion", "zones": ["z"], "confirm_s": 1, "clear_s": 1, "cooldown_s": 0}],
        zones={"z": SQUARE},
    )
    # head inside the zone but feet below it: not an intrusion
    assert run(eng, every(0.5, 0, 3, [person(0.3, 0.65)])) == []
    events = run(eng, every(0.5, 3, 5, [person(0.3, 0.4)]) + every(0.5, 5, 7, []))
    assert [(t, s, c) for t, s, c, _ in events] == [(4.0, 1, "4"), (6.0, 0, "4")]


def test_climbing_fence_line_crossing_and_fence_zone() -> None:
    fence = [[0.0, 0.5], [1.0, 0.5]]
    eng = engine(
        [{"type": "climbing_fence", "line": "fence", "clear_s": 1, "cooldown_s": 0}],
        lines={"fence": fence},
    )
    walk_along = [(t, [person(0.2 + 0.02 * t, 0.7)]) for t in range(5)]
    assert run(eng, walk_along) == []
    cross = [(5, [person(0.3, 0.56)]), (6, [person(0.31, 0.46)]), (7, [person(0.31, 0.4)])]
    events = run(eng, cross + every(1, 8, 10, [person(0.31, 0.4)]))
    assert [(t, s, c) for t, s, c, _ in events] == [(6, 1, "3"), (8, 0, "3")]
    on_fence = engine(
        [{"type": "climbing_fence", "zones": ["f"], "confirm_s": 0}], zones={"f": SQUARE}
    )
    assert run(on_fence, [(0, [person(0.3, 0.3)])])[0][1:3] == (1, "3")


def test_climbing_fence_counts_only_the_configured_direction() -> None:
    """The line runs left to right across the picture (first point on the left): walking
    down the picture crosses it from its left to its right, as seen facing along it."""
    fence = [[0.0, 0.5], [1.0, 0.5]]
    down = [(0, [person(0.3, 0.46)]), (1, [person(0.3, 0.56)]), (2, [person(0.3, 0.6)])]
    up = [(0, [person(0.3, 0.56)]), (1, [person(0.3, 0.46)]), (2, [person(0.3, 0.4)])]

    def fired(direction: str, script: list) -> list:
        rule = {"type": "climbing_fence", "line": "fence", "direction": direction}
        return [(t, s) for t, s, _, _ in run(engine([rule], lines={"fence": fence}), script)]

    assert fired("left_to_right", down) == [(1, 1)]
    assert fired("left_to_right", up) == []
    assert fired("right_to_left", up) == [(1, 1)]
    assert fired("right_to_left", down) == []
    assert fired("both", up) == fired("both", down) == [(1, 1)]
    assert crosses_polyline((0.3, 0.4), (0.3, 0.6), fence, "left_to_right")
    assert not crosses_polyline((0.3, 0.6), (0.3, 0.4), fence, "left_to_right")
    with pytest.raises(ValidationError, match="direction"):
        AnalysisConfig.model_validate(
            {
                "lines": {"f": fence},
                "rules": [{"type": "climbing_fence", "line": "f", "direction": "up"}],
            }
        )


def test_gathering_needs_n_people_for_t_seconds() -> None:
    eng = engine([{"type": "gathering", "min_people": 3, "confirm_s": 10, "clear_s": 2}])
    two = [person(0.1, 0.5), person(0.3, 0.5)]
    three = [*two, person(0.5, 0.5)]
    assert run(eng, every(1, 0, 20, two) + every(1, 20, 29, three)) == []
    events = run(eng, every(1, 29, 32, three) + every(1, 32, 36, two))
    assert [(t, s, c) for t, s, c, _ in events] == [(30, 1, "6"), (34, 0, "6")]


def test_off_duty_only_within_schedule_and_gas_station_code() -> None:
    cfg = {
        "zones": {"post": SQUARE},
        "schedules": {"unloading": [{"start": "09:00", "end": "17:00", "days": [0, 1, 2, 3, 4]}]},
    }
    rule = [{"type": "off_duty", "zones": ["post"], "confirm_s": 30, "clear_s": 5,
             "schedule": "unloading"}]  # fmt: skip
    night = datetime(2026, 11, 23, 22, 0)
    assert run(engine(rule, "gas_station", **cfg), every(5, 0, 120, []), at=night) == []
    eng = engine(rule, "gas_station", **cfg)
    on_post = [person(0.3, 0.4)]
    events = run(eng, every(5, 0, 20, on_post) + every(5, 20, 60, []) + every(5, 60, 75, on_post))
    assert [(t, s, c) for t, s, c, _ in events] == [(50, 1, "3"), (65, 0, "3")]
    assert engine(rule, **cfg).rules[0][3] == "5"  # enterprise table


def test_time_window_wraps_midnight() -> None:
    w = TimeWindow(start="22:00", end="06:00", days=[0])
    assert w.contains(datetime(2026, 11, 23, 23, 0))  # Monday night
    assert w.contains(datetime(2026, 11, 24, 5, 0))  # Tuesday early: Monday's shift
    assert not w.contains(datetime(2026, 11, 24, 23, 0))
    assert not w.contains(datetime(2026, 11, 23, 12, 0))


def test_sleeping_is_reported_as_off_duty_with_its_reason_and_fires_on_lying_or_still() -> None:
    """睡岗 has no code of its own: the profile's off-duty code (5 / gas station 3)."""
    rule = [{"type": "sleeping", "confirm_s": 20, "clear_s": 2}]
    lying = run(engine(rule), every(1, 0, 25, [person(0.5, 0.5, hint="lying")]))
    assert [(t, s, c) for t, s, c, _ in lying] == [(20, 1, "5")]
    station = run(engine(rule, "gas_station"), every(1, 0, 25, [person(0.5, 0.5, hint="lying")]))
    assert [(t, s, c) for t, s, c, _ in station] == [(20, 1, "3")]
    assert "睡岗" in REPORT_REASON["sleeping"] and "off duty" in REPORT_REASON["sleeping"]
    still = run(engine(rule), every(1, 0, 40, [person(0.5, 0.5)]))
    assert [(t, s) for t, s, _, _ in still] == [(30, 1)]  # 10 s to call it still + 20 s
    walking = [(t, [person(0.1 + 0.01 * t, 0.5)]) for t in range(60)]
    assert run(engine(rule), walking) == []
    with pytest.raises(ConfigRejected, match="not the enterprise code"):
        engine([{"type": "sleeping", "alarm_type": "99"}])  # an invented code is refused


def test_extinguisher_missing_by_reference_picture() -> None:
    rng = np.random.default_rng(1)
    scene = rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)
    gone = scene.copy()
    gone[36:180, 64:320] = 128  # the extinguisher's place is now plain wall
    rule = [{"type": "extinguisher_missing", "zones": ["place"], "confirm_s": 10, "clear_s": 2}]
    eng = engine(rule, "gas_station", zones={"place": SQUARE})
    events = run(eng, every(1, 0, 5, []), image=lambda: scene)
    events += run(eng, every(1, 5, 20, []), image=lambda: gone)
    events += run(eng, every(1, 20, 25, []), image=lambda: scene)
    assert [(t, s, c) for t, s, c, _ in events] == [(15, 1, "13"), (22, 0, "13")]


def test_extinguisher_missing_by_user_model_class() -> None:
    rule = [{"type": "extinguisher_missing", "mode": "model", "zones": ["place"],
             "confirm_s": 5, "clear_s": 1}]  # fmt: skip
    eng = engine(rule, "gas_station", zones={"place": SQUARE})
    seen = [obj("extinguisher", 0.3, 0.3)]
    elsewhere = [obj("extinguisher", 0.8, 0.8)]
    events = run(eng, every(1, 0, 5, seen) + every(1, 5, 12, elsewhere) + every(1, 12, 15, seen))
    assert [(t, s, c) for t, s, c, _ in events] == [(10, 1, "13"), (13, 0, "13")]
    assert eng.config.labels() == {"extinguisher"}


def test_static_discharge_too_short_then_proper_procedure() -> None:
    zones = {"post": [[0, 0], [0.3, 0], [0.3, 1], [0, 1]], "unload": [[0.6, 0], [1, 0], [1, 1],
             [0.6, 1]]}  # fmt: skip
    rule = [{"type": "static_discharge", "discharge_zone": "post", "unloading_zone": "unload",
             "required_s": 60, "reset_s": 30, "confirm_s": 5, "clear_s": 5}]  # fmt: skip
    # operator at the post for 20 s only, then walks to the unloading point: alarm 14
    eng = engine(rule, "gas_station", zones=zones)
    short = every(2, 0, 20, [person(0.15, 0.5)]) + every(2, 20, 40, [person(0.8, 0.5)])
    events = run(eng, short)
    assert [(t, s, c) for t, s, c, _ in events] == [(26, 1, "14")]
    # next tanker after both zones were empty for reset_s: 60 s at the post first → no alarm
    eng2 = engine(rule, "gas_station", zones=zones)
    proper = every(2, 0, 70, [person(0.15, 0.5)]) + every(2, 70, 100, [person(0.8, 0.5)])
    assert run(eng2, proper) == []
    later = every(2, 100, 140, []) + every(2, 140, 160, [person(0.8, 0.5)])
    assert [(t, s) for t, s, _, _ in run(eng2, later)] == [(146, 1)]  # discharge reset


def test_rule_fps_limits_evaluation_rate() -> None:
    eng = engine([{"type": "fire", "k": 2, "n": 2, "fps": 1, "confirm_s": 0}])
    # at 1 fps the frame at 0.5 s is skipped: only t=0 and t=1 are samples
    assert run(eng, [(0, [obj("fire", 0.5, 0.5)]), (0.5, []), (1.0, [obj("fire", 0.5, 0.5)])])


# --- config validation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"zones": {"z": [[0, 0], [1, 1]]}}, "at least 3 points"),
        ({"rules": [{"type": "intrusion", "zones": ["nope"]}]}, "unknown zone"),
        ({"rules": [{"type": "fire", "k": 5, "n": 3}]}, "k must be <= n"),
        ({"rules": [{"type": "off_duty"}]}, "needs a duty zone"),
        ({"rules": [{"type": "teleport"}]}, "does not match any of the expected tags"),
        ({"zones": {"z": [[0, 0], [2, 0], [1, 1]]}}, "less than or equal to 1"),
        ({"rules": [{"type": "fire"}, {"type": "fire"}]}, "two rules named"),
        ({"schedules": {"s": [{"start": "25:00"}]}}, "HH:MM"),
        ({"rules": [{"type": "fire", "colour": "red"}]}, "Extra inputs"),
    ],
)
def test_config_errors_are_clear(config: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AnalysisConfig.model_validate(config)


def test_geometry_helpers() -> None:
    assert point_in_polygon((0.3, 0.3), SQUARE) and not point_in_polygon((0.6, 0.3), SQUARE)
    assert crosses_polyline((0.5, 0.4), (0.5, 0.6), [(0, 0.5), (1, 0.5)])
    assert not crosses_polyline((0.5, 0.4), (0.6, 0.45), [(0, 0.5), (1, 0.5)])


def test_alarm_pictures_stay_under_4_mb() -> None:
    from analyzers.snapshot import MAX_IMAGE_BYTES, pictures

    noise = np.random.default_rng(2).integers(0, 255, (3000, 4000, 3), dtype=np.uint8)
    cfg = AnalysisConfig.model_validate({"zones": {"z": SQUARE}})
    drawn, raw = pictures(noise, [person(0.3, 0.4)], cfg, "intrusion [4] ALARM")
    for jpeg in (drawn, raw):
        assert jpeg[:2] == b"\xff\xd8" and len(jpeg) <= MAX_IMAGE_BYTES


async def test_sleeping_alarm_record_carries_the_reason(tmp_path) -> None:
    from analyzers.pool import AnalyzerPool, _Camera
    from sip.channel_ref import ChannelRef
    from vms.config import load_settings

    got = []

    async def emit(event) -> None:
        got.append(event)

    settings = load_settings(server={"data_dir": tmp_path})
    pool = AnalyzerPool(
        settings.analyzers, None, models_dir=tmp_path, timezone="Asia/Shanghai", emit=emit
    )
    rule = [{"type": "sleeping", "confirm_s": 2, "clear_s": 2}]
    eng = engine(rule, "gas_station")
    camera = ChannelRef("37010200101180000001", "37010200101320000001")
    cam = _Camera(camera, "gas_station", eng.config, eng, 0)
    for t in range(4):
        frame = FrameView(t, MONDAY_NOON, [person(0.5, 0.5, hint="lying")])
        for f in eng.process(frame):
            await pool._emit(cam, f, None, 1.7e9 + t)
    (event,) = got
    assert event.alarm_type == "3" and event.rule == "sleeping"
    assert (event.device_id, event.channel_id) == (camera.device_id, camera.channel_id)
    assert "睡岗" in event.detail["reason"] and "sleeping on post" in event.detail["note"]
