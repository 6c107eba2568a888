"""What collectors hand to the ingest service, and what it answers.

Collectors (Modbus, OPC UA, MQTT, HTTP push) know nothing of the database: they turn their
protocol's data into :class:`Sample` rows and call a :class:`ReadingSink`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(slots=True)
class Sample:
    """One value of one point, as the source reported it."""

    tag: str  # 位号, as configured for the enterprise
    at: datetime  # source time, timezone-aware
    value: float
    quality: int = 0  # storage.sensor_models.Quality: good (0) or uncertain (2) from a source


@dataclass(frozen=True, slots=True)
class RowError:
    """Why one row of a batch was refused; ``row`` is its 0-based index in the batch."""

    row: int
    tag: str
    error: str

    def as_dict(self) -> dict[str, object]:
        return {"row": self.row, "tag": self.tag, "error": self.error}


@dataclass(slots=True)
class SubmitResult:
    """What :meth:`IngestService.submit` did with a batch."""

    accepted: int = 0
    duplicates: int = 0  # already stored (same point, same time): skipped, not an error
    late: int = 0  # older than the point's newest reading: stored as history only
    errors: list[RowError] = field(default_factory=list)
    ticket: int = 0  # wait for it with IngestService.committed(ticket)

    def as_dict(self) -> dict[str, object]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "late": self.late,
            "rejected": [e.as_dict() for e in self.errors],
        }


class IngestBusy(Exception):
    """More readings are waiting for the database than ``ingest.queue_max``: retry later."""


class ReadingSink(Protocol):
    """The ingest service as collectors see it."""

    def submit(self, org_id: int, samples: list[Sample], source: str = "") -> SubmitResult: ...

    def gateway_state(self, gateway_id: int, online: bool, error: str = "") -> None: ...
