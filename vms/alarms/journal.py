"""Local journal of alarm events the database could not take yet.

If the database is down when an event arrives, the event (its fields and the key of its
already stored or spooled picture) is written here as one JSON file and committed later by
:meth:`AlarmService.replay_journal`, oldest first.  While anything is waiting, new events
queue behind it, so a camera's order (an alarm before its clear) is kept.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from analyzers.events import AlarmEvent, AlarmStatus


def to_record(event: AlarmEvent, image_key: str, image_error: str) -> dict[str, Any]:
    return {
        "alarm_id": event.alarm_id,
        "status": int(event.status),
        "channel_id": event.channel_id,
        "device_id": event.device_id,
        "profile": event.profile,
        "rule": event.rule,
        "alarm_type": event.alarm_type,
        "at": event.at.isoformat(),
        "detail": event.detail,
        "image_key": image_key,
        "image_error": image_error,
    }


def from_record(record: dict[str, Any]) -> tuple[AlarmEvent, str, str]:
    event = AlarmEvent(
        alarm_id=record["alarm_id"],
        status=AlarmStatus(record["status"]),
        channel_id=record["channel_id"],
        device_id=record.get("device_id", ""),
        profile=record["profile"],
        rule=record["rule"],
        alarm_type=record["alarm_type"],
        at=datetime.fromisoformat(record["at"]),
        snapshot_jpeg=b"",
        detail=record.get("detail") or {},
    )
    return event, record["image_key"], record.get("image_error", "")


class EventJournal:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def put(self, record: dict[str, Any]) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{record['alarm_id']}-{record['status']}.json"
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f, ensure_ascii=False, default=str)
            f.flush()
            os.fsync(f.fileno())
        path = self.root / name
        os.replace(tmp, path)
        return path

    def pending(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob("*.json") if not p.name.startswith("."))

    @staticmethod
    def load(path: Path) -> dict[str, Any]:
        return json.loads(path.read_text(encoding="utf-8"))

    def reject(self, path: Path, reason: str) -> None:
        """Keep a refused record for people to read, out of the replay queue."""
        target = self.root / "rejected"
        target.mkdir(parents=True, exist_ok=True)
        os.replace(path, target / path.name)
        (target / (path.name + ".reason")).write_text(reason + "\n", encoding="utf-8")
