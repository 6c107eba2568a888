"""MQTT payloads → samples (pure: no broker, no clock of its own).

Two shapes, as gateways publish them:

* rows: a JSON object ``{"tag": "PT-101", "value": 0.42, "at": "2026-12-03T08:00:00+08:00"}``
  or a JSON list of such objects, on any subscribed topic; tags are the enterprise's;
* a topic bound to one point (``MqttSource.topic``, MQTT wildcards allowed): the payload is
  the value itself (``12.5``, ``true``) or a JSON object holding it under ``json_key``.

``at`` is ISO 8601 with an offset or unix seconds / milliseconds
(:func:`vms.ingest.push.parse_time`); without it the sample time is the arrival time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiomqtt import Topic

from vms.ingest.push import parse_rows, parse_time
from vms.ingest.samples import Sample


@dataclass(frozen=True)
class Binding:
    """A point fed by its own topic."""

    tag: str
    topic: str  # a topic filter: exact, or with + / #
    json_key: str = "value"


@dataclass
class Parsed:
    samples: list[Sample] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _bound_sample(binding: Binding, payload: Any, now: datetime) -> Sample | str:
    """A sample for a bound topic, or why there is none."""
    at, quality = now, 0
    value = payload
    if isinstance(payload, dict):
        if binding.json_key not in payload:
            return f"{binding.tag}: payload has no {binding.json_key!r}"
        value = payload[binding.json_key]
        if payload.get("at") is not None:
            try:
                at = parse_time(payload["at"])
            except (ValueError, OverflowError, OSError) as exc:
                return f"{binding.tag}: bad time {payload['at']!r}: {exc}"
        quality = payload.get("quality", 0)
        if quality not in (0, 2):
            return f"{binding.tag}: quality must be 0 (good) or 2 (uncertain)"
    number = _number(value)
    if number is None:
        return f"{binding.tag}: value {value!r} is not a number"
    return Sample(binding.tag, at, number, quality)


def _decode(payload: bytes) -> Any:
    text = payload.decode("utf-8").strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        number = _number(text)  # a bare "12.5" that is not strict JSON ("+1", "1e3 ")
        if number is None:
            raise
        return number


def _rows(data: Any, now: datetime) -> Parsed:
    rows = data if isinstance(data, list) else [data]
    prepared = []
    for row in rows:
        if isinstance(row, dict):
            row = dict(row)
            if row.get("at") is None:
                row["at"] = now.isoformat()
            if isinstance(row.get("value"), bool):
                row["value"] = 1.0 if row["value"] else 0.0
        prepared.append(row)
    parsed = parse_rows(prepared)
    return Parsed(
        parsed.samples, [f"row {e.row} {e.tag}: {e.error}".strip() for e in parsed.errors]
    )


def parse_message(topic: str, payload: bytes, bindings: list[Binding], now: datetime) -> Parsed:
    """Samples in one message, and what was wrong with the rest of it."""
    try:
        data = _decode(payload)
    except UnicodeDecodeError:
        return Parsed(errors=[f"{topic}: payload is not UTF-8"])
    except json.JSONDecodeError as exc:
        return Parsed(errors=[f"{topic}: payload is neither JSON nor a number: {exc}"])
    bound = [b for b in bindings if Topic(topic).matches(b.topic)]
    if bound:
        out = Parsed()
        for binding in bound:
            result = _bound_sample(binding, data, now)
            if isinstance(result, Sample):
                out.samples.append(result)
            else:
                out.errors.append(f"{topic}: {result}")
        return out
    if isinstance(data, dict | list):
        parsed = _rows(data, now)
        parsed.errors = [f"{topic}: {e}" for e in parsed.errors]
        return parsed
    return Parsed(errors=[f"{topic}: a bare value on a topic bound to no point"])
