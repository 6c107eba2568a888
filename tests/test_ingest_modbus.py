"""Modbus collectors: the pure decoder and block planner, then Modbus TCP, RTU over TCP and
RTU over a serial line against real pymodbus servers, through a real ingest service."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pymodbus import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from sqlalchemy import update

from storage.db import Database
from storage.sensor_models import Sensor, SensorGateway
from vms.ingest.collectors.base import Backoff, GatewaySpec, PointRef, RateLimitedLog
from vms.ingest.collectors.modbus import ModbusCollector
from vms.ingest.collectors.modbus_decode import (
    BlockItem,
    DecodeError,
    decode_bit,
    decode_registers,
    encode_value,
    plan_blocks,
)
from vms.ingest.gateway_config import ModbusSource
from vms.ingest.samples import IngestBusy, Sample, SubmitResult

from .ingest_support import NullModem, Site, add_gateway, add_sensor, free_port, running_ingest
from .ingest_support import wait_until as wait

# --- the decoder ----------------------------------------------------------------------------


def src(**kw: Any) -> ModbusSource:
    return ModbusSource(**{"address": 0, **kw})


def words_of(fmt: str, value: float) -> list[int]:
    """Big-endian words of a packed value, written independently of the code under test."""
    data = struct.pack(fmt, value)
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def swap(words: list[int]) -> list[int]:
    return [((w & 0xFF) << 8) | (w >> 8) for w in words]


@pytest.mark.parametrize(
    ("kind", "word_order", "byte_order", "words", "expected"),
    [
        ("uint16", "big", "big", [0xFFFE], 65534),
        ("int16", "big", "big", [0xFFFE], -2),
        ("int16", "big", "little", [0xFEFF], -2),
        ("uint32", "big", "big", [0x0001, 0x0002], 65538),
        ("uint32", "little", "big", [0x0002, 0x0001], 65538),
        ("int32", "big", "big", words_of(">i", -123456), -123456),
        ("int32", "little", "big", words_of(">i", -123456)[::-1], -123456),
        ("int32", "big", "little", swap(words_of(">i", -123456)), -123456),
        ("int32", "little", "little", swap(words_of(">i", -123456)[::-1]), -123456),
        ("float32", "big", "big", [0x4050, 0x0000], 3.25),  # ABCD
        ("float32", "little", "big", [0x0000, 0x4050], 3.25),  # CDAB
        ("float32", "big", "little", [0x5040, 0x0000], 3.25),  # BADC
        ("float32", "little", "little", [0x0000, 0x5040], 3.25),  # DCBA
    ],
)
def test_decode_every_type_and_order(
    kind: str, word_order: str, byte_order: str, words: list[int], expected: float
) -> None:
    source = src(type=kind, word_order=word_order, byte_order=byte_order)
    assert decode_registers(words, source) == pytest.approx(expected)
    assert encode_value(expected, source) == words


def test_scale_offset_and_bits() -> None:
    assert decode_registers([1234], src(scale=0.01)) == pytest.approx(12.34)
    assert decode_registers([0xFF9C], src(type="int16", scale=0.1, offset=-40)) == pytest.approx(
        -50.0
    )
    assert encode_value(-50.0, src(type="int16", scale=0.1, offset=-40)) == [0xFF9C]
    coil = src(function="coil", type="bool")
    assert (decode_bit(True, coil), decode_bit(False, coil)) == (1.0, 0.0)
    inverted = src(function="discrete", type="bool", scale=-1, offset=1)  # normally-closed
    assert (decode_bit(True, inverted), decode_bit(False, inverted)) == (0.0, 1.0)


def test_float32_reads_as_the_decimal_the_device_meant() -> None:
    for value in (9.153, 0.1, -273.15, 1234.567, 3.4e38):
        assert decode_registers(words_of(">f", value), src(type="float32")) == value
    third = struct.unpack(">f", struct.pack(">f", 1 / 3))[0]
    assert decode_registers(words_of(">f", third), src(type="float32")) == pytest.approx(1 / 3)


def test_decode_refuses_what_is_not_a_value() -> None:
    with pytest.raises(DecodeError, match="needs 2 registers"):
        decode_registers([1], src(type="float32"))
    with pytest.raises(DecodeError, match="nan"):
        decode_registers(words_of(">f", float("nan")), src(type="float32"))
    with pytest.raises(DecodeError, match="bits"):
        decode_registers([1], src(function="coil", type="bool"))


def test_encode_clamps_integers_to_their_type() -> None:
    assert encode_value(70000, src()) == [0xFFFF]
    assert encode_value(-5, src()) == [0]
    assert encode_value(40000, src(type="int16")) == [0x7FFF]


def _items(*specs: tuple[int, str, int, str]) -> list[tuple[int, BlockItem]]:
    return [
        (
            unit,
            BlockItem(
                f"T{addr}-{function}-{unit}", src(address=addr, function=function, type=kind)
            ),
        )
        for unit, function, addr, kind in specs
    ]


def test_plan_blocks_groups_by_unit_and_function_within_the_limits() -> None:
    items = _items(
        (1, "holding", 0, "uint16"),
        (1, "holding", 1, "float32"),  # 1-2
        (1, "holding", 3, "uint16"),
        (1, "holding", 10, "uint16"),  # a hole of 6: joined (≤ MAX_GAP)
        (1, "holding", 40, "uint16"),  # a hole of 29: its own read
        (2, "holding", 0, "uint16"),  # another unit
        (1, "input", 0, "int16"),
        (1, "coil", 3, "bool"),
        (1, "coil", 9, "bool"),
    )
    blocks = plan_blocks(items, max_block=100)
    shape = sorted((b.unit_id, b.function, b.start, b.count, len(b.items)) for b in blocks)
    assert shape == [
        (1, "coil", 3, 7, 2),
        (1, "holding", 0, 11, 4),
        (1, "holding", 40, 1, 1),
        (1, "input", 0, 1, 1),
        (2, "holding", 0, 1, 1),
    ]
    strict = plan_blocks(items, max_block=100, max_gap=0)
    assert (1, "holding", 0, 4) in {(b.unit_id, b.function, b.start, b.count) for b in strict}
    small = plan_blocks(_items(*[(1, "holding", a, "uint32") for a in range(0, 20, 2)]), 5)
    assert [(b.start, b.count) for b in small] == [(0, 4), (4, 4), (8, 4), (12, 4), (16, 4)]


def test_block_decode_reads_each_item_at_its_offset() -> None:
    [block] = plan_blocks(_items((1, "holding", 5, "uint16"), (1, "holding", 6, "float32")), 10)
    values = block.decode([7, *words_of(">f", 1.5)])
    assert values == {"T5-holding-1": 7.0, "T6-holding-1": 1.5}
    short = block.decode([7])
    assert short["T5-holding-1"] == 7.0 and isinstance(short["T6-holding-1"], DecodeError)


def test_backoff_and_rate_limited_log() -> None:
    backoff = Backoff(max_s=3.0)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next() == 0.5
    now = [100.0]
    lines: list[tuple[str, dict[str, Any]]] = []

    class Recorder:
        def warning(self, message: str, **fields: Any) -> None:
            lines.append((message, fields))

    limited = RateLimitedLog(60.0, clock=lambda: now[0], logger=Recorder())
    assert limited.warning("k", "bad payload", n=1)
    assert not limited.warning("k", "bad payload", n=2)
    assert not limited.warning("k", "bad payload", n=3)
    assert limited.warning("other", "another problem")
    now[0] += 61
    assert limited.warning("k", "bad payload", n=4)
    assert lines[-1] == ("bad payload", {"n": 4, "suppressed": 2})


# --- a real Modbus device ----------------------------------------------------------------------


def _runs(cells: dict[int, Any], datatype: DataType) -> list[SimData]:
    """Consecutive addresses → SimData blocks; addresses not given stay invalid."""
    out: list[SimData] = []
    run: list[Any] = []
    start = 0
    for addr in sorted(cells):
        if run and addr != start + len(run):
            out.append(SimData(start, values=run, datatype=datatype))
            run = []
        if not run:
            start = addr
        run.append(cells[addr])
    if run:
        out.append(SimData(start, values=run, datatype=datatype))
    return out or [SimData(0, count=1, datatype=DataType.INVALID)]


class Device:
    """A pymodbus server (TCP, RTU over TCP, or RTU on a serial line) that can be restarted."""

    def __init__(
        self,
        holding: dict[int, int] | None = None,
        inputs: dict[int, int] | None = None,
        coils: dict[int, bool] | None = None,
        discrete: dict[int, bool] | None = None,
        framer: FramerType = FramerType.SOCKET,
        serial_port: str = "",
        unit_id: int = 0,  # 0: answers for every unit id
    ) -> None:
        coil_cells = {a: False for a in range(16)} | (coils or {})
        discrete_cells = {a: False for a in range(16)} | (discrete or {})
        self.device = SimDevice(
            id=unit_id,
            simdata=(
                _runs(coil_cells, DataType.BITS),
                _runs(discrete_cells, DataType.BITS),
                _runs(holding or {}, DataType.REGISTERS),
                _runs(inputs or {}, DataType.REGISTERS),
            ),
        )
        self.framer = framer
        self.serial_port = serial_port
        self.port = free_port()
        self.server: ModbusTcpServer | ModbusSerialServer | None = None
        self.requests: list[tuple[int, int, int, int]] = []  # (unit, function, address, count)

    def _trace(self, sending: bool, pdu: Any) -> Any:
        if not sending:
            self.requests.append((pdu.dev_id, pdu.function_code, pdu.address, pdu.count))
        return pdu

    async def start(self) -> None:
        if self.serial_port:
            self.server = ModbusSerialServer(
                self.device,
                port=self.serial_port,
                framer=FramerType.RTU,
                baudrate=19200,
                trace_pdu=self._trace,
            )
        else:
            self.server = ModbusTcpServer(
                self.device,
                address=("127.0.0.1", self.port),
                framer=self.framer,
                trace_pdu=self._trace,
            )
        await self.server.serve_forever(background=True)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None

    async def set(
        self, function: int, address: int, values: Sequence[int] | Sequence[bool]
    ) -> None:
        assert self.server is not None
        await self.server.async_setValues(1, function, address, list(values))  # type: ignore[arg-type]


# Register map of the test device: tag → (source, raw words written, expected value).
HOLDING_POINTS: dict[str, tuple[dict[str, Any], list[int], float]] = {
    "PT-U16": ({"address": 0, "type": "uint16", "scale": 0.01}, [1234], 12.34),
    "TT-I16": ({"address": 1, "type": "int16", "scale": 0.1}, words_of(">h", -150), -15.0),
    "CT-I32": ({"address": 2, "type": "int32"}, words_of(">i", -123456), -123456.0),
    "FT-U32": (
        {"address": 4, "type": "uint32", "word_order": "little", "scale": 0.001},
        words_of(">I", 3_000_000_000)[::-1],
        3_000_000.0,
    ),
    "LT-F32": ({"address": 6, "type": "float32", "offset": 1.0}, words_of(">f", 3.25), 4.25),
    "LT-F32-DCBA": (
        {"address": 8, "type": "float32", "word_order": "little", "byte_order": "little"},
        swap(words_of(">f", -7.5)[::-1]),
        -7.5,
    ),
    "PT-U16-BA": ({"address": 10, "type": "uint16", "byte_order": "little"}, [0x3412], 0x1234),
    "CT-I32-CDAB": (
        {"address": 11, "type": "int32", "word_order": "little", "scale": 0.5},
        words_of(">i", 1001)[::-1],
        500.5,
    ),
}
OTHER_POINTS: dict[str, tuple[dict[str, Any], float]] = {
    "TT-IN": ({"function": "input", "address": 0, "type": "int16", "scale": 0.1}, -4.0),
    "ES-COIL": ({"function": "coil", "address": 3, "type": "bool"}, 1.0),
    "ES-NC": (
        {"function": "discrete", "address": 5, "type": "bool", "scale": -1, "offset": 1},
        1.0,  # contact open (False) → 1 = disconnected
    ),
    "PT-UNIT2": ({"address": 0, "type": "uint16", "unit_id": 2, "scale": 0.01}, 12.34),
}
BAD_TAG = "PT-NOADDR"  # address 14 is not in the device: exception 2 (illegal data address)


def device_for_map(**kw: Any) -> Device:
    holding: dict[int, int] = {}
    for source, words, _ in HOLDING_POINTS.values():
        for i, word in enumerate(words):
            holding[source["address"] + i] = word
    return Device(holding=holding, inputs={0: words_of(">h", -40)[0]}, coils={3: True}, **kw)


def seed_map(db: Database, site: Site, protocol: str, config: dict[str, Any]) -> int:
    gw = add_gateway(db, site.enterprise_id, protocol, {"poll_s": 0.3, **config}, name="DCS")
    for tag, (source, _, _) in HOLDING_POINTS.items():
        add_sensor(db, site.enterprise_id, gw, tag, source)
    for tag, (source, _) in OTHER_POINTS.items():
        add_sensor(db, site.enterprise_id, gw, tag, source)
    add_sensor(db, site.enterprise_id, gw, BAD_TAG, {"address": 14})
    return gw


def expected_values() -> dict[str, float]:
    out = {tag: value for tag, (_, _, value) in HOLDING_POINTS.items()}
    out.update({tag: value for tag, (_, value) in OTHER_POINTS.items()})
    return out


async def assert_map_read(rig: Any, gw: int, device: Device) -> None:
    expected = expected_values()
    for tag, value in expected.items():
        rows = await wait(lambda tag=tag: rig.readings(tag), 30, f"a reading of {tag}")
        assert rows[-1][1] == pytest.approx(value), tag
        assert rows[-1][2] == 0
    await wait(lambda: rig.gateway(gw).online, 10, "gateway online")
    error = await wait(lambda: rig.gateway(gw).last_error, 10, "the bad point's error")
    assert f"{BAD_TAG}: Modbus exception 2 (illegal data address)" in error
    assert rig.readings(BAD_TAG) == []
    sensor = rig.sensor("LT-F32")
    assert sensor.online and sensor.last_value == pytest.approx(4.25)


@pytest.mark.parametrize(
    "db_backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_modbus_tcp_reads_every_type_in_block_reads(
    tmp_path: Path, db_backend: str, request: pytest.FixtureRequest
) -> None:
    db_url = "" if db_backend == "sqlite" else request.getfixturevalue("postgres_url")
    device = device_for_map()
    await device.start()
    gw_box: list[int] = []

    def seed(db: Database, site: Site) -> None:
        gw_box.append(seed_map(db, site, "modbus_tcp", {"host": "127.0.0.1", "port": device.port}))

    try:
        async with running_ingest(tmp_path, db_url, seed=seed) as rig:
            [gw] = gw_box
            await assert_map_read(rig, gw, device)
            # Steady state: one read per (unit, function) group, the refused address alone.
            device.requests.clear()
            await wait(lambda: len(device.requests) >= 12, 20, "two more poll rounds")
            round_reads = set(device.requests)
            assert (1, 3, 0, 13) in round_reads  # every holding point of unit 1 in one read
            assert (1, 3, 14, 1) in round_reads  # the refused address, read alone
            assert (2, 3, 0, 1) in round_reads  # unit 2 apart
            assert (1, 4, 0, 1) in round_reads and (1, 2, 5, 1) in round_reads
            assert (1, 1, 3, 1) in round_reads
            assert len(round_reads) == 6
            # A value changes in the device: the next readings follow.
            await device.set(3, 6, words_of(">f", 9.5))
            await rig.wait_value("LT-F32", lambda v: v == pytest.approx(10.5))
    finally:
        await device.stop()


async def test_modbus_tcp_server_down_marks_points_offline_then_recovers(tmp_path: Path) -> None:
    device = device_for_map()
    await device.start()
    gw_box: list[int] = []

    def seed(db: Database, site: Site) -> None:
        gw_box.append(seed_map(db, site, "modbus_tcp", {"host": "127.0.0.1", "port": device.port}))

    try:
        async with running_ingest(tmp_path, seed=seed) as rig:
            [gw] = gw_box
            await rig.wait_value("PT-U16", lambda v: v == pytest.approx(12.34))
            await device.stop()
            await wait(lambda: not rig.gateway(gw).online, 20, "gateway offline")
            assert rig.gateway(gw).last_error
            await wait(lambda: rig.events("PT-U16", "offline"), 10, "offline event")
            assert not rig.sensor("PT-U16").online
            assert rig.events("ES-COIL", "offline")
            stopped_at = datetime.now(UTC)
            await device.start()
            await wait(lambda: rig.gateway(gw).online, 20, "gateway online again")
            await wait(
                lambda: [
                    r for r in rig.readings("PT-U16") if r[0].replace(tzinfo=UTC) > stopped_at
                ],
                20,
                "readings after the restart",
            )
            await wait(lambda: rig.sensor("PT-U16").online, 10, "point online again")
            kinds = [e.kind for e in rig.events("PT-U16")]
            assert kinds[-2:] == ["offline", "online"], kinds
    finally:
        await device.stop()


async def test_modbus_rtu_over_tcp(tmp_path: Path) -> None:
    device = device_for_map(framer=FramerType.RTU)
    await device.start()
    gw_box: list[int] = []

    def seed(db: Database, site: Site) -> None:
        config = {"mode": "tcp", "host": "127.0.0.1", "port": device.port}
        gw_box.append(seed_map(db, site, "modbus_rtu", config))

    try:
        async with running_ingest(tmp_path, seed=seed) as rig:
            await assert_map_read(rig, gw_box[0], device)
    finally:
        await device.stop()


async def test_modbus_rtu_on_a_serial_line(tmp_path: Path) -> None:
    cable = NullModem()
    cable.start()
    device = device_for_map(serial_port=cable.a)
    await device.start()
    gw_box: list[int] = []

    def seed(db: Database, site: Site) -> None:
        config = {"mode": "serial", "serial_port": cable.b, "baudrate": 19200, "poll_s": 0.5}
        gw_box.append(seed_map(db, site, "modbus_rtu", config))

    try:
        async with running_ingest(tmp_path, seed=seed) as rig:
            await assert_map_read(rig, gw_box[0], device)
            assert cable.bytes > 0  # the frames really crossed the pseudo-terminals
    finally:
        await device.stop()
        cable.close()


async def test_serial_port_missing_is_the_gateways_error(tmp_path: Path) -> None:
    gw_box: list[int] = []

    def seed(db: Database, site: Site) -> None:
        config = {"mode": "serial", "serial_port": str(tmp_path / "ttyNONE")}
        gw_box.append(add_gateway(db, site.enterprise_id, "modbus_rtu", config))
        add_sensor(db, site.enterprise_id, gw_box[0], "PT-1", {"address": 0})

    async with running_ingest(tmp_path, seed=seed) as rig:
        error = await wait(lambda: rig.gateway(gw_box[0]).last_error, 20, "a serial error")
        assert "ttyNONE" in error
        assert not rig.gateway(gw_box[0]).online


# --- the manager ----------------------------------------------------------------------------


async def test_manager_follows_configuration_changes(tmp_path: Path) -> None:
    device = Device(holding={0: 1000, 1: 2000})
    await device.start()
    ids: dict[str, int] = {}

    def seed(db: Database, site: Site) -> None:
        config = {"host": "127.0.0.1", "port": device.port, "poll_s": 0.2}
        ids["gw"] = add_gateway(db, site.enterprise_id, "modbus_tcp", config)
        ids["bad"] = add_gateway(db, site.enterprise_id, "modbus_tcp", {"port": 502}, "bad")
        ids["pt"] = add_sensor(db, site.enterprise_id, ids["gw"], "PT-1", {"address": 0})

    try:
        async with running_ingest(tmp_path, seed=seed) as rig:
            await rig.wait_value("PT-1", lambda v: v == 1000)
            error = await wait(lambda: rig.gateway(ids["bad"]).last_error, 10, "config error")
            assert error.startswith("modbus_tcp config host")
            first = rig.manager.running[ids["gw"]].task
            # A new point, a point whose source is wrong, and a changed scale: the collector
            # restarts with the good ones and names the bad one.
            add_sensor(rig.db, rig.site.enterprise_id, ids["gw"], "PT-2", {"address": 1})
            bad_source = {"address": 1, "function": "coil", "type": "uint16"}
            add_sensor(rig.db, rig.site.enterprise_id, ids["gw"], "PT-BAD", bad_source)
            with rig.db.session() as s:
                s.execute(
                    update(Sensor)
                    .where(Sensor.id == ids["pt"])
                    .values(source={"address": 0, "scale": 0.001})
                )
            await rig.sync()
            assert rig.manager.running[ids["gw"]].task is not first
            await rig.wait_value("PT-1", lambda v: v == pytest.approx(1.0))
            await rig.wait_value("PT-2", lambda v: v == 2000)
            error = await wait(lambda: rig.gateway(ids["gw"]).last_error, 10, "source error")
            assert error.startswith("PT-BAD: modbus_tcp source") and "bool" in error
            # Nothing changed: nothing restarts.
            second = rig.manager.running[ids["gw"]].task
            await rig.sync()
            assert rig.manager.running[ids["gw"]].task is second
            # Disabled: the collector stops and the gateway and its points are offline.
            with rig.db.session() as s:
                s.execute(
                    update(SensorGateway).where(SensorGateway.id == ids["gw"]).values(enabled=False)
                )
            await rig.sync()
            assert ids["gw"] not in rig.manager.running
            await wait(lambda: rig.gateway(ids["gw"]).last_error == "disabled", 10, "disabled")
            assert not rig.gateway(ids["gw"]).online
            await wait(lambda: not rig.sensor("PT-1").online, 10, "point offline")
    finally:
        await device.stop()


async def test_manager_follows_sensor_reloads_and_gateway_events(tmp_path: Path) -> None:
    """What the API does after a change — ``ingest.reload()`` for a sensor, a
    ``gateway.updated`` event for a gateway — reaches the collectors without a refresh."""
    first, second = Device(holding={0: 1000}), Device(holding={0: 1234})
    await first.start()
    await second.start()
    ids: dict[str, int] = {}

    def seed(db: Database, site: Site) -> None:
        config = {"host": "127.0.0.1", "port": first.port, "poll_s": 0.2}
        ids["gw"] = add_gateway(db, site.enterprise_id, "modbus_tcp", config)
        ids["pt"] = add_sensor(db, site.enterprise_id, ids["gw"], "PT-1", {"address": 0})

    try:
        async with running_ingest(tmp_path, seed=seed) as rig:  # refresh_s is an hour here
            await rig.wait_value("PT-1", lambda v: v == 1000)
            with rig.db.session() as s:
                source = {"address": 0, "scale": 0.5}
                s.execute(update(Sensor).where(Sensor.id == ids["pt"]).values(source=source))
            await rig.ingest.reload()
            await rig.wait_value("PT-1", lambda v: v == 500, timeout=20)
            with rig.db.session() as s:
                config = {"host": "127.0.0.1", "port": second.port, "poll_s": 0.2}
                s.execute(
                    update(SensorGateway).where(SensorGateway.id == ids["gw"]).values(config=config)
                )
            rig.services.events.publish("gateway.updated", gateway_id=ids["gw"], change="updated")
            await rig.wait_value("PT-1", lambda v: v == 617, timeout=20)
    finally:
        await first.stop()
        await second.stop()


class CrashOnce(ModbusCollector):
    """A collector with a bug that bites on its first session only."""

    crashed = 0

    async def session(self) -> None:
        if CrashOnce.crashed == 0:
            CrashOnce.crashed += 1
            raise RuntimeError("a bug in the collector")
        await super().session()


async def test_a_crashing_collector_is_restarted(tmp_path: Path) -> None:
    device = Device(holding={0: 42})
    await device.start()
    ids: dict[str, int] = {}

    def seed(db: Database, site: Site) -> None:
        config = {"host": "127.0.0.1", "port": device.port, "poll_s": 0.2}
        ids["gw"] = add_gateway(db, site.enterprise_id, "modbus_tcp", config)
        add_sensor(db, site.enterprise_id, ids["gw"], "PT-1", {"address": 0})

    try:
        async with running_ingest(tmp_path, seed=seed) as rig:
            await rig.manager.stop()
            rig.manager.collectors["modbus_tcp"] = CrashOnce
            await rig.manager.start()
            await wait(lambda: rig.collector_status(ids["gw"]).get("crashes") == 1, 10, "crash")
            # the value may already be there from before the swap: wait for the new session
            await wait(lambda: rig.collector_status(ids["gw"]).get("online") is True, 10, "online")
            await rig.wait_value("PT-1", lambda v: v == 42)
    finally:
        await device.stop()


class BusyAtFirst:
    """The real ingest service behind a door that is shut for the first ``shut`` batches."""

    def __init__(self, real: Any, shut: int) -> None:
        self.real = real
        self.shut = shut
        self.refused: list[list[Sample]] = []

    def submit(self, org_id: int, samples: list[Sample], source: str = "") -> SubmitResult:
        if self.shut > 0:
            self.shut -= 1
            self.refused.append(list(samples))
            raise IngestBusy("queue full")
        return self.real.submit(org_id, samples, source)

    def gateway_state(self, gateway_id: int, online: bool, error: str = "") -> None:
        self.real.gateway_state(gateway_id, online, error)


async def test_busy_ingest_holds_the_samples_and_retries_them(tmp_path: Path) -> None:
    device = Device(holding={0: 7})
    await device.start()
    ids: dict[str, int] = {}

    def seed(db: Database, site: Site) -> None:
        ids["pt"] = add_sensor(db, site.enterprise_id, None, "PT-1", {"address": 0})

    try:
        async with running_ingest(tmp_path, seed=seed) as rig:
            sink = BusyAtFirst(rig.ingest, shut=3)
            spec = GatewaySpec(
                99,
                rig.site.enterprise_id,
                "direct",
                "modbus_tcp",
                {"host": "127.0.0.1", "port": device.port, "poll_s": 0.2},
                [PointRef(ids["pt"], "PT-1", {"address": 0})],
            )
            collector = ModbusCollector(spec, sink, rig.services.settings.ingest)
            task = asyncio.create_task(collector.run())
            try:
                await wait(lambda: len(rig.readings("PT-1")) >= 2, 30, "readings")
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            assert collector.counters["busy"] == 3
            held = sink.refused[0][0]
            assert all(batch[0].at == held.at for batch in sink.refused)  # the same samples
            stored = [r[0].replace(tzinfo=UTC) for r in rig.readings("PT-1")]
            assert held.at in stored  # ... and they were stored, not dropped
    finally:
        await device.stop()
