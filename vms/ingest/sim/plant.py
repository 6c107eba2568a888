"""The simulated enterprise: a tank area behind a DCS (Modbus TCP), a loading rack that
pushes its data (HTTP push), and a warehouse on an MQTT broker.

Tags, ranges and thresholds are those a hazardous-chemical plant would configure (alarm
levels of combustible gas detectors at 25 % and 50 % LEL, GB/T 50493); the Modbus
register map mixes the data formats real DCSs export, so a demo exercises the decoder.
"""

from __future__ import annotations

from .values import (
    Batches,
    Constant,
    DailyCycle,
    Drift,
    FillCycle,
    LeakRamp,
    SimPoint,
    Sum,
)

LEAK_TAG = "GT-101"  # the combustible-gas detector that sees the scripted leak
GAS_THRESHOLDS = {"h": 25.0, "hh": 50.0}  # %LEL: first and second alarm level
LEVEL_THRESHOLDS = {"hh": 18.5, "h": 17.0, "l": 2.0, "ll": 1.0}  # m, a 20 m tank
MQTT_ROWS_TOPIC = "rows"  # under the MQTT topic prefix: JSON rows with tags


def plant_points(
    leak: LeakRamp, start_s_of_day: float = 0.0, mqtt_prefix: str = "plant/demo"
) -> list[SimPoint]:
    """Every simulated point; ``start_s_of_day`` aligns the daily temperature cycle."""
    outdoor = DailyCycle(22.0, 5.0, start_s_of_day=start_s_of_day)
    indoor = DailyCycle(18.0, 3.0, peak_hour=16.0, start_s_of_day=start_s_of_day)
    # fmt: off
    return [
        # --- tank area, Modbus TCP (holding registers, unit 1) ---
        SimPoint(
            "LT-101", "1号储罐液位", "level", "m", FillCycle(9.0, 14.0, 4 * 3600.0),
            0.0, 20.0, noise=0.005, resolution=0.001, thresholds=LEVEL_THRESHOLDS,
            source={"function": "holding", "address": 0, "type": "float32"},
        ),
        SimPoint(
            "PT-101", "1号储罐压力", "pressure", "MPa", Drift(0.32, 0.03, 2400.0),
            0.0, 2.5, noise=0.002, resolution=0.001, thresholds={"h": 0.8, "hh": 1.0},
            source={"function": "holding", "address": 2, "type": "uint16", "scale": 0.001},
        ),
        SimPoint(
            "LT-102", "2号储罐液位", "level", "m", FillCycle(5.0, 12.0, 6 * 3600.0, 5400.0),
            0.0, 20.0, noise=0.005, resolution=0.001, thresholds=LEVEL_THRESHOLDS,
            source={
                "function": "holding", "address": 3, "type": "uint32",
                "word_order": "little", "scale": 0.001,
            },
        ),
        SimPoint(
            LEAK_TAG, "罐区可燃气体1", "gas_combustible", "%LEL",
            Sum((Drift(1.2, 0.6, 900.0), leak)),
            0.0, 100.0, noise=0.15, resolution=0.1, thresholds=GAS_THRESHOLDS,
            source={"function": "holding", "address": 5, "type": "uint16", "scale": 0.1},
        ),
        SimPoint(
            "GT-102", "罐区可燃气体2", "gas_combustible", "%LEL", Drift(0.8, 0.5, 1300.0, 1.0),
            0.0, 100.0, noise=0.15, resolution=0.1, thresholds=GAS_THRESHOLDS,
            source={
                "function": "holding", "address": 6, "type": "int16",
                "byte_order": "little", "scale": 0.1,
            },
        ),
        SimPoint(
            "TT-101", "1号储罐温度", "temperature", "°C", Sum((outdoor, Drift(0.0, 0.4))),
            -40.0, 120.0, noise=0.05, resolution=0.1, thresholds={"h": 45.0, "hh": 55.0},
            source={"function": "input", "address": 0, "type": "int16", "scale": 0.1},
        ),
        # --- loading rack: grounding on the DCS, gas and flow pushed by the rack's PLC ---
        SimPoint(
            "ES-201", "装车静电接地", "grounding", "", Constant(0.0), 0.0, 1.0,
            resolution=1.0, installation="loading_rack",
            source={"function": "discrete", "address": 0, "type": "bool"},
        ),
        SimPoint(
            "GT-201", "装卸区可燃气体", "gas_combustible", "%LEL", Drift(0.6, 0.4, 1100.0, 2.0),
            0.0, 100.0, noise=0.15, resolution=0.1, thresholds=GAS_THRESHOLDS,
            installation="loading_rack", transport="push",
        ),
        SimPoint(
            "FT-201", "装车流量", "flow", "m³/h", Batches(60.0, 1800.0, 900.0, 120.0),
            0.0, 120.0, noise=1.0, resolution=0.1, thresholds={"h": 100.0},
            installation="loading_rack", transport="push",
        ),
        # --- warehouse, MQTT (one point on its own topic, one in JSON rows) ---
        SimPoint(
            "TT-301", "仓库温度", "temperature", "°C", indoor, -40.0, 80.0,
            noise=0.05, resolution=0.1, thresholds={"h": 35.0, "hh": 40.0},
            installation="warehouse", transport="mqtt",
            source={"topic": f"{mqtt_prefix}/TT-301"},
        ),
        SimPoint(
            "HT-301", "仓库湿度", "humidity", "%RH", Drift(55.0, 8.0, 5000.0), 0.0, 100.0,
            noise=0.3, resolution=0.1, thresholds={"h": 85.0},
            installation="warehouse", transport="mqtt",
        ),
    ]
    # fmt: on
