"""Levels of single readings: thresholds, hysteresis, rate of change, discrete states, overrides."""

from __future__ import annotations

import pytest

from vms.ingest.points import Point
from vms.warning.levels import (
    DEFAULT_LEVELS,
    KIND_LEVELS,
    LevelEvaluator,
    cause_levels,
    check_thresholds,
    validate_levels,
)
from vms.warning.table import RANK

NONE, BLUE, YELLOW, ORANGE, RED = range(5)


def point(kind: str = "pressure", levels: dict | None = None, rng=(0.0, 10.0), **thr) -> Point:
    return Point(
        pk=1,
        org_id=1,
        tag="PT-1",
        kind=kind,
        range_min=rng[0] if rng else None,
        range_max=rng[1] if rng else None,
        thresholds=thr,
        levels=levels or {},
    )


def run(ev: LevelEvaluator, values: list[float], step_s: float = 1.0) -> list[tuple[int, str]]:
    out = []
    for i, v in enumerate(values):
        rank = ev.evaluate(1000.0 + i * step_s, v)
        out.append((rank, ev.cause if rank else ""))
    return out


def test_default_cause_table() -> None:
    assert DEFAULT_LEVELS == {
        "hh": "orange",
        "h": "yellow",
        "l": "yellow",
        "ll": "orange",
        "rate": "blue",
        "state": "orange",
    }
    assert cause_levels("gas_combustible", {})["h"] == "orange"  # GB/T 50493 first alarm
    assert cause_levels("gas_combustible", {})["hh"] == "red"  # second alarm
    assert cause_levels("grounding", {})["state"] == "orange"
    assert cause_levels("overflow", {})["state"] == "red"
    assert cause_levels("sis", {})["state"] == "red"
    assert cause_levels("gas_toxic", {})["h"] == "yellow"
    assert set(KIND_LEVELS) == {"gas_combustible", "grounding", "overflow", "sis"}


def test_thresholds_high_and_low() -> None:
    ev = LevelEvaluator(point(ll=1.0, l=2.0, h=7.0, hh=9.0), deadband=0.0)
    got = run(ev, [5.0, 7.0, 8.9, 9.0, 9.5, 6.0, 2.0, 1.5, 1.0, 0.5, 5.0])
    assert got == [
        (NONE, ""),
        (YELLOW, "h"),
        (YELLOW, "h"),
        (ORANGE, "hh"),
        (ORANGE, "hh"),
        (NONE, ""),
        (YELLOW, "l"),
        (YELLOW, "l"),
        (ORANGE, "ll"),
        (ORANGE, "ll"),
        (NONE, ""),
    ]
    assert ev.threshold is None
    ev.evaluate(2000.0, 9.2)
    assert (ev.cause, ev.threshold) == ("hh", 9.0)


def test_hysteresis_uses_the_range_then_the_threshold() -> None:
    # deadband 2 % of a 0..10 range = 0.2: leaving h=7 needs <= 6.8, leaving hh=9 needs <= 8.8
    ev = LevelEvaluator(point(h=7.0, hh=9.0), deadband=0.02)
    got = run(ev, [7.0, 6.9, 6.81, 6.8, 7.0, 9.0, 8.85, 8.8, 6.85, 6.7])
    assert [r for r, _ in got] == [
        YELLOW, YELLOW, YELLOW, NONE, YELLOW, ORANGE, ORANGE, YELLOW, YELLOW, NONE
    ]  # fmt: skip
    # no range: 2 % of |threshold|; low side leaves upwards
    ev = LevelEvaluator(point(rng=None, l=50.0), deadband=0.02)
    got = run(ev, [50.0, 50.9, 51.0, 49.0])
    assert [r for r, _ in got] == [YELLOW, YELLOW, NONE, YELLOW]


def test_hovering_at_a_threshold_does_not_flap() -> None:
    ev = LevelEvaluator(point(h=7.0), deadband=0.02)
    values = [7.0 + (-0.05 if i % 2 else 0.05) for i in range(40)]
    ranks = {r for r, _ in run(ev, values)}
    assert ranks == {YELLOW}
    bare = LevelEvaluator(point(h=7.0), deadband=0.0)
    assert {r for r, _ in run(bare, values)} == {NONE, YELLOW}  # what the deadband prevents


