"""The warning level of one reading of one point: thresholds, rate of change, discrete states.

Causes: ``hh``/``h`` (high-high, high), ``l``/``ll`` (low, low-low), ``rate`` (change per
minute over about the last minute) and ``state`` (a discrete point — grounding, overflow,
SIS — reads ≥ 0.5).  Each cause maps to a level through :data:`DEFAULT_LEVELS`, the
per-kind table :data:`KIND_LEVELS` (combustible gas: first alarm ``h`` is orange, second
alarm ``hh`` is red, GB/T 50493) and the point's own ``Sensor.levels`` override.

Hysteresis: a value enters a band at its threshold and leaves it only once it is back past
the threshold by ``deadband`` × the instrument range (or × |threshold| without a range), so a
value hovering at a threshold does not flap.

This runs for every reading on the event loop: a point in its normal band with no rate
threshold costs two float comparisons and allocates nothing (see ``bench/warning.py``).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from vms.ingest.points import DISCRETE_KINDS, Point, SensorKind

from .table import LEVEL_NAMES, RANK

CAUSES = ("hh", "h", "l", "ll", "rate", "state")
DEFAULT_LEVELS: dict[str, str] = {
    "hh": "orange",
    "h": "yellow",
    "l": "yellow",
    "ll": "orange",
    "rate": "blue",
    "state": "orange",
}
KIND_LEVELS: dict[str, dict[str, str]] = {
    SensorKind.gas_combustible: {"h": "orange", "hh": "red"},  # GB/T 50493: 1st / 2nd alarm
    SensorKind.grounding: {"state": "orange"},
    SensorKind.overflow: {"state": "red"},
    SensorKind.sis: {"state": "red"},
}
RATE_WINDOW_S = 60.0  # the rate is measured against the newest reading at least this old
RATE_HISTORY = 600  # readings kept for the rate window (bounds memory for very fast points)
DISCRETE_ON = 0.5
_INF = math.inf


def validate_levels(raw: dict[str, Any] | None) -> dict[str, str]:
    """A ``Sensor.levels`` override checked: known causes, known levels ("" = no warning)."""
    out: dict[str, str] = {}
    for cause, level in (raw or {}).items():
        if cause not in CAUSES:
            raise ValueError(f"unknown cause {cause!r} (one of {', '.join(CAUSES)})")
        name = "" if level is None else str(level)
        if name not in RANK:
            raise ValueError(f"unknown level {level!r} for {cause} (red, orange, yellow, blue, '')")
        out[cause] = name
    return out


def check_thresholds(thresholds: dict[str, float]) -> list[str]:
    """Problems with a threshold set (ll ≤ l < h ≤ hh, a positive rate); empty when sound."""
    problems = []
    order = [k for k in ("ll", "l", "h", "hh") if k in thresholds]
    for lower, upper in zip(order, order[1:], strict=False):
        if thresholds[lower] > thresholds[upper]:
            problems.append(f"{lower} ({thresholds[lower]}) is above {upper} ({thresholds[upper]})")
    if "rate" in thresholds and thresholds["rate"] <= 0:
        problems.append("rate must be a positive change per minute")
    return problems


def cause_levels(kind: str, overrides: dict[str, Any] | None) -> dict[str, str]:
    """Cause → level for a point: defaults, then its kind's table, then its own override."""
    levels = {**DEFAULT_LEVELS, **KIND_LEVELS.get(kind, {})}
    for cause, level in (overrides or {}).items():
        name = "" if level is None else str(level)
        if cause in CAUSES and name in RANK:  # a bad override is refused by the API; skip here
            levels[cause] = name
    return levels


