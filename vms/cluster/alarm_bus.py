"""Analyzer alarms and clears to the control node's alarm service, through JetStream.

An analyzer host's :class:`BusAlarmSink` counts an alarm as taken once JetStream has it on
disk (the publish acknowledgement); while NATS is unreachable it keeps them in a local spool
(one fsync'd file each) and sends them in order when NATS is back.  The control node's
:class:`AlarmConsumer` acknowledges each message only after ``AlarmService.handle`` stored
it, so a control node that dies mid-way gets it again; the message id (alarm id + status)
makes a resend within JetStream's duplicate window a no-op, and the alarm service itself
takes a duplicate alarm id as already done.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import struct
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from nats.js.api import AckPolicy, ConsumerConfig

from analyzers.events import AlarmEvent, AlarmStatus
from vms.cluster import bus as subjects
from vms.cluster.bus import Bus
from vms.logging import get_logger
from vms.tasks import cancel_task

log = get_logger("vms.cluster.alarms")

_LEN = struct.Struct(">II")  # header length, snapshot length; the raw picture is the rest


def encode_event(event: AlarmEvent) -> bytes:
    head = {
        "alarm_id": event.alarm_id,
        "status": int(event.status),
        "channel_id": event.channel_id,
        "profile": event.profile,
        "rule": event.rule,
        "alarm_type": event.alarm_type,
        "at": event.at.isoformat(),
        "detail": event.detail,
        "device_id": event.device_id,
    }
    blob = json.dumps(head, separators=(",", ":"), default=str).encode()
    return (
        _LEN.pack(len(blob), len(event.snapshot_jpeg)) + blob + event.snapshot_jpeg + event.raw_jpeg
    )


def decode_event(data: bytes) -> AlarmEvent:
    """The event a message carries; ``ValueError`` for one that is not well formed."""
    if len(data) < _LEN.size:
        raise ValueError("alarm message too short")
    n_head, n_snap = _LEN.unpack_from(data)
    start = _LEN.size
    if start + n_head + n_snap > len(data):
        raise ValueError("alarm message truncated")
    try:
        head = json.loads(data[start : start + n_head])
        return AlarmEvent(
            alarm_id=str(head["alarm_id"]),
            status=AlarmStatus(int(head["status"])),
            channel_id=str(head["channel_id"]),
            profile=str(head["profile"]),
            rule=str(head["rule"]),
            alarm_type=str(head["alarm_type"]),
            at=datetime.fromisoformat(head["at"]),
            snapshot_jpeg=data[start + n_head : start + n_head + n_snap],
            raw_jpeg=data[start + n_head + n_snap :],
            detail=dict(head.get("detail") or {}),
            device_id=str(head.get("device_id", "")),
        )
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"alarm message malformed: {exc}") from None


def message_id(event: AlarmEvent) -> str:
    return f"{event.alarm_id}:{int(event.status)}"


class BusAlarmSink:
    """An analyzer host's :class:`vms.seams.AlarmSink`."""

    def __init__(self, bus: Bus, spool: Path, ack_timeout_s: float = 5.0) -> None:
        self.bus = bus
        self.spool = spool
        self.ack_timeout_s = ack_timeout_s
        self.sent = 0
        self.spooled = 0
        self._lock = asyncio.Lock()  # one sender at a time keeps a camera's events in order
        self._drain: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.spool.mkdir(parents=True, exist_ok=True)
        self._drain = asyncio.create_task(self._drain_loop(), name="alarm-bus-drain")

    async def stop(self) -> None:
        await cancel_task(self._drain)

    async def _send(self, data: bytes, msg_id: str) -> None:
        assert self.bus.js is not None
        await self.bus.js.publish(
            subjects.ALARMS,
            data,
            timeout=self.ack_timeout_s,
            headers={"Nats-Msg-Id": msg_id},
        )

    async def handle(self, event: AlarmEvent) -> None:
        data = encode_event(event)
        async with self._lock:
            if not self._pending():
                try:
                    await self._send(data, message_id(event))
                    self.sent += 1
                    return
                except Exception as exc:  # noqa: BLE001 - NATS away: keep it on disk
                    log.warning("alarm bus down: spooled", alarm_id=event.alarm_id, error=repr(exc))
            await asyncio.to_thread(self._write, data, message_id(event))
            self.spooled += 1

    def _pending(self) -> list[Path]:
        return sorted(self.spool.glob("*.alarm")) if self.spool.is_dir() else []

    def _write(self, data: bytes, msg_id: str) -> None:
        name = f"{time.time_ns():020d}-{msg_id.replace(':', '_')}.alarm"
        tmp = self.spool / (name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.spool / name)

    async def flush_spool(self) -> int:
        """Send what the spool holds, oldest first; stops at the first failure."""
        sent = 0
        async with self._lock:
            for path in self._pending():
                data = await asyncio.to_thread(path.read_bytes)
                msg_id = path.stem.split("-", 1)[1].replace("_", ":")
                try:
                    await self._send(data, msg_id)
                except Exception:  # noqa: BLE001 - still away: try again later
                    break
                path.unlink()
                sent += 1
        if sent:
            log.info("spooled alarms sent", n=sent)
        return sent

    async def _drain_loop(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            if self._pending():
                await self.flush_spool()


class AlarmConsumer:
    """On the control node: JetStream's alarms into the alarm service, acknowledged after."""

    def __init__(self, bus: Bus, alarms: Any, batch: int = 16) -> None:
        self.bus = bus
        self.alarms = alarms
        self.batch = batch
        self.handled = 0
        self.refused = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.bus.ensure_alarm_stream()
        assert self.bus.js is not None
        self._sub = await self.bus.js.pull_subscribe(
            subjects.ALARMS,
            durable=subjects.ALARM_CONSUMER,
            stream=subjects.ALARM_STREAM,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=60, max_deliver=-1),
        )
        self._task = asyncio.create_task(self._run(), name="alarm-bus-consumer")

    async def stop(self) -> None:
        await cancel_task(self._task)

    async def _run(self) -> None:
        while True:
            try:
                msgs = await self._sub.fetch(self.batch, timeout=1.0)
            except TimeoutError:
                continue
            except Exception as exc:  # noqa: BLE001 - NATS away: wait and fetch again
                log.warning("alarm fetch failed", error=repr(exc))
                await asyncio.sleep(1.0)
                continue
            for msg in msgs:
                await self._one(msg)

    async def _one(self, msg: Any) -> None:
        from vms.alarms.service import AlarmRejected

        try:
            event = decode_event(msg.data)
            await self.alarms.handle(event)
        except (ValueError, AlarmRejected) as exc:
            self.refused += 1
            log.error("alarm from the bus refused", error=str(exc))
            with contextlib.suppress(Exception):
                await msg.term()
            return
        except Exception as exc:  # noqa: BLE001 - stored nowhere yet: delivered again
            log.warning("alarm from the bus not stored: retry", error=repr(exc))
            with contextlib.suppress(Exception):
                await msg.nak(delay=2)
            return
        self.handled += 1
        with contextlib.suppress(Exception):
            await msg.ack()

    def status(self) -> dict[str, Any]:
        return {"handled": self.handled, "refused": self.refused}