def test_rate_of_change_per_minute() -> None:
    # rate 1.0/min; readings every 10 s
    ev = LevelEvaluator(point(h=9.0, rate=1.0), deadband=0.0)
    steady = run(ev, [2.0] * 6, step_s=10)
    assert {r for r, _ in steady} == {NONE}
    ev = LevelEvaluator(point(h=9.0, rate=1.0), deadband=0.0)
    rising = [2.0 + 0.2 * i for i in range(12)]  # 1.2 per minute
    got = run(ev, rising, step_s=10)
    assert got[0] == (NONE, "")
    assert got[-1] == (BLUE, "rate") and ev.rate == pytest.approx(1.2)
    # falling fast counts too; the rate is measured over about the last minute
    ev = LevelEvaluator(point(h=9.0, rate=1.0), deadband=0.0)
    got = run(ev, [8.0, 7.0, 6.0], step_s=20)
    assert got[-1] == (BLUE, "rate") and ev.rate == pytest.approx(-3.0)  # -2 in 40 s
    # a sparse point (5 min) compares with its previous reading
    ev = LevelEvaluator(point(rate=1.0), deadband=0.0)
    assert [r for r, _ in run(ev, [2.0, 6.0, 6.5], step_s=300)] == [NONE, NONE, NONE]
    assert ev.rate == pytest.approx(0.1)


def test_threshold_outranks_rate() -> None:
    ev = LevelEvaluator(point(h=5.0, rate=1.0), deadband=0.0)
    got = run(ev, [2.0, 4.0, 6.0], step_s=10)
    assert got[1] == (BLUE, "rate")
    assert got[2] == (YELLOW, "h")


def test_discrete_states() -> None:
    for kind, level in (("grounding", ORANGE), ("overflow", RED), ("sis", RED)):
        ev = LevelEvaluator(point(kind, rng=(0.0, 1.0)), deadband=0.02)
        got = run(ev, [0.0, 1.0, 1.0, 0.49, 0.5, 0.0])
        assert got == [
            (NONE, ""),
            (level, "state"),
            (level, "state"),
            (NONE, ""),
            (level, "state"),
            (NONE, ""),
        ], kind


def test_per_point_override() -> None:
    ev = LevelEvaluator(point(levels={"h": "blue", "hh": "red"}, h=7.0, hh=9.0), 0.0)
    assert [r for r, _ in run(ev, [7.5, 9.5])] == [BLUE, RED]
    ev = LevelEvaluator(point("gas_combustible", levels={"hh": "orange"}, h=25, hh=50), 0.0)
    assert [r for r, _ in run(ev, [30, 60])] == [ORANGE, ORANGE]
    ev = LevelEvaluator(point("sis", levels={"state": "yellow"}, rng=(0, 1)), 0.0)
    assert run(ev, [1.0]) == [(YELLOW, "state")]
    # "" mutes a cause; a value above hh is above h too, so hh never ranks below h
    ev = LevelEvaluator(point(levels={"h": ""}, h=7.0, hh=9.0), 0.0)
    assert [r for r, _ in run(ev, [8.0, 9.5])] == [NONE, ORANGE]
    ev = LevelEvaluator(point(levels={"h": "red", "hh": "yellow"}, h=7.0, hh=9.0), 0.0)
    assert [r for r, _ in run(ev, [8.0, 9.5])] == [RED, RED]


def test_restore_resumes_hysteresis() -> None:
    ev = LevelEvaluator(point(h=7.0, hh=9.0), deadband=0.02)
    ev.restore("hh")
    assert ev.evaluate(0.0, 8.9) == ORANGE  # still within the deadband of hh
    ev.reset()
    assert ev.evaluate(1.0, 8.9) == YELLOW


def test_validation_helpers() -> None:
    assert validate_levels({"h": "blue", "state": "", "hh": None}) == {
        "h": "blue",
        "state": "",
        "hh": "",
    }
    with pytest.raises(ValueError, match="unknown cause"):
        validate_levels({"hi": "red"})
    with pytest.raises(ValueError, match="unknown level"):
        validate_levels({"h": "purple"})
    assert check_thresholds({"ll": 1, "l": 2, "h": 7, "hh": 9, "rate": 1}) == []
    assert check_thresholds({"h": 9, "hh": 7}) == ["h (9) is above hh (7)"]
    assert check_thresholds({"rate": 0}) == ["rate must be a positive change per minute"]
    assert RANK["red"] == RED and RANK[""] == NONE
