"""Sensor collector benchmark: what one Modbus poll round and one MQTT message cost.

    .venv/bin/python bench/collectors.py [--quick]

- Modbus TCP: a pymodbus server (in this process) with N holding-register points; the
  collector's round (block reads, decoding, samples) against the same block reads done with
  the bare pymodbus client in the same run.
- MQTT (when Debian's mosquitto is installed): JSON row messages through the collector
  (parse, validate shape, samples) against a bare aiomqtt subscriber in the same run.
- The pure decoder: microseconds per value.

The ingest service behind the collectors is measured by bench/ingest.py; here the samples go
to a counting sink, so the figures are the collectors' own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pymodbus.client import AsyncModbusTcpClient  # noqa: E402
from pymodbus.server import ModbusTcpServer  # noqa: E402
from pymodbus.simulator import DataType, SimData, SimDevice  # noqa: E402

from vms.config import IngestSettings  # noqa: E402
from vms.ingest.collectors.base import GatewaySpec, PointRef  # noqa: E402
from vms.ingest.collectors.modbus import ModbusCollector  # noqa: E402
from vms.ingest.collectors.modbus_decode import decode_registers  # noqa: E402
from vms.ingest.collectors.mqtt import MqttCollector  # noqa: E402
from vms.ingest.gateway_config import ModbusSource  # noqa: E402
from vms.ingest.samples import Sample, SubmitResult  # noqa: E402


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CountingSink:
    def __init__(self) -> None:
        self.samples = 0

    def submit(self, org_id: int, samples: list[Sample], source: str = "") -> SubmitResult:
        self.samples += len(samples)
        return SubmitResult(accepted=len(samples))

    def gateway_state(self, gateway_id: int, online: bool, error: str = "") -> None:
        pass


async def bench_modbus(points: int, rounds: int) -> None:
    port = free_port()
    device = SimDevice(
        id=0, simdata=[SimData(0, values=list(range(points)), datatype=DataType.REGISTERS)]
    )
    server = ModbusTcpServer(device, address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    try:
        refs = [PointRef(i, f"PT-{i}", {"address": i, "scale": 0.01}) for i in range(points)]
        spec = GatewaySpec(1, 1, "bench", "modbus_tcp", {"host": "127.0.0.1", "port": port}, refs)
        sink = CountingSink()
        collector = ModbusCollector(spec, sink, IngestSettings())
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=3, retries=0)
        await client.connect()
        blocks = collector.blocks
        # bare reads of the same blocks: the reference
        await client.read_holding_registers(0, count=1)  # warm up
        c0 = cpu_s()
        for _ in range(rounds):
            for b in blocks:
                await client.read_holding_registers(b.start, count=b.count, device_id=b.unit_id)
        bare_cpu = cpu_s() - c0
        t0, c0 = time.perf_counter(), cpu_s()
        for _ in range(rounds):
            samples = await collector.poll(client, datetime.now(UTC))
            await collector.submit(samples)
        wall, cpu = time.perf_counter() - t0, cpu_s() - c0
        client.close()
        assert sink.samples == points * rounds, sink.samples
        print(
            f"modbus: {points} points in {len(blocks)} requests per round: "
            f"{wall / rounds * 1000:.1f} ms wall, {cpu / rounds * 1000:.1f} ms CPU per round "
            f"(server in-process), {cpu / rounds / points * 1e6:.1f} µs CPU per point; "
            f"bare reads {bare_cpu / rounds * 1000:.1f} ms CPU → ratio {cpu / bare_cpu:.2f}"
        )
    finally:
        await server.shutdown()


async def bench_mqtt(messages: int, rows_per_message: int) -> None:
    import aiomqtt

    binary = shutil.which("mosquitto", path=os.environ.get("PATH", "") + ":/usr/sbin")
    if binary is None:
        print("mqtt: skipped (no mosquitto)")
        return
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="bench-mqtt-"))
    conf = folder / "m.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    broker = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
    await asyncio.sleep(0.5)
    payloads = [
        json.dumps(
            [
                {"tag": f"TT-{r}", "value": i + r / 10, "at": 1772352000 + i}
                for r in range(rows_per_message)
            ]
        ).encode()
        for i in range(messages)
    ]

    async def publish() -> None:
        async with aiomqtt.Client("127.0.0.1", port) as pub:
            for p in payloads:
                await pub.publish("bench/rows", p, qos=1)

    try:
        # reference: a bare subscriber that only receives
        async with aiomqtt.Client("127.0.0.1", port) as sub:
            await sub.subscribe("bench/#", qos=1)
            c0 = cpu_s()
            pub_task = asyncio.create_task(publish())
            got = 0
            async for _ in sub.messages:
                got += 1
                if got == messages:
                    break
            await pub_task
            bare_cpu = cpu_s() - c0
        # the collector
        sink = CountingSink()
        spec = GatewaySpec(
            2, 1, "bench", "mqtt", {"host": "127.0.0.1", "port": port, "topics": ["bench/#"]}, []
        )
        collector = MqttCollector(spec, sink, IngestSettings())
        task = asyncio.create_task(collector.run())
        while not collector.online:
            await asyncio.sleep(0.01)
        t0, c0 = time.perf_counter(), cpu_s()
        await publish()
        while sink.samples < messages * rows_per_message:
            await asyncio.sleep(0.001)
        wall, cpu = time.perf_counter() - t0, cpu_s() - c0
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        print(
            f"mqtt: {messages} messages × {rows_per_message} rows: "
            f"{messages / wall:,.0f} messages/s, {messages * rows_per_message / cpu:,.0f} rows per "
            f"CPU-second (publisher in-process); bare subscriber {bare_cpu:.2f} s CPU "
            f"→ ratio {cpu / bare_cpu:.2f}"
        )
    finally:
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def bench_decode(n: int) -> None:
    cases: list[tuple[dict[str, Any], list[int]]] = [
        ({"address": 0, "type": "uint16", "scale": 0.01}, [1234]),
        ({"address": 0, "type": "float32", "word_order": "little"}, [0x0000, 0x4050]),
        ({"address": 0, "type": "int32", "byte_order": "little"}, [0x0100, 0x0200]),
    ]
    for source_fields, words in cases:
        source = ModbusSource(**source_fields)
        t0 = time.perf_counter()
        for _ in range(n):
            decode_registers(words, source)
        per = (time.perf_counter() - t0) / n * 1e6
        print(f"decode {source.type:8s} {source.word_order}/{source.byte_order}: {per:.2f} µs")


async def main(quick: bool) -> None:
    await bench_modbus(1000, 20 if quick else 100)
    await bench_mqtt(500 if quick else 5000, 10)
    bench_decode(20_000 if quick else 200_000)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    asyncio.run(main(parser.parse_args().quick))
