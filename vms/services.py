"""The running node's shared parts, handed to the API and to every component.

Components are optional: a test may build Services with only a database.  Each component
has ``async start()`` and ``async stop()``; ``vms.components`` declares what each needs and
provides, and the start order follows from that.  Slots that are seams between roles are
typed by the Protocols of ``vms.seams``; the others by the class that fills them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from storage.db import Database
from storage.objects import ObjectStore
from vms.config import Settings
from vms.events import EventBus

if TYPE_CHECKING:
    from analyzers.frame_source import FrameSource
    from analyzers.pool import AnalyzerPool
    from sip.server import SipServer
    from vms.alarms.service import AlarmService
    from vms.cascade.service import CascadeService
    from vms.cluster.component import ClusterNode
    from vms.ingest.service import IngestService
    from vms.live.service import LiveService
    from vms.recording.downloads import Downloads
    from vms.recording.playback_sessions import PlaybackSessions
    from vms.recording.recorder import Recorder
    from vms.seams import AlarmSink, AnalysisControl, MediaSource, Placement, UplinkWake
    from vms.supervision.service import Supervision
    from vms.warning.engine import WarningEngine


@dataclass
class Services:
    settings: Settings
    db: Database
    objects: ObjectStore
    events: EventBus = field(default_factory=EventBus)
    sip: SipServer | None = None
    media: MediaSource | None = None  # vms.media.hub.StreamHub in a node that pulls streams
    frames: FrameSource | None = None  # for the analyzers: the hub, or the bus on an analyzer host
    recorder: Recorder | None = None
    analyzers: AnalyzerPool | None = None  # this node's pool (status, pictures)
    analysis: AnalysisControl | None = None  # where a changed camera config goes
    alarms: AlarmService | None = None
    alarm_sink: AlarmSink | None = None  # where analysis results go: alarms, or the bus
    uplink: UplinkWake | None = None  # vms.uplink.sender.UplinkSender
    live: LiveService | None = None
    ingest: IngestService | None = None
    warnings: WarningEngine | None = None
    supervision: Supervision | None = None
    playback: PlaybackSessions | None = None
    downloads: Downloads | None = None
    cascade: CascadeService | None = None
    placement: Placement | None = None  # the cameras a clustered node holds; None: all
    cluster: ClusterNode | None = None  # a clustered node's bus, registry and leases
