"""The running node's shared parts, handed to the API and to every component.

Components are optional: a test may build Services with only a database.
Each component has ``async start()`` and ``async stop()``; ``vms.app`` owns
their order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from storage.db import Database
from storage.objects import ObjectStore
from vms.config import Settings
from vms.events import EventBus


@dataclass
class Services:
    settings: Settings
    db: Database
    objects: ObjectStore
    events: EventBus = field(default_factory=EventBus)
    sip: Any = None  # sip.server.SipServer
    media: Any = None  # vms.media.hub.StreamHub
    recorder: Any = None  # vms.recording.recorder.Recorder
    analyzers: Any = None  # analyzers.pool.AnalyzerPool
    alarms: Any = None  # vms.alarms.service.AlarmService
    uplink: Any = None  # vms.uplink.sender.UplinkSender
    live: Any = None  # vms.live.service.LiveService
    ingest: Any = None  # vms.ingest.service.IngestService
    warnings: Any = None  # vms.warning.engine.WarningEngine
    supervision: Any = None  # vms.supervision.service.Supervision
    playback: Any = None  # vms.recording.playback_sessions.PlaybackSessions
    downloads: Any = None  # vms.recording.downloads.Downloads
    cascade: Any = None  # vms.cascade.service.CascadeService
    extra: dict[str, Any] = field(default_factory=dict)