class LevelEvaluator:
    """Compiled thresholds of one point and where its value sits (the hysteresis state)."""

    __slots__ = (
        "thresholds",
        "overrides",
        "kind",
        "span",
        "enter_high",
        "enter_low",
        "high",
        "low",
        "side",
        "index",
        "has_rate",
        "rate_limit",
        "rate_exit",
        "rate_rank",
        "rate_on",
        "rate",
        "window",
        "cause",
        "threshold",
    )

    def __init__(self, point: Point, deadband: float) -> None:
        self.thresholds = point.thresholds  # identity tells the engine the config changed
        self.overrides = point.levels
        self.kind = point.kind
        self.span = (point.range_min, point.range_max)
        levels = cause_levels(point.kind, point.levels)
        t = point.thresholds
        span = None
        if point.range_min is not None and point.range_max is not None:
            span = point.range_max - point.range_min if point.range_max > point.range_min else None

        def band(x: float) -> float:
            return deadband * (span if span else abs(x))

        # bands per side, most severe first: (enter, stay-while-beyond, rank, cause, threshold)
        self.high: list[tuple[float, float, int, str, float]] = []
        self.low: list[tuple[float, float, int, str, float]] = []
        if point.kind in DISCRETE_KINDS:
            stay = math.nextafter(DISCRETE_ON, -_INF)
            self.high.append((DISCRETE_ON, stay, RANK[levels["state"]], "state", DISCRETE_ON))
        else:
            crossed = 0
            for cause in ("h", "hh"):  # a value above hh is above h too: take the higher level
                if cause in t:
                    crossed = max(crossed, RANK[levels[cause]])
                    self.high.insert(
                        0, (t[cause], t[cause] - band(t[cause]), crossed, cause, t[cause])
                    )
            crossed = 0
            for cause in ("l", "ll"):
                if cause in t:
                    crossed = max(crossed, RANK[levels[cause]])
                    self.low.insert(
                        0, (t[cause], t[cause] + band(t[cause]), crossed, cause, t[cause])
                    )
        self.enter_high = self.high[-1][0] if self.high else _INF
        self.enter_low = self.low[-1][0] if self.low else -_INF
        self.side = 0  # 0 normal, 1 in a high band, -1 in a low band
        self.index = 0  # which band of that side
        rate = t.get("rate") if point.kind not in DISCRETE_KINDS else None
        self.has_rate = bool(rate and rate > 0)
        self.rate_limit = abs(rate) if self.has_rate and rate else _INF
        self.rate_exit = self.rate_limit * (1 - deadband)
        self.rate_rank = RANK[levels["rate"]]
        self.rate_on = False
        self.rate = 0.0
        self.window: deque[tuple[float, float]] = deque(maxlen=RATE_HISTORY)
        self.cause = ""
        self.threshold: float | None = None

    def evaluate(self, ts: float, value: float) -> int:
        """The level rank (0 = normal … 4 = red) of this reading; ``cause``/``threshold`` say why.

        ``ts`` (epoch seconds) only matters for the rate of change.
        """
        if self.side == 0 and self.enter_low < value < self.enter_high and not self.has_rate:
            return 0
        rank = self._bands(value)
        if self.has_rate and self._rate(ts, value) > rank:
            self.cause, self.threshold = "rate", self.rate_limit
            return self.rate_rank
        return rank

    def restore(self, cause: str) -> None:
        """Resume the hysteresis state of a warning reloaded after a restart."""
        for side, bands in ((1, self.high), (-1, self.low)):
            for i, band in enumerate(bands):
                if band[3] == cause:
                    self.side, self.index = side, i
                    self.cause, self.threshold = cause, band[4]
        if cause == "rate":
            self.rate_on = True

    def reset(self) -> None:
        self.side = self.index = 0
        self.rate_on = False
        self.cause, self.threshold = "", None

    def _bands(self, value: float) -> int:
        side = self.side
        if side:
            bands = self.high if side > 0 else self.low
            current = self.index
            for i, (enter, stay, rank, cause, threshold) in enumerate(bands):
                if i < current:  # a more severe band: entered at its threshold
                    inside = value >= enter if side > 0 else value <= enter
                else:  # this band or a milder one we are falling through: hysteresis
                    inside = value > stay if side > 0 else value < stay
                if inside:
                    self.index = i
                    self.cause, self.threshold = cause, threshold
                    return rank
            self.side = self.index = 0
        for side, bands in ((1, self.high), (-1, self.low)):
            for i, (enter, _stay, rank, cause, threshold) in enumerate(bands):
                if (value >= enter) if side > 0 else (value <= enter):
                    self.side, self.index = side, i
                    self.cause, self.threshold = cause, threshold
                    return rank
        self.cause, self.threshold = "", None
        return 0

    def _rate(self, ts: float, value: float) -> int:
        window = self.window
        if window and ts <= window[-1][0]:
            return self.rate_rank if self.rate_on else 0  # same or older time: no new slope
        window.append((ts, value))
        edge = ts - RATE_WINDOW_S
        while len(window) > 1 and window[1][0] <= edge:
            window.popleft()
        t0, v0 = window[0]
        self.rate = (value - v0) * 60.0 / (ts - t0) if ts > t0 else 0.0
        magnitude = abs(self.rate)
        self.rate_on = magnitude > self.rate_exit if self.rate_on else magnitude >= self.rate_limit
        return self.rate_rank if self.rate_on else 0


def level_name(rank: int) -> str:
    return LEVEL_NAMES[rank]
