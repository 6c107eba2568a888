"""How the simulated plant's values move: slow drift, daily cycles, tanks filling and
emptying, batch operation, and the scripted gas leak.

Each model is a pure function of ``t``, the seconds since the simulator started, so the
scripted incident can be checked against its thresholds without running anything;
measurement noise is added per sample by :class:`SimPoint` from a seeded generator.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Protocol

DAY_S = 86_400.0
GOLDEN = 1.618_033_988_75  # second drift period: never in step with the first


class Signal(Protocol):
    def value(self, t: float) -> float: ...


@dataclass(frozen=True)
class Constant:
    level: float

    def value(self, t: float) -> float:
        return self.level


@dataclass(frozen=True)
class Drift:
    """A value wandering slowly around ``mean`` (two sines whose periods never line up)."""

    mean: float
    amplitude: float
    period_s: float = 3600.0
    phase: float = 0.0

    def value(self, t: float) -> float:
        w = 2 * math.pi * t / self.period_s
        wander = 0.6 * math.sin(w + self.phase) + 0.4 * math.sin(w / GOLDEN + 2 * self.phase)
        return self.mean + self.amplitude * wander


@dataclass(frozen=True)
class DailyCycle:
    """Outdoor temperature: warmest at ``peak_hour`` local time, coolest twelve hours later."""

    mean: float
    amplitude: float
    peak_hour: float = 15.0
    start_s_of_day: float = 0.0  # local time of day, in seconds, when t = 0

    def value(self, t: float) -> float:
        since_peak = self.start_s_of_day + t - self.peak_hour * 3600
        return self.mean + self.amplitude * math.cos(2 * math.pi * since_peak / DAY_S)


@dataclass(frozen=True)
class FillCycle:
    """A tank filled from ``low`` to ``high`` and emptied again, once every ``period_s``."""

    low: float
    high: float
    period_s: float = 4 * 3600.0
    phase_s: float = 0.0

    def value(self, t: float) -> float:
        x = ((t + self.phase_s) % self.period_s) / self.period_s  # 0..1
        up = 2 * x if x < 0.5 else 2 * (1 - x)
        return self.low + (self.high - self.low) * up


@dataclass(frozen=True)
class Batches:
    """On/off operation (a truck loading): ``on_value`` for ``on_s`` out of every ``period_s``."""

    on_value: float
    period_s: float
    on_s: float
    start_s: float = 0.0
    off_value: float = 0.0

    def value(self, t: float) -> float:
        if t < self.start_s:
            return self.off_value
        return self.on_value if (t - self.start_s) % self.period_s < self.on_s else self.off_value


@dataclass(frozen=True)
class LeakRamp:
    """The scripted incident: a gas concentration rising, holding, falling back (additive).

    Starts ``start_s`` after the simulator, rises linearly to ``peak`` over ``rise_s``, holds
    ``hold_s``, falls back over ``fall_s``; with ``repeat_s`` it starts again that often.
    """

    start_s: float = 60.0
    rise_s: float = 180.0
    hold_s: float = 180.0
    fall_s: float = 180.0
    peak: float = 65.0
    repeat_s: float = 0.0  # 0 → once

    def __post_init__(self) -> None:
        if min(self.start_s, self.rise_s, self.hold_s, self.fall_s, self.repeat_s) < 0:
            raise ValueError("leak times cannot be negative")
        if self.rise_s <= 0 or self.fall_s <= 0:
            raise ValueError("leak rise and fall must last more than 0 s")
        if self.repeat_s and self.repeat_s < self.duration_s:
            raise ValueError(f"leak repeat_s must be at least its duration ({self.duration_s} s)")

    @property
    def duration_s(self) -> float:
        return self.rise_s + self.hold_s + self.fall_s

    def value(self, t: float) -> float:
        phase = t - self.start_s
        if phase < 0:
            return 0.0
        if self.repeat_s:
            phase %= self.repeat_s
        if phase < self.rise_s:
            return self.peak * phase / self.rise_s
        phase -= self.rise_s
        if phase < self.hold_s:
            return self.peak
        phase -= self.hold_s
        if phase < self.fall_s:
            return self.peak * (1 - phase / self.fall_s)
        return 0.0

    def crossing_s(self, level: float) -> float | None:
        """When the (first) ramp reaches ``level``; None if its peak stays below."""
        if level > self.peak:
            return None
        return self.start_s + self.rise_s * max(level, 0.0) / self.peak

    def clearing_s(self, level: float) -> float | None:
        """When the (first) ramp falls back below ``level`` after its peak."""
        if level > self.peak:
            return None
        return self.start_s + self.rise_s + self.hold_s + self.fall_s * (1 - level / self.peak)


@dataclass(frozen=True)
class Sum:
    parts: tuple[Signal, ...]

    def value(self, t: float) -> float:
        return sum(p.value(t) for p in self.parts)


@dataclass(frozen=True)
class SimPoint:
    """One simulated measurement point: what it is, how it moves, where a gateway offers it."""

    tag: str
    name: str
    kind: str  # vms.ingest.points.SensorKind
    unit: str
    signal: Signal
    low: float  # instrument range
    high: float
    noise: float = 0.0  # standard deviation of the measurement noise
    resolution: float = 0.01  # what the instrument shows (values are rounded to it)
    thresholds: dict[str, float] = field(default_factory=dict)
    installation: str = "tank_area"  # storage.sensor_models.InstallationKind
    transport: str = "modbus"  # modbus | push | mqtt
    source: dict[str, Any] = field(default_factory=dict)  # the point's source in its gateway

    def sample(self, t: float, rng: random.Random) -> float:
        """The value the instrument shows at ``t``: model + noise, within range, rounded."""
        value = self.signal.value(t)
        if self.noise:
            value += rng.gauss(0.0, self.noise)
        value = min(max(value, self.low), self.high)
        if self.resolution:
            value = round(round(value / self.resolution) * self.resolution, 6)
        return value
