"""Modbus TCP, Modbus RTU on an RS-485 line, and RTU frames over TCP: poll, decode, submit.

Every ``poll_s`` the collector reads its points in as few block requests as the register
map allows (``modbus_decode.plan_blocks``).  An exception response concerns only the
points of that block: the block is re-read point by point, a point the device refuses is
read alone from then on and carries the device's answer as its error; the others go on.
No answer from any block of a round, or a closed connection, is a lost connection: the
gateway goes offline (its points with it) and the collector reconnects with back-off.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from pymodbus import ExceptionResponse, FramerType, ModbusException
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusIOException

from storage.sensor_models import GatewayProtocol
from vms.config import IngestSettings
from vms.ingest.gateway_config import ModbusRtuConfig, ModbusSource, ModbusTcpConfig
from vms.ingest.samples import ReadingSink, Sample

from .base import Collector, ConnectionLost, GatewaySpec
from .modbus_decode import MAX_GAP, Block, BlockItem, DecodeError, plan_blocks

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    7: "negative acknowledge",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


def exception_text(response: ExceptionResponse) -> str:
    code = response.exception_code
    return f"Modbus exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})"


class ModbusCollector(Collector):
    connection_errors = (ConnectionLost, OSError, TimeoutError, ModbusException)

    def __init__(self, spec: GatewaySpec, sink: ReadingSink, settings: IngestSettings) -> None:
        super().__init__(spec, sink, settings)
        if spec.protocol == GatewayProtocol.modbus_tcp:
            self.config: ModbusTcpConfig | ModbusRtuConfig = ModbusTcpConfig(**spec.config)
        else:
            self.config = ModbusRtuConfig(**spec.config)
        self.timeout = self.config.timeout_s or settings.poll_timeout_s
        self.items: list[tuple[int, BlockItem]] = []
        for point in self.points:
            source = ModbusSource(**point.source)
            unit = source.unit_id if source.unit_id is not None else self.config.unit_id
            self.items.append((unit, BlockItem(point.tag, source)))
        self.alone: set[str] = set()  # tags the device refused inside a block: read singly
        self.max_gap = MAX_GAP  # 0 once the device refused a read spanning unused registers
        self.blocks = self._plan()
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self.counters["requests"] = 0

    @property
    def where(self) -> str:
        c = self.config
        if isinstance(c, ModbusRtuConfig) and c.mode == "serial":
            return f"{c.serial_port} ({c.baudrate} {c.bytesize}{c.parity}{c.stopbits})"
        return f"{c.host}:{c.port}"

    def _plan(self) -> list[Block]:
        grouped = [(u, it) for u, it in self.items if it.tag not in self.alone]
        alone = [(u, it) for u, it in self.items if it.tag in self.alone]
        singles = [b for pair in alone for b in plan_blocks([pair], 1, 0)]
        return plan_blocks(grouped, self.config.max_block, self.max_gap) + singles

    def _make_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        c = self.config
        common: dict[str, Any] = {"timeout": self.timeout, "retries": 0, "reconnect_delay": 0}
        if isinstance(c, ModbusRtuConfig) and c.mode == "serial":
            return AsyncModbusSerialClient(
                c.serial_port,
                framer=FramerType.RTU,
                baudrate=c.baudrate,
                bytesize=c.bytesize,
                parity=c.parity,
                stopbits=c.stopbits,
                **common,
            )
        framer = FramerType.RTU if isinstance(c, ModbusRtuConfig) else FramerType.SOCKET
        return AsyncModbusTcpClient(c.host, port=c.port, framer=framer, **common)

    # --- the session --------------------------------------------------------------------

    async def session(self) -> None:
        client = self._make_client()
        self._client = client
        if not await client.connect():
            raise ConnectionLost(f"cannot connect to {self.where}")
        next_round = time.monotonic()
        while True:
            at = datetime.now(UTC)  # sample time = poll time
            samples = await self.poll(client, at)
            if self.online:
                self.alive()
            else:
                self.set_online(True)
            await self.submit(samples)
            next_round += self.config.poll_s
            now = time.monotonic()
            if next_round < now:  # a slow round: skip the missed ones, keep the rhythm
                next_round = now
            await asyncio.sleep(next_round - now)

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def poll(self, client: Any, at: datetime) -> list[Sample]:
        """One round over every block; raises ConnectionLost when nothing answered."""
        samples: list[Sample] = []
        answered = unanswered = 0
        replan = False
        for block in self.blocks:
            response = await self._read(client, block)
            if response is None:
                unanswered += 1
                for item in block.items:
                    self.point_error(item.tag, f"no response from unit {block.unit_id}")
                continue
            answered += 1
            if isinstance(response, ExceptionResponse) or response.isError():
                if len(block.items) > 1:
                    samples += await self._read_singly(client, block, at)
                    self.max_gap = 0
                    replan = True
                else:
                    self.point_error(block.items[0].tag, exception_text(response))
                continue
            samples += self._samples(block, response, at)
        if unanswered and not answered:
            raise ConnectionLost(f"no answer from {self.where}")
        if replan:
            self.blocks = self._plan()
        return samples

    async def _read_singly(self, client: Any, block: Block, at: datetime) -> list[Sample]:
        samples: list[Sample] = []
        for unit_item in [(block.unit_id, item) for item in block.items]:
            [single] = plan_blocks([unit_item], 1, 0)
            response = await self._read(client, single)
            tag = unit_item[1].tag
            if response is None:
                self.point_error(tag, f"no response from unit {block.unit_id}")
            elif isinstance(response, ExceptionResponse) or response.isError():
                self.alone.add(tag)
                self.point_error(tag, exception_text(response))
            else:
                samples += self._samples(single, response, at)
        return samples

    async def _read(self, client: Any, block: Block) -> Any:
        """The response (data or exception); None when the device did not answer in time."""
        read = {
            "holding": client.read_holding_registers,
            "input": client.read_input_registers,
            "coil": client.read_coils,
            "discrete": client.read_discrete_inputs,
        }[block.function]
        self.counters["requests"] += 1
        try:
            return await asyncio.wait_for(
                read(block.start, count=block.count, device_id=block.unit_id), self.timeout + 2
            )
        except (ModbusIOException, TimeoutError) as exc:
            if not client.connected:
                raise ConnectionLost(f"connection to {self.where} lost") from exc
            return None
        except ConnectionException as exc:
            raise ConnectionLost(f"connection to {self.where} lost") from exc

    def _samples(self, block: Block, response: Any, at: datetime) -> list[Sample]:
        data = response.bits if block.bits else response.registers
        samples = []
        for tag, value in block.decode(data).items():
            if isinstance(value, DecodeError):
                self.point_error(tag, str(value))
                continue
            self.point_error(tag, "")
            samples.append(Sample(tag, at, value))
        return samples
