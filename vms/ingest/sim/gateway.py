"""A simulated enterprise gateway: a Modbus TCP server, an MQTT publisher, an HTTP pusher.

Every ``tick_s`` it computes each point's value (``values.SimPoint.sample``) and writes
the Modbus points into the server's registers, encoded as the point's source says
(``modbus_decode.encode_value``), so a real collector polling it decodes what was meant.
The MQTT and push points are published every ``mqtt_period_s`` / ``push_period_s``;
pushed rows that could not be delivered are kept (bounded) and sent again, so a server
restart loses nothing that the simulator still holds.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from vms.ingest.collectors.base import Backoff, RateLimitedLog
from vms.ingest.collectors.modbus_decode import FUNCTION_CODES, encode_bit, encode_value
from vms.ingest.gateway_config import ModbusSource
from vms.ingest.push import seal
from vms.logging import get_logger

from .plant import GAS_THRESHOLDS, LEAK_TAG, MQTT_ROWS_TOPIC, plant_points
from .values import LeakRamp, SimPoint

log = get_logger("vms.sim_sensors")

HISTORY_TICKS = 600  # ticks of values kept for inspection (tests, the log)
PUSH_BACKLOG = 20_000  # undelivered push rows kept; beyond it the oldest go (and are counted)
PUSH_TIMEOUT_S = 10.0
PUSH_BATCH = 1000  # rows per push request (well under ingest.push_max_rows)


@dataclass
class SimOptions:
    """What the simulated gateway offers and where (every part is optional)."""

    modbus_host: str = "127.0.0.1"
    modbus_port: int | None = 5020  # None: no Modbus server; 0: any free port
    unit_id: int = 0  # 0: answer for every unit id (the register map is the same)
    mqtt_host: str = ""  # empty: no MQTT publisher
    mqtt_port: int = 1883
    mqtt_username: str = ""
    mqtt_password: str = ""
    mqtt_topic: str = "plant/demo"
    mqtt_period_s: float = 5.0
    push_url: str = ""  # e.g. http://127.0.0.1:8000/api/ingest/push; empty: no pusher
    push_ident: str = ""
    push_key: str = ""
    push_period_s: float = 5.0
    tick_s: float = 1.0
    leak: LeakRamp = field(default_factory=LeakRamp)
    seed: int = 0
    timezone: str = "Asia/Shanghai"
    reconnect_max_s: float = 30.0


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


def _bits(values: dict[int, bool]) -> list[SimData]:
    """A bit block from 0 up to the highest used address, in whole 16-bit words."""
    top = max(values, default=0)
    count = (top // 16 + 1) * 16
    return [SimData(0, values=[values.get(a, False) for a in range(count)], datatype=DataType.BITS)]


def _registers(words: dict[int, int]) -> list[SimData]:
    """One register block from 0 up to the highest used address (unused ones hold 0)."""
    top = max(words, default=0)
    return [
        SimData(0, values=[words.get(a, 0) for a in range(top + 1)], datatype=DataType.REGISTERS)
    ]


class SimulatedGateway:
    def __init__(
        self,
        options: SimOptions,
        points: list[SimPoint] | None = None,
        clock: Any = time.time,
    ) -> None:
        self.options = options
        self.clock = clock
        self.rng = random.Random(options.seed)
        if points is None:
            local = datetime.now(ZoneInfo(options.timezone))
            start_s_of_day = local.hour * 3600 + local.minute * 60 + local.second
            points = plant_points(options.leak, start_s_of_day, options.mqtt_topic)
        self.points = points
        self.modbus_points = [
            (p, ModbusSource(**p.source)) for p in points if p.transport == "modbus"
        ]
        self.started_at = 0.0
        self.current: dict[str, float] = {}
        self.current_at = datetime.now(UTC)
        self.history: deque[tuple[datetime, dict[str, float]]] = deque(maxlen=HISTORY_TICKS)
        self.server: ModbusTcpServer | None = None
        self.port = 0
        self._push_backlog: deque[dict[str, Any]] = deque(maxlen=PUSH_BACKLOG)
        self._tasks: list[asyncio.Task[None]] = []
        self._limited = RateLimitedLog(logger=log)
        self.counters = {"ticks": 0, "pushed": 0, "push_failures": 0, "published": 0}

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self.started_at = self.clock()
        self._tick()
        o = self.options
        if o.modbus_port is not None and self.modbus_points:
            await self._start_modbus()
        self._tasks.append(asyncio.create_task(self._tick_loop(), name="sim-tick"))
        if o.mqtt_host:
            self._tasks.append(asyncio.create_task(self._mqtt_loop(), name="sim-mqtt"))
        if o.push_url:
            self._tasks.append(asyncio.create_task(self._push_loop(), name="sim-push"))
        leak = o.leak
        log.info(
            "simulated gateway running",
            modbus=f"{o.modbus_host}:{self.port}" if self.server else "off",
            mqtt=f"{o.mqtt_host}:{o.mqtt_port}/{o.mqtt_topic}" if o.mqtt_host else "off",
            push=o.push_url or "off",
            points=len(self.points),
            leak_tag=LEAK_TAG,
            leak_h_at_s=_rounded(leak.crossing_s(GAS_THRESHOLDS["h"])),
            leak_hh_at_s=_rounded(leak.crossing_s(GAS_THRESHOLDS["hh"])),
            leak_below_h_at_s=_rounded(leak.clearing_s(GAS_THRESHOLDS["h"])),
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.server is not None:
            await self.server.shutdown()
            self.server = None

    # --- values ----------------------------------------------------------------------

    def _tick(self) -> None:
        now = self.clock()
        t = now - self.started_at
        self.current = {p.tag: p.sample(t, self.rng) for p in self.points}
        self.current_at = datetime.fromtimestamp(now, UTC)
        self.history.append((self.current_at, dict(self.current)))
        self.counters["ticks"] += 1

    async def _tick_loop(self) -> None:
        next_tick = time.monotonic()
        while True:
            next_tick += self.options.tick_s
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
            self._tick()
            if self.server is not None:
                await self._write_registers()

    # --- Modbus TCP server ---------------------------------------------------------------

    def _register_image(
        self,
    ) -> tuple[dict[int, bool], dict[int, bool], dict[int, int], dict[int, int]]:
        coils: dict[int, bool] = {}
        discrete: dict[int, bool] = {}
        holding: dict[int, int] = {}
        inputs: dict[int, int] = {}
        for point, source in self.modbus_points:
            value = self.current[point.tag]
            if source.function in ("coil", "discrete"):
                target = coils if source.function == "coil" else discrete
                target[source.address] = encode_bit(value, source)
                continue
            target_words = holding if source.function == "holding" else inputs
            for i, word in enumerate(encode_value(value, source)):
                target_words[source.address + i] = word
        return coils, discrete, holding, inputs

    async def _start_modbus(self) -> None:
        o = self.options
        coils, discrete, holding, inputs = self._register_image()
        device = SimDevice(
            id=o.unit_id,
            simdata=(_bits(coils), _bits(discrete), _registers(holding), _registers(inputs)),
        )
        server = ModbusTcpServer(device, address=(o.modbus_host, o.modbus_port or 0))
        try:
            await server.serve_forever(background=True)
        except RuntimeError:  # pymodbus's way of saying the bind failed
            raise OSError(f"cannot listen on {o.modbus_host}:{o.modbus_port} (in use?)") from None
        self.server = server
        self.port = self.server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def _write_registers(self) -> None:
        assert self.server is not None
        unit = self.options.unit_id or 1
        for point, source in self.modbus_points:
            value = self.current[point.tag]
            code = FUNCTION_CODES[source.function]
            if source.function in ("coil", "discrete"):
                data: list[Any] = [encode_bit(value, source)]
            else:
                data = encode_value(value, source)
            await self.server.async_setValues(unit, code, source.address, data)

    # --- MQTT publisher --------------------------------------------------------------------

    async def _mqtt_loop(self) -> None:
        import aiomqtt

        from vms.ingest.collectors.mqtt import forget_disconnect_error

        o = self.options
        backoff = Backoff(o.reconnect_max_s)
        bound = [p for p in self.points if p.transport == "mqtt" and p.source.get("topic")]
        rows = [p for p in self.points if p.transport == "mqtt" and not p.source.get("topic")]
        rows_topic = f"{o.mqtt_topic}/{MQTT_ROWS_TOPIC}"
        while True:
            client = aiomqtt.Client(
                o.mqtt_host,
                o.mqtt_port,
                username=o.mqtt_username or None,
                password=o.mqtt_password or None,
                identifier=f"vms-sim-{uuid.uuid4().hex[:8]}",
            )
            try:
                async with client:
                    backoff.reset()
                    while True:
                        for point in bound:
                            value = self.current[point.tag]
                            await client.publish(point.source["topic"], str(value), qos=1)
                        if rows:
                            at = self.current_at.isoformat()
                            payload = [
                                {"tag": p.tag, "value": self.current[p.tag], "at": at} for p in rows
                            ]
                            await client.publish(rows_topic, json.dumps(payload), qos=1)
                        self.counters["published"] += len(bound) + len(rows)
                        await asyncio.sleep(o.mqtt_period_s)
            except aiomqtt.MqttError as exc:
                delay = backoff.next()
                self._limited.warning("mqtt", "simulator MQTT broker unreachable", error=str(exc))
                await asyncio.sleep(delay)
            finally:
                forget_disconnect_error(client)

    # --- HTTP pusher -----------------------------------------------------------------------

    async def _push_loop(self) -> None:
        o = self.options
        pushed = [p for p in self.points if p.transport == "push"]
        async with httpx.AsyncClient(timeout=PUSH_TIMEOUT_S) as http:
            while True:
                at = self.current_at.isoformat()
                for p in pushed:
                    if len(self._push_backlog) == self._push_backlog.maxlen:
                        self.counters["push_failures"] += 1  # the oldest row goes
                    self._push_backlog.append(
                        {"tag": p.tag, "value": self.current[p.tag], "at": at}
                    )
                await self._push_once(http)
                await asyncio.sleep(o.push_period_s)

    async def _push_once(self, http: httpx.AsyncClient) -> None:
        """Send the backlog in batches of ``PUSH_BATCH`` rows; stop at the first failure."""
        o = self.options
        while self._push_backlog:
            rows = list(itertools.islice(self._push_backlog, PUSH_BATCH))
            batch = {"batch_id": uuid.uuid4().hex, "readings": rows}
            try:
                response = await http.post(o.push_url, json=seal(o.push_ident, o.push_key, batch))
            except httpx.HTTPError as exc:
                self.counters["push_failures"] += 1
                self._limited.warning(
                    "push", "push failed, rows kept", url=o.push_url, error=repr(exc)
                )
                return
            status = response.status_code
            if status >= 500 or status in (404, 408, 429):
                self.counters["push_failures"] += 1
                self._limited.warning("push", "push refused for now, rows kept", status=status)
                return
            for _ in rows:
                self._push_backlog.popleft()
            if status in (200, 422):
                answer = response.json()
                self.counters["pushed"] += int(answer.get("accepted", 0))
                if answer.get("rejected"):
                    rejected = answer["rejected"][:3]
                    self._limited.warning("rejected", "pushed rows rejected", rejected=rejected)
            else:  # 400, 401, 409, 413: this batch will not get better by sending it again
                self.counters["push_failures"] += 1
                self._limited.warning(
                    "push-error", "push refused", status=status, body=response.text[:300]
                )
