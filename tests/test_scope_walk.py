"""Scope walk (issue 17): every route the app serves, walked as the users of two enterprises of
one county (A and B), of another county (C, with its enterprise) and of the county above A and B.

The routes come from the app itself, so a new route is walked without anyone adding it; a
route the walk cannot fill (a path parameter, a request body it does not know) fails the test
until it is taught here.  Only routes that serve no organisation's data are left out, each with
its reason (``UNWALKED``).  Every object of a site carries the site's marker (``AMARK``,
``BMARK``, ``CMARK``) in its names, or is known by its ids, so a leak shows in any answer:

- lists (no path parameter, or only node-wide ones): a user never sees a marker of a site
  outside its subtree, and sees of the sites inside exactly what a global administrator sees;
- one object (path parameters filled with B's ids): a user outside B's subtree gets 403/404
  (a change also 400/422) and nothing of B changes — no row, no command to B's devices; a user
  inside gets the administrator's answer;
- the administrator finally makes every change once: a fill that reaches nothing (a 404
  there) would have proved nothing.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import av
import cv2
import numpy as np
import pytest
from fastapi import FastAPI, routing
from fastapi.routing import APIRoute, APIWebSocketRoute
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from api.security import create_token
from sip.channel_ref import ChannelRef
from sip.outgoing import SipError
from storage.db import Database
from storage.device_alarm_models import DeviceAlarm, DevicePosition
from storage.download_models import DownloadJob, DownloadSource, DownloadState, new_job_id
from storage.intake_models import IntakeRecord
from storage.models import (
    Alarm,
    AlarmAction,
    Base,
    Channel,
    Device,
    Organisation,
    OrgKind,
    OutboxItem,
    OutboxState,
    Profile,
    RecordingSegment,
    Role,
    User,
)
from storage.objects import LocalObjectStore
from storage.org_tree import create_org
from storage.sensor_models import (
    Duty,
    GatewayProtocol,
    Installation,
    InstallationKind,
    Notification,
    OfflineDaily,
    OrgContact,
    Reading,
    RecordingBookmark,
    Sensor,
    SensorCamera,
    SensorEvent,
    SensorGateway,
    SensorWarning,
    WarningEvent,
    WarningLevel,
)
from storage.wall_models import Wall
from vms.config import Settings
from vms.services import Services

NOW = datetime.now(UTC).replace(microsecond=0)
T0 = NOW - timedelta(hours=1)  # the recorded segment and every time window of the walk
OLD = NOW - timedelta(days=3)  # alarms and warnings open that long are overdue
WINDOW = {
    "start": (T0 - timedelta(minutes=1)).isoformat(),
    "end": (T0 + timedelta(minutes=1)).isoformat(),
}
UPSTREAM = "34000000002000000001"  # the superior platform of the cascade
SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
MUTATING = ("POST", "PUT", "PATCH", "DELETE")

# Routes with no organisation's data, and why: the only ones the walk leaves out.
UNWALKED: dict[tuple[str, str], str] = {
    ("ANY", "/openapi.json"): "the API's description",
    ("ANY", "/docs"): "the API's description",
    ("ANY", "/docs/oauth2-redirect"): "the API's description",
    ("ANY", "/redoc"): "the API's description",
    ("ANY", "/static"): "the web UI's files",
    ("GET", "/"): "the web UI's page",
    ("GET", "/healthz"): "node health: no organisation's data",
    ("POST", "/api/auth/login"): "anyone's login (tests/test_foundation_api.py)",
    ("POST", "/api/auth/password"): "the caller's own password",
    ("POST", "/api/auth/logout"): "signs the caller itself out",
    ("POST", "/api/ingest/push"): "gateways sign in with their own key, not as users "
    "(tests/test_ingest_push.py)",
}
WALKED_ELSEWHERE = {("WS", "/api/events/ws"): "test_events_reach_only_their_subtree"}
SELF_ROUTES = {("GET", "/api/auth/me")}  # the caller's own profile: no comparison with root's
# the caller's own named walls (api/routers/walls.py): each user sees its own, not root's
SELF_ROUTES |= {("GET", "/api/walls"), ("GET", "/api/walls/{name}")}

# Path parameters that name a node-wide thing (a superior, a report): the answer is the
# caller's part of it, so such routes are checked like lists.
SHARED_PARAMS = {"upstream_id", "report_id"}
# a cruise track, an SD card: of the device named beside; the table an uplink client posts
NEUTRAL_PARAMS = {"number", "index", "table"}
NEUTRAL_PARAMS |= {"name"}  # a wall's name: of the caller's own walls
# Changes of node-wide things: allowed or not, they must neither show nor change B's rows.
SHARED_CHANGES = {("POST", "/api/uplink/outbox/resend"), ("POST", "/api/supervision/reports")}
# deleting one of the caller's own walls by name: another user's wall of that name stays
SHARED_CHANGES |= {("DELETE", "/api/walls/{name}")}
# Leaks found by the walk and reported, not fixed here: (why, the tables they change).  The
# walk still checks them and fails once one keeps to scope, so the entry is taken out.
KNOWN_LEAKS: dict[tuple[str, str], tuple[str, set[str]]] = {}
# Query filters tried on every list that takes them, with B's values.
FILTERS = {
    "org_id": "org_id",
    "device_id": "device_id",
    "channel_id": "channel_id",
    "video_code": "channel_id",
    "target_id": "channel_id",
    "source_id": "channel_id",
    "sensor_id": "sensor_id",
    "warning_id": "warning_id",
    "gateway_id": "gateway_id",
    "installation_id": "installation_id",
}


def _site_fill(path: str, name: str, b: SiteObjects, report_id: int) -> Any:
    """The value of a path parameter: B's object (or the node-wide thing)."""
    by_prefix = {
        "/api/device-alarms/": {"alarm_id": b.device_alarm_id},
        "/api/recordings/device-playback/": {"job_id": b.playback_job},
        "/api/playback/sessions/": {"session_id": b.playback_session},
    }
    by_path = {"/api/users/{user_id}/token": {"user_id": b.uplink_user_id}}
    if name in by_path.get(path, {}):
        return by_path[path][name]
    for prefix, values in by_prefix.items():
        if path.startswith(prefix) and name in values:
            return values[name]
    fill = {
        "device_id": b.device_id,
        "channel_id": b.channel_id,
        "alarm_id": b.alarm_id,
        "org_id": b.org_id,
        "user_id": b.user_id,
        "segment_id": b.segment_id,
        "job_id": b.job_id,
        "session_id": b.live_session,
        "contact_id": b.contact_id,
        "gateway_id": b.gateway_id,
        "installation_id": b.installation_id,
        "sensor_id": b.sensor_id,
        "warning_id": b.warning_id,
        "bookmark_id": b.bookmark_id,
        "number": 1,
        "index": 1,
        "table": "table4",
        "record_id": b.intake_record_id,
        "upstream_id": UPSTREAM,
        "report_id": report_id,
        "name": "walk",  # root and B's user each have a wall of that name
    }
    if name not in fill:
        raise KeyError(name)
    return fill[name]


def _bodies(w: Walk) -> dict[tuple[str, str], Any]:
    """A valid body for every change (the administrator's final run proves it valid)."""
    b, county_k = w.sites["B"], w.orgs["county_k"].id
    week = _last_week(w.services.settings).isoformat()
    cam = {"channel_id": b.channel_id, "device_id": b.device_id}
    sip = "/api/sip/devices/{device_id}/channels/{channel_id}"
    return {
        ("POST", "/api/orgs"): {"name": "walk", "kind": "enterprise", "parent_id": county_k},
        ("PATCH", "/api/orgs/{org_id}"): {"name": "renamed"},
        ("POST", "/api/users"): {
            "username": "walk_user",
            "password": "Walk-pass-12345",
            "role": "enterprise",
            "org_id": b.org_id,
        },
        ("PATCH", "/api/users/{user_id}"): {"is_active": True},
        ("POST", "/api/devices"): {"device_id": "34010200001180000099", "org_id": b.org_id},
        ("PATCH", "/api/devices/{device_id}"): {"name": "renamed"},
        ("PATCH", "/api/devices/{device_id}/channels/{channel_id}"): {"name": "renamed"},
        ("POST", "/api/alarms/{alarm_id}/actions"): {"action": "comment", "note": "walk"},
        ("POST", "/api/live/{channel_id}/offer"): {"sdp": SDP},
        ("POST", "/api/uplink/outbox/resend"): {"ids": b.outbox_ids},
        ("POST", "/api/recordings/{channel_id}/device-playback"): {**WINDOW, "speed": 1},
        ("POST", "/api/playback/sessions"): {**cam, **WINDOW},
        ("POST", "/api/playback/sessions/{session_id}/control"): {"action": "pause"},
        ("POST", "/api/playback/sessions/{session_id}/offer"): {"sdp": SDP},
        ("POST", "/api/downloads"): {**cam, **WINDOW, "source": "recording"},
        ("PUT", "/api/analyzers/channels/{channel_id}"): {},
        ("POST", f"{sip}/ptz"): {"action": "stop"},
        ("POST", "/api/sip/devices/{device_id}/control"): {"action": "reboot"},
        ("PUT", "/api/sip/devices/{device_id}/config/basic"): {"name": "walk"},
        ("PUT", f"{sip}/home-position"): {"enabled": False},
        ("POST", f"{sip}/ptz-position"): {"pan": 10.0},
        ("PUT", "/api/cascade/{upstream_id}/channels"): {"all_channels": False, "channel_ids": []},
        ("POST", "/api/warnings/{warning_id}/actions"): {"action": "comment", "note": "walk"},
        ("POST", "/api/contacts"): {"org_id": b.org_id, "duty": "hq", "name": "walk"},
        ("PATCH", "/api/contacts/{contact_id}"): {"name": "renamed"},
        ("POST", "/api/gateways"): {"org_id": b.org_id, "name": "walk", "protocol": "http_push"},
        ("PATCH", "/api/gateways/{gateway_id}"): {"name": "renamed"},
        ("POST", "/api/installations"): {"org_id": b.org_id, "kind": "warehouse", "name": "w"},
        ("PATCH", "/api/installations/{installation_id}"): {"name": "renamed"},
        ("POST", "/api/sensors"): {"org_id": b.org_id, "tag": "WALK-1", "kind": "level"},
        ("PATCH", "/api/sensors/{sensor_id}"): {"name": "renamed"},
        ("POST", "/api/sensors/import"): [{"tag": "WALK-2", "kind": "level"}],
        ("POST", "/api/supervision/reports"): {"kind": "weekly", "period_start": week},
        ("POST", "/api/users/{user_id}/token"): {"ttl_days": 1},
        ("PUT", "/api/walls/{name}"): {"layout": 4, "channels": [f"{b.device_id}/{b.channel_id}"]},
        ("POST", "/api/intake/{table}"): {  # an alarm of B's camera, posted from below
            "ALARM_ID": str(uuid.uuid4()),
            "ALARM_TYPE": "1",
            "ALARM_STATUS": "1",
            "ALARM_TIME": T0.strftime("%Y-%m-%d %H:%M:%S"),
            "DEVICE_CODE": "walk-AI",
            "VIDEO_CODE": f"{b.org_code}01320000002",
            "ALARM_IMAGE": base64.b64encode(_png()).decode(),
        },
    }


def _queries(sites: dict[str, SiteObjects]) -> dict[tuple[str, str], dict[str, Any]]:
    """Query parameters a route needs (or that make a change name B)."""
    day = (T0.date() - timedelta(days=7)).isoformat(), (T0.date() + timedelta(days=1)).isoformat()
    return {
        ("GET", "/api/supervision/daily"): {"start": day[0], "end": day[1]},
        ("POST", "/api/sensors/import"): {"org_id": sites["B"].org_id},
        ("GET", "/api/audit"): {"limit": 1000},
    }


# --- the site ---------------------------------------------------------------------------


@dataclass
class SiteObjects:
    """One enterprise and everything it owns that a route serves."""

    key: str  # A, B, C
    mark: str  # in every name of the site
    org_id: int = 0
    org_path: str = ""
    org_code: str = ""
    device_id: str = ""
    channel_id: str = ""
    alarm_id: str = ""
    device_alarm_id: int = 0
    segment_id: int = 0
    job_id: str = ""
    gateway_id: int = 0
    installation_id: int = 0
    sensor_id: int = 0
    warning_id: str = ""
    bookmark_id: int = 0
    contact_id: int = 0
    user_id: int = 0
    uplink_user_id: int = 0  # a machine client of the site
    intake_record_id: int = 0  # a Table 4 record the site's node posted up to this one
    outbox_ids: list[int] = field(default_factory=list)  # dead letters
    sent_ids: list[int] = field(default_factory=list)
    live_session: str = ""
    playback_session: str = ""
    playback_job: str = ""

    @property
    def camera(self) -> ChannelRef:
        return ChannelRef(self.device_id, self.channel_id)

    @property
    def username(self) -> str:
        return f"ent_{self.mark}"

    def markers(self) -> set[str]:
        return {
            self.mark,
            self.device_id,
            self.channel_id,
            self.alarm_id,
            self.warning_id,
            self.job_id,
            self.live_session,
            self.playback_session,
            self.playback_job,
        }


@dataclass
class Actor:
    username: str
    role: Role
    org: str | None  # key of the organisation (None: a global administrator)
    user_id: int = 0
    org_path: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Walk:
    client: TestClient
    services: Services
    sites: dict[str, SiteObjects]
    orgs: dict[str, Organisation]
    actors: dict[str, Actor]
    calls: list[tuple[str, str, str]]  # (actor, component call, its arguments)
    now: dict[str, str]  # {"actor": who is asking now}
    report_id: int = 0

    def sees(self, actor: Actor, site: SiteObjects) -> bool:
        return actor.org_path is None or site.org_path.startswith(actor.org_path)

    def as_(self, name: str) -> dict[str, str]:
        self.now["actor"] = name
        return self.actors[name].headers


JPEG = b"\xff\xd8\xff\xe0 walk picture \xff\xd9"


@functools.cache
def _ts() -> bytes:
    """Ten black frames as MPEG-TS: a segment the export can make an MP4 of."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        stream.options = {"preset": "ultrafast", "bf": "0"}
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


@functools.cache
def _png() -> bytes:
    return cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()


def _seed(services: Services, s: Any, site: SiteObjects, org: Organisation, n: int) -> None:
    """Every kind of object a route serves, for one enterprise, named with its marker."""
    mark, objects = site.mark, services.objects
    region = org.code[:6] + "00"
    device = Device(
        device_id=f"{region}00118{n:07d}",
        name=f"{mark}-nvr",
        org_id=org.id,
        online=True,
        sip_password="device-pass-1",
    )
    channel = Channel(channel_id=f"{region}00132{n:07d}", name=f"{mark}-cam", address=mark)
    device.channels.append(channel)
    s.add(device)
    s.flush()
    site.device_id, site.channel_id = device.device_id, channel.channel_id
    alarm = Alarm(
        channel_pk=channel.id,
        org_id=org.id,
        profile=Profile.enterprise,
        alarm_type="9",
        rule="no_helmet",
        video_code=channel.channel_id,
        device_code=f"{mark}-AI",
        raised_at=OLD,
        image_key=f"alarms/{mark}.jpg",
        detail={"note": mark},
    )
    alarm.actions.append(AlarmAction(action="comment", note=f"{mark} seen"))
    objects.put(alarm.image_key, JPEG)
    s.add(alarm)
    s.flush()
    site.alarm_id = alarm.alarm_id
    dev_alarm = DeviceAlarm(
        device_pk=device.id,
        device_id=device.device_id,
        source_id=channel.channel_id,
        channel_pk=channel.id,
        org_id=org.id,
        priority=1,
        method=5,
        alarm_type=2,
        description=f"{mark} motion",
        raw=f"<Notify>{mark}</Notify>",
    )
    position = DevicePosition(
        device_pk=device.id, target_id=channel.channel_id, at=T0, longitude=117.0, latitude=36.6
    )
    segment = RecordingSegment(
        device_id=device.device_id,
        channel_id=channel.channel_id,
        start=T0,
        end=T0 + timedelta(seconds=10),
        object_key=f"recordings/{device.device_id}/{channel.channel_id}/walk.ts",
        size=len(_ts()),
        keyframes=[[0.0, 0]],
    )
    objects.put(segment.object_key, _ts())
    job = DownloadJob(
        channel_id=channel.channel_id,
        device_id=device.device_id,
        source=DownloadSource.recording,
        start=T0,
        end=T0 + timedelta(seconds=10),
        state=DownloadState.done,
        object_key=f"downloads/{mark}.mp4",
        size=4,
        created_by=site.username,
        events=[{"at": T0.isoformat(), "event": f"{mark} done"}],
    )
    objects.put(job.object_key, b"mp4!")
    gateway = SensorGateway(
        org_id=org.id,
        name=f"{mark}-gw",
        protocol=GatewayProtocol.http_push,
        config={},
        ident_code=f"{mark}PUSH",
        secret="k" * 44,
    )
    installation = Installation(
        org_id=org.id, kind=InstallationKind.tank_area, name=f"{mark}-tanks", code=f"{mark}-T"
    )
    s.add_all([dev_alarm, position, segment, job, gateway, installation])
    s.flush()
    sensor = Sensor(
        org_id=org.id,
        installation_id=installation.id,
        gateway_id=gateway.id,
        tag=f"{mark}-LT01",
        name=f"{mark} level",
        kind="level",
        unit="m",
        thresholds={"h": 5.0},
        last_value=6.0,
        last_reading_at=NOW - timedelta(minutes=1),
        level="red",
    )
    sensor.cameras = [SensorCamera(channel_pk=channel.id)]
    s.add(sensor)
    s.flush()
    s.add_all(
        [Reading(sensor_pk=sensor.id, at=NOW - timedelta(minutes=m), value=6.0) for m in (1, 2)]
        + [SensorEvent(sensor_pk=sensor.id, kind="offline", at=OLD, detail={"note": mark})]
    )
    warning = SensorWarning(
        sensor_pk=sensor.id,
        org_id=org.id,
        level=WarningLevel.red,
        peak_level=WarningLevel.red,
        cause="h",
        value=6.0,
        threshold=5.0,
        raised_at=OLD,
        level_since=OLD,
        detail={"tag": sensor.tag, "name": sensor.name, "cameras": [channel.channel_id]},
    )
    warning.events.append(
        WarningEvent(
            kind="opened",
            level="red",
            note=mark,
            recipients=[{"org_id": org.id, "duty": "safety_dept", "name": f"{mark} safety"}],
        )
    )
    contact = OrgContact(
        org_id=org.id,
        duty=Duty.safety_dept,
        name=f"{mark} safety",
        email=f"{mark.lower()}@example.com",
    )
    s.add_all([warning, contact])
    s.flush()
    bookmark = RecordingBookmark(
        device_id=device.device_id,
        channel_id=channel.channel_id,
        at=OLD,
        label=f"{mark} warning",
        source="warning",
        ref=warning.warning_id,
        snapshot_key=f"snapshots/{mark}.jpg",
    )
    objects.put(bookmark.snapshot_key, JPEG)
    outbox = [
        OutboxItem(
            receiver="prov",
            table="table4",
            ordering_key=channel.channel_id,
            payload={"ALARM_ID": alarm.alarm_id, "DEVICE_CODE": f"{mark}-AI"},
            state=OutboxState.dead,
            dead_at=NOW,
            last_error=f"{mark} refused",
        ),
        OutboxItem(
            receiver="prov",
            table="table3",
            ordering_key=f"table3-{org.id}",
            payload={"DEVICE_CODE": f"{mark}-AI"},
            state=OutboxState.dead,
            dead_at=NOW,
        ),
        OutboxItem(
            receiver="prov",
            table="table2",
            ordering_key=f"table2-{org.id}",
            payload={"COMPANY_CODE": org.code, "DEVICE_CODE": f"{mark}-AI"},
            state=OutboxState.sent,
            sent_at=NOW,
        ),
    ]
    user = User(username=site.username, password_hash="x", role=Role.enterprise, org_id=org.id)
    uplink = User(username=f"up_{mark}", password_hash="x", role=Role.uplink, org_id=org.id)
    s.add_all(
        [
            bookmark,
            *outbox,
            user,
            uplink,
            Notification(
                channel="email",
                target=contact.email,
                subject=f"{mark} red warning",
                warning_pk=warning.id,
                org_id=org.id,
                payload={"event": "opened"},
            ),
            OfflineDaily(
                day=(NOW - timedelta(days=1)).date(),
                subject="camera",
                subject_id=channel.channel_id,
                org_id=org.id,
                offline_s=60.0,
                monitored_s=86400.0,
            ),
        ]
    )
    s.flush()
    site.org_id, site.org_path, site.org_code = org.id, org.path, org.code
    site.device_alarm_id, site.segment_id, site.job_id = dev_alarm.id, segment.id, job.id
    site.gateway_id, site.installation_id, site.sensor_id = gateway.id, installation.id, sensor.id
    site.warning_id, site.bookmark_id, site.contact_id = warning.warning_id, bookmark.id, contact.id
    site.user_id = user.id
    site.outbox_ids = [o.id for o in outbox if o.state == OutboxState.dead]
    site.sent_ids = [o.id for o in outbox if o.state != OutboxState.dead]
    site.uplink_user_id = uplink.id
    record = IntakeRecord(
        source_org_id=org.id,
        source_user_id=uplink.id,
        table="table4",
        dedupe_key=f"t4:{alarm.alarm_id}:1",
        fields={"ALARM_ID": alarm.alarm_id, "DEVICE_CODE": f"{mark}-AI"},
        alarm_id=alarm.alarm_id,
        alarm_status="1",
        alarm_type="9",
        device_code=f"{mark}-AI",
        video_code=f"{org.code}0132{n:07d}",
        image_key=f"intake/{mark}.png",
    )
    objects.put(record.image_key, _png())
    s.add(record)
    s.flush()
    site.intake_record_id = record.id
    # in-memory things of the components; ids without the marker (the audit trail shows them)
    site.live_session, site.playback_session, site.playback_job = (
        uuid.uuid4().hex for _ in range(3)
    )


# --- the components, as stand-ins that record what they are asked ------------------------


class Recorded:
    """Records each call as (who asked, what, arguments) for the 'no command reached B' check."""

    def __init__(self, walk_calls: list[tuple[str, str, str]], now: dict[str, str]) -> None:
        self._calls, self._now = walk_calls, now

    def note(self, what: str, *args: Any) -> None:
        self._calls.append((self._now["actor"], what, repr(args)))


class FakeSip(Recorded):
    """The SIP server: every device request is recorded, then times out like a silent device."""

    def __init__(self, calls: list[tuple[str, str, str]], now: dict[str, str]) -> None:
        super().__init__(calls, now)
        up = SimpleNamespace(server_id=UPSTREAM, describe=lambda: {"server_id": UPSTREAM})
        self.upstreams = [up]
        self.subscriptions = SimpleNamespace(snapshot=lambda device_id: self._snapshot(device_id))
        self.extended = self
        self.tasks = SimpleNamespace(spawn=lambda coro, name: coro.close())
        self.relay = SimpleNamespace(catalog_changed=self._catalog_changed)

    def _snapshot(self, device_id: str) -> list[Any]:
        self.note("sip.subscriptions", device_id)
        return []

    async def _catalog_changed(self) -> None:
        self.note("sip.catalog_changed")

    def __getattr__(self, name: str) -> Callable[..., Any]:
        async def request(*args: Any, **kwargs: Any) -> Any:
            self.note(f"sip.{name}", *args, *kwargs.values())
            raise SipError(f"{name}: the device does not answer", 408)

        return request


class FakeMedia(Recorded):
    def __init__(self, calls: Any, now: Any, cameras: list[ChannelRef]) -> None:
        super().__init__(calls, now)
        self.cameras = cameras

    def channels(self) -> list[ChannelRef]:
        return list(self.cameras)

    def stats(self, camera: ChannelRef) -> dict[str, Any]:
        return {
            "channel_id": camera.channel_id,
            "device_id": camera.device_id,
            "state": "receiving",
        }

    def hold(self, camera: ChannelRef) -> bool:
        self.note("media.hold", camera)
        return True

    def release(self, camera: ChannelRef) -> bool:
        self.note("media.release", camera)
        return True


@dataclass
class FakeJob:
    id: str
    channel: ChannelRef

    @property
    def channel_id(self) -> str:
        return self.channel.channel_id

    @property
    def device_id(self) -> str:
        return self.channel.device_id

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "device_id": self.device_id,
            "channel_id": self.channel_id,
            "start": WINDOW["start"],
            "end": WINDOW["end"],
            "state": "running",
        }


class FakeRecorder(Recorded):
    def __init__(self, calls: Any, now: Any, sites: dict[str, SiteObjects]) -> None:
        super().__init__(calls, now)
        self.cameras = [s.camera for s in sites.values()]
        jobs = {s.playback_job: FakeJob(s.playback_job, s.camera) for s in sites.values()}
        self.playback = SimpleNamespace(jobs=jobs, start=self._start)

    def stats(self) -> dict[ChannelRef, dict[str, Any]]:
        return {c: {"segments": 1} for c in self.cameras}

    def _start(self, camera: ChannelRef, start: datetime, end: datetime, speed: int) -> FakeJob:
        self.note("recorder.playback", camera)
        return FakeJob("pbjob-new", camera)


class FakeAnalyzers(Recorded):
    providers = ["CPUExecutionProvider"]

    def __init__(self, calls: Any, now: Any, cameras: list[ChannelRef]) -> None:
        super().__init__(calls, now)
        self.cameras = cameras

    def stats(self) -> dict[ChannelRef, dict[str, Any]]:
        return {c: {"fps": 1.0} for c in self.cameras}

    def model_specs(self, config: Any) -> list[Any]:
        return []

    async def latest_frame(self, camera: ChannelRef, within_s: float) -> np.ndarray | None:
        """The newest analysed frame (the snapshot for drawing zones)."""
        return np.zeros((36, 64, 3), np.uint8)

    async def apply(self, camera: ChannelRef, profile: str, config: Any) -> None:
        """As ``services.analysis``: a changed config reaches the pool."""
        self.note("analyzers.configure", camera)


class FakeLive(Recorded):
    def __init__(self, calls: Any, now: Any, sites: dict[str, SiteObjects]) -> None:
        super().__init__(calls, now)
        self.sessions = {
            s.live_session: SimpleNamespace(id=s.live_session, user=s.username, channel=s.camera)
            for s in sites.values()
        }

    async def answer(self, camera: ChannelRef, sdp: str, user: str, source: Any = None) -> Any:
        self.note("live.answer", camera)
        return SimpleNamespace(id="live-new", answer_sdp=SDP)

    async def hangup(self, session_id: str) -> None:
        self.note("live.hangup", session_id)

    def stats(self) -> dict[str, Any]:
        rows = [
            {"session_id": k, "user": v.user, **_codes(v.channel)} for k, v in self.sessions.items()
        ]
        return {"sessions": rows, "relays": [_codes(v.channel) for v in self.sessions.values()]}


def _codes(camera: ChannelRef) -> dict[str, str]:
    return {"device_id": camera.device_id, "channel_id": camera.channel_id}


@dataclass
class FakePlaybackSession:
    id: str
    user: str
    channel: ChannelRef

    @property
    def channel_id(self) -> str:
        return self.channel.channel_id

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "user": self.user, **_codes(self.channel)}


class FakePlayback(Recorded):
    def __init__(self, calls: Any, now: Any, sites: dict[str, SiteObjects]) -> None:
        super().__init__(calls, now)
        self.sessions = {
            s.playback_session: FakePlaybackSession(s.playback_session, s.username, s.camera)
            for s in sites.values()
        }

    def get(self, session_id: str) -> FakePlaybackSession | None:
        return self.sessions.get(session_id)

    def open(
        self, camera: ChannelRef, start: datetime, end: datetime, user: str
    ) -> FakePlaybackSession:
        self.note("playback.open", camera)
        return FakePlaybackSession("playback-new", user, camera)

    async def control(self, session_id: str, action: str, **kwargs: Any) -> FakePlaybackSession:
        self.note("playback.control", session_id)
        return self.sessions[session_id]

    def viewer(self, session_id: str) -> Any:
        return SimpleNamespace(close=lambda: None)

    async def close(self, session_id: str) -> None:
        self.note("playback.close", session_id)


class FakeDownloads(Recorded):
    async def create(self, **job: Any) -> DownloadJob:
        self.note("downloads.create", job["device_id"], job["channel_id"])
        return DownloadJob(
            id=new_job_id(),
            channel_id=job["channel_id"],
            device_id=job["device_id"],
            source=job["source"],
            start=job["start"],
            end=job["end"],
            speed=job["speed"],
            state=DownloadState.queued,
            error="",
            created_by=job["user"],
            bytes_received=0,
            attempts=0,
            gaps=0,
            parts=[],
            events=[],
            object_key="",
            size=0,
            duration_s=0.0,
            frames=0,
            created_at=NOW,
            updated_at=NOW,
        )

    async def cancel(self, job_id: str) -> bool:
        self.note("downloads.cancel", job_id)
        return True

    async def remove(self, job_id: str) -> None:
        self.note("downloads.remove", job_id)


class FakeCascade:
    def __init__(self, cameras: list[ChannelRef]) -> None:
        self.cameras = cameras

    def describe(self) -> list[dict[str, Any]]:
        return [{"upstream_id": UPSTREAM, "state": "sending", **_codes(c)} for c in self.cameras]


class FakeUplink:
    def stats(self) -> dict[str, Any]:
        return {"prov": {"sent": 3, "failures": 1}}

    def wake_threadsafe(self) -> None:
        pass


# --- building it --------------------------------------------------------------------------


ACTORS = [
    # (username, role, organisation key): A and C are outside B's subtree, K (B's county) in
    ("root", Role.admin, None),
    ("auditor", Role.auditor, None),  # reads the whole audit trail: its reference answer
    ("ent_AMARK", Role.enterprise, "A"),
    ("op_AMARK", Role.operator, "A"),
    ("op_CMARK", Role.operator, "county_c"),
    ("admin_CMARK", Role.admin, "county_c"),
    ("uplink_CMARK", Role.uplink, "county_c"),
    ("auditor_CMARK", Role.auditor, "county_c"),
    ("op_k", Role.operator, "county_k"),
    ("admin_k", Role.admin, "county_k"),
    ("uplink_k", Role.uplink, "county_k"),
    ("ent_BMARK", Role.enterprise, "B"),
]


def build(services: Services) -> tuple[dict[str, SiteObjects], dict[str, Organisation]]:
    """province → city → county K (enterprises A, B) and county C (enterprise C)."""
    sites = {k: SiteObjects(k, f"{k}MARK") for k in "ABC"}
    orgs: dict[str, Organisation] = {}
    with services.db.session() as s:
        orgs["province"] = create_org(s, "省", OrgKind.province, None, "340000")
        orgs["city"] = create_org(s, "市", OrgKind.city, orgs["province"], "340100")
        orgs["county_k"] = create_org(s, "K县", OrgKind.county, orgs["city"], "340102")
        orgs["county_c"] = create_org(s, "丙县 CMARK", OrgKind.county, orgs["city"], "340103")
        orgs["A"] = create_org(s, "甲厂 AMARK", OrgKind.enterprise, orgs["county_k"], "340102001")
        orgs["B"] = create_org(s, "乙厂 BMARK", OrgKind.enterprise, orgs["county_k"], "340102002")
        orgs["C"] = create_org(s, "丙厂 CMARK", OrgKind.enterprise, orgs["county_c"], "340103003")
        for n, key in enumerate("ABC", start=1):
            _seed(services, s, sites[key], orgs[key], n)
        s.expunge_all()
    return sites, orgs


@pytest.fixture
def walk(services: Services) -> Iterator[Walk]:
    with open_walk(services) as w:
        yield w


@contextlib.contextmanager
def open_walk(services: Services) -> Iterator[Walk]:
    """The site, the stand-in components, a token per user and the app to ask."""
    sites, orgs = build(services)
    calls: list[tuple[str, str, str]] = []
    now = {"actor": "setup"}
    cameras = [s.camera for s in sites.values()]
    services.sip = FakeSip(calls, now)
    services.media = FakeMedia(calls, now, cameras)
    services.recorder = FakeRecorder(calls, now, sites)
    services.analyzers = services.analysis = FakeAnalyzers(calls, now, cameras)
    services.live = FakeLive(calls, now, sites)
    services.playback = FakePlayback(calls, now, sites)
    services.downloads = FakeDownloads(calls, now)
    services.cascade = FakeCascade(cameras)
    services.uplink = FakeUplink()
    actors: dict[str, Actor] = {}
    with services.db.session() as s:
        for username, role, key in ACTORS:
            org = orgs[key] if key is not None else None
            user = s.scalar(select(User).where(User.username == username))
            if user is None:
                user = User(username=username, password_hash="x", role=role, org_id=org and org.id)
                s.add(user)
                s.flush()
            actors[username] = Actor(username, role, key, user.id, org.path if org else None)
        b_camera = f"{sites['B'].device_id}/{sites['B'].channel_id}"
        for username in ("root", "ent_BMARK"):  # own walls showing B's camera
            s.add(Wall(user_id=actors[username].user_id, name="walk", channels=[b_camera]))
    secret = services.settings.auth.jwt_secret
    for a in actors.values():
        token = create_token(secret, a.user_id, a.role.value, 3600)
        a.headers = {"Authorization": f"Bearer {token}"}
    app = create_app(services)
    with TestClient(app, raise_server_exceptions=False) as client:
        w = Walk(client, services, sites, orgs, actors, calls, now)
        resp = client.post(
            "/api/supervision/reports",
            json={"kind": "weekly", "period_start": _last_week(services.settings).isoformat()},
            headers=w.as_("root"),
        )
        assert resp.status_code in (200, 201), resp.text
        w.report_id = resp.json()["id"]
        for site, user in (("A", "ent_AMARK"), ("B", "ent_BMARK"), ("C", "op_CMARK")):
            # each site's people in the audit trail (the auditors' lists show them)
            note = {"action": "comment", "note": "seen"}
            url = f"/api/alarms/{sites[site].alarm_id}/actions"
            assert client.post(url, json=note, headers=w.as_(user)).status_code == 200
        yield w


def _last_week(settings: Settings) -> date:
    today = datetime.now(ZoneInfo(settings.server.timezone)).date()
    return today - timedelta(days=today.weekday() + 7)


# --- the walk -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    params: tuple[str, ...]  # path parameters
    query: tuple[str, ...]  # every query parameter
    required: tuple[str, ...]  # the required ones
    body: bool

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.path)

    @property
    def targeted(self) -> bool:
        """Names one of B's objects by a path parameter."""
        return bool(set(self.params) - SHARED_PARAMS - NEUTRAL_PARAMS)


def app_routes(app: FastAPI) -> tuple[list[Route], list[tuple[str, str]]]:
    """Every API route of the app (included routers resolved) with what it takes from the
    OpenAPI description; and the (method, path) of everything else it answers."""
    contexts = getattr(routing, "iter_route_contexts", None)  # FastAPI keeps routers apart
    found = list(contexts(app.routes)) if contexts is not None else list(app.routes)
    spec = app.openapi()["paths"]
    routes, others = [], []
    for r in found:
        original = getattr(r, "original_route", r)
        if isinstance(original, APIWebSocketRoute):
            others.append(("WS", r.path))
            continue
        if not isinstance(original, APIRoute):
            others.append(("ANY", r.path))
            continue
        for method in sorted((r.methods or set()) - {"HEAD"}):
            op = spec.get(r.path, {}).get(method.lower())
            if op is None:
                others.append((method, r.path))
                continue
            params = op.get("parameters", [])
            routes.append(
                Route(
                    method,
                    r.path,
                    tuple(p["name"] for p in params if p["in"] == "path"),
                    tuple(p["name"] for p in params if p["in"] == "query"),
                    tuple(p["name"] for p in params if p["in"] == "query" and p.get("required")),
                    "requestBody" in op,
                )
            )
    return routes, others


def _reached(status: int) -> bool:
    """The request reached its object: answered, or passed on to a device that did not
    answer (the SIP stand-in times out: 502/504)."""
    return status < 400 and status != 500 or status in (409, 410, 502, 504)


def _markers(route: Route, site: SiteObjects) -> set[str]:
    """What shows a site in an answer; in the audit trail its names only (an entry of a C
    user's refused try on B's device names the device, and is C's own record)."""
    return {site.mark} if route.path.startswith("/api/audit") else site.markers()


def _forbidden(w: Walk, actor: Actor, route: Route | None = None) -> set[str]:
    """The markers of the sites outside the actor's subtree (in ``route``'s answers)."""
    return {
        m
        for s in w.sites.values()
        if not w.sees(actor, s)
        for m in (_markers(route, s) if route is not None else s.markers())
    }


def _seen(text: str, markers: set[str]) -> set[str]:
    low = text.lower()
    return {m for m in markers if m.lower() in low}


def _snapshot(db: Database) -> dict[str, list[str]]:
    """Every row of every table but the audit trail (each request adds to it)."""
    with db.session() as s:
        return {
            t.name: sorted(repr(tuple(r)) for r in s.execute(select(t)))
            for t in Base.metadata.sorted_tables
            if t.name != "audit_log"
        }


@dataclass(frozen=True)
class Call:
    route: Route
    url: str
    query: dict[str, Any]
    body: Any


def _plan(
    w: Walk, routes: list[Route], others: list[tuple[str, str]]
) -> tuple[list[Call], list[str]]:
    """A request for every route, filled with B's ids; what cannot be filled is a problem."""
    problems = [
        f"{key}: not an API route the walk knows; say why it is not walked (UNWALKED)"
        for key in others
        if key not in UNWALKED and key not in WALKED_ELSEWHERE
    ]
    b = w.sites["B"]
    bodies = _bodies(w)
    queries = _queries(w.sites)
    calls = []
    for r in routes:
        if r.key in UNWALKED:
            continue
        try:
            url = r.path.format(**{p: _site_fill(r.path, p, b, w.report_id) for p in r.params})
        except KeyError as exc:
            problems.append(f"{r.key}: no value for path parameter {exc} (teach _site_fill)")
            continue
        query = {q: WINDOW[q] for q in r.required if q in WINDOW} | queries.get(r.key, {})
        missing = [q for q in r.required if q not in query]
        if missing:
            problems.append(f"{r.key}: no value for required query {missing} (teach _queries)")
            continue
        body = bodies.get(r.key)
        if r.body and body is None:
            problems.append(f"{r.key}: no request body to send (teach _bodies)")
            continue
        if r.method in MUTATING and not r.targeted and body is None and r.key not in SHARED_CHANGES:
            problems.append(f"{r.key}: a change that names nothing of B's: say how to walk it")
            continue
        calls.append(Call(r, url, query, body))
    return calls, problems


def _ask(w: Walk, actor: Actor, call: Call, query: dict[str, Any] | None = None) -> Any:
    headers = w.as_(actor.username)
    params = call.query if query is None else query
    return w.client.request(
        call.route.method, call.url, params=params, json=call.body, headers=headers
    )


def _outsiders_change_nothing(w: Walk, calls: list[Call], outsiders: list[Actor]) -> list[str]:
    problems = []
    before = _snapshot(w.services.db)
    for call in calls:
        r = call.route
        if r.method not in MUTATING:
            continue
        for actor in outsiders:
            got = _ask(w, actor, call)
            who = f"{r.method} {call.url} as {actor.username}"
            if got.status_code == 500:
                problems.append(f"{who}: {got.status_code} {got.text[:200]}")
            elif r.key in SHARED_CHANGES:
                leaks = _seen(got.text, _forbidden(w, actor, r)) if got.status_code < 300 else set()
                if leaks:
                    problems.append(f"{who}: shows {sorted(leaks)}")
            elif got.status_code not in (400, 403, 404, 422):
                problems.append(f"{who}: {got.status_code}, expected 400/403/404/422")
    after = _snapshot(w.services.db)
    for table, rows in before.items():
        if after[table] != rows:
            gone = sorted(set(rows) - set(after[table]))[:2]
            new = sorted(set(after[table]) - set(rows))[:2]
            problems.append(f"table {table} changed by users outside B: -{gone} +{new}")
    for who, what, args in w.calls:
        actor = w.actors.get(who)
        if actor in outsiders and _seen(args, _forbidden(w, actor)):
            problems.append(f"{who} reached {what}{args}: another site's")
    return problems


def _reads_keep_to_scope(
    w: Walk, calls: list[Call], outsiders: list[Actor], insiders: list[Actor]
) -> tuple[list[str], dict[str, set[str]]]:
    """Every GET as everyone; returns the problems and what root saw of B on each list."""
    problems: list[str] = []
    root_sees: dict[str, set[str]] = {}
    b = w.sites["B"]
    references = [w.actors["root"], w.actors["auditor"]]  # the audit trail is not root's
    for call in calls:
        r = call.route
        if r.method != "GET":
            continue
        variants = [call.query]
        filters = {q: getattr(b, FILTERS[q]) for q in r.query if q in FILTERS}
        if not r.targeted and filters:
            variants.append(call.query | filters)
        for query in variants:
            filtered = query is not call.query
            label = f"GET {call.url}" + (f" ?{sorted(filters)}" if filtered else "")
            reference = next(
                (g for a in references if (g := _ask(w, a, call, query)).status_code != 403),
                None,
            )
            if reference is None or not _reached(reference.status_code):
                status = reference.status_code if reference is not None else 403
                problems.append(f"{label}: root got {status}, the walk proves nothing there")
                continue
            everything = {m for s in w.sites.values() for m in _markers(r, s)}
            seen_by_root = _seen(reference.text, everything)
            if not filtered:
                root_sees[r.path] = seen_by_root & b.markers()
            for actor in [*outsiders, *insiders]:
                problems += _compare(
                    w,
                    r,
                    label,
                    actor,
                    actor in outsiders,
                    reference,
                    seen_by_root,
                    _ask(w, actor, call, query),
                    filtered,
                )
    return problems, root_sees


def _compare(
    w: Walk,
    r: Route,
    label: str,
    actor: Actor,
    outside: bool,
    reference: Any,
    seen_by_root: set[str],
    got: Any,
    filtered: bool,
) -> list[str]:
    who = f"{label} as {actor.username}"
    status = got.status_code
    if status == 500:
        return [f"{who}: {status} {got.text[:200]}"]
    if r.targeted:
        if outside:
            return [] if status in (403, 404) else [f"{who}: {status}, expected 403/404"]
        owner_only = "session_id" in r.params and actor.role != Role.admin
        if status in (403, reference.status_code) or (owner_only and status == 404):
            return []
        return [f"{who}: {status}, root got {reference.status_code}"]
    if filtered and outside and "org_id" in r.query and status not in (403, 404):
        return [f"{who}: {status} when filtered by B's organisation, expected 403/404"]
    if status >= 300:
        return []
    problems = []
    leaks = _seen(got.text, _forbidden(w, actor, r))
    if leaks:
        problems.append(f"{who}: shows {sorted(leaks)}")
    if r.key in SELF_ROUTES or reference.status_code >= 300:
        return problems
    for site in w.sites.values():
        if w.sees(actor, site):
            theirs = _seen(got.text, _markers(r, site))
            expected = seen_by_root & _markers(r, site)
            if theirs != expected:
                problems.append(
                    f"{who}: of {site.key} sees {sorted(theirs)}, root {sorted(expected)}"
                )
    return problems


# Lists that serve B's objects: root must see B there, or the walk is blind on them.
SERVING_B = {
    "/api/devices",
    "/api/device-alarms",
    "/api/device-positions",
    "/api/map",
    "/api/alarms",
    "/api/alarms/export.csv",
    "/api/downloads",
    "/api/gateways",
    "/api/installations",
    "/api/sensors",
    "/api/sensors/live",
    "/api/warnings",
    "/api/warnings/export.csv",
    "/api/contacts",
    "/api/notifications",
    "/api/supervision/live",
    "/api/supervision/daily",
    "/api/supervision/overdue-alarms",
    "/api/uplink/outbox",
    "/api/uplink/receivers",  # B's dead letter's error among the recent ones
    "/api/streams",
    "/api/recordings/status",
    "/api/analyzers/stats",
    "/api/live/sessions",
    "/api/cascade",
    "/api/cascade/{upstream_id}/channels",
    "/api/orgs",
    "/api/users",
    "/api/audit",
    "/api/supervision/reports/{report_id}",
    "/api/intake",
}


def test_every_route_keeps_to_the_callers_subtree(walk: Walk) -> None:
    w = walk
    b = w.sites["B"]
    routes, others = app_routes(w.client.app)  # type: ignore[arg-type]
    calls, problems = _plan(w, routes, others)
    users = [a for a in w.actors.values() if a.org_path is not None]
    outsiders = [a for a in users if not w.sees(a, b)]
    insiders = [a for a in users if w.sees(a, b)]
    # changes first: the audit trail then holds every user's tries for the reads
    problems += _outsiders_change_nothing(w, calls, outsiders)
    read_problems, root_sees = _reads_keep_to_scope(w, calls, outsiders, insiders)
    problems += read_problems
    blind = sorted(p for p in SERVING_B if not root_sees.get(p))
    if blind:
        problems.append(f"root sees nothing of B on {blind}: the walk is blind there")
    # every change reaches B's object as root (deletions last: they take the rest along)
    changes = [c for c in calls if c.route.method in MUTATING]
    changes.sort(key=lambda c: (c.route.method == "DELETE", c.route.path.startswith("/api/dev")))
    for call in changes:
        got = _ask(w, w.actors["root"], call)
        if got.status_code == 403:  # a machine client's route: B's county's client posts
            got = _ask(w, w.actors["uplink_k"], call)
        if not _reached(got.status_code):
            problems.append(
                f"{call.route.method} {call.url} as root: {got.status_code} {got.text[:200]}"
            )
    known = _known_leaks(calls, problems)
    assert not problems, "\n".join(problems)
    fixed = sorted(k for k in KNOWN_LEAKS if not known.get(k))
    assert not fixed, f"{fixed} keep to scope now: take them out of KNOWN_LEAKS"


def _known_leaks(calls: list[Call], problems: list[str]) -> dict[tuple[str, str], list[str]]:
    """Takes the problems of ``KNOWN_LEAKS`` out of ``problems`` (in place), by route."""
    urls = {f"{c.route.method} {c.url} ": c.route.key for c in calls if c.route.key in KNOWN_LEAKS}
    found: dict[tuple[str, str], list[str]] = {}
    for text in list(problems):
        key = next((k for u, k in urls.items() if text.startswith(u)), None)
        key = key or next(
            (k for k, (_, tables) in KNOWN_LEAKS.items() if text.split(" ")[1] in tables), None
        )
        if key is not None and text.split(" ")[0] in (key[0], "table"):
            found.setdefault(key, []).append(text)
            problems.remove(text)
    return found


# --- what the walk found, one by one ------------------------------------------------------


def _token(w: Walk, name: str) -> str:
    return w.actors[name].headers["Authorization"].split()[1]


def test_events_reach_only_their_subtree(walk: Walk) -> None:
    """The WebSocket pushes a user of A its alarm events, never B's; C's operator neither;
    events without an organisation (device and system ones) only to global administrators."""
    w, c = walk, walk.client
    a, b, own_c = w.sites["A"], w.sites["B"], w.sites["C"]

    def handle(site: SiteObjects) -> None:
        url = f"/api/alarms/{site.alarm_id}/actions"
        got = c.post(url, json={"action": "comment", "note": "ws"}, headers=w.as_("root"))
        assert got.status_code == 200, got.text

    def publish(kind: str, **data: Any) -> None:
        assert c.portal is not None
        c.portal.call(functools.partial(w.services.events.publish, kind, **data))

    url = "/api/events/ws?token="
    with (
        c.websocket_connect(url + _token(w, "ent_AMARK")) as ws_a,
        c.websocket_connect(url + _token(w, "op_CMARK")) as ws_c,
        c.websocket_connect(url + _token(w, "root")) as ws_root,
    ):
        for ws in (ws_a, ws_c, ws_root):
            assert ws.receive_json()["kind"] == "hello"
        publish("device.alarm", device_id=b.device_id, org_path=b.org_path)
        publish("device.status", device_id=b.device_id, online=False)  # no organisation
        handle(b)
        handle(a)
        handle(own_c)
        got = ws_a.receive_json()  # B's three came first: A's is the first it may see
        assert (got["kind"], got["data"]["alarm_id"]) == ("alarm.updated", a.alarm_id)
        got = ws_c.receive_json()
        assert (got["kind"], got["data"]["alarm_id"]) == ("alarm.updated", own_c.alarm_id)
        kinds = [ws_root.receive_json()["kind"] for _ in range(5)]
        assert kinds == ["device.alarm", "device.status", *["alarm.updated"] * 3]


def test_a_county_sees_and_manages_only_its_part_of_node_wide_things(walk: Walk) -> None:
    """Viewers, the cascade selection and the weekly report span every organisation: a
    county's people get their county's part, and only a global administrator sets the
    selection."""
    w, c = walk, walk.client
    b, own = w.sites["B"], w.sites["C"]
    viewers = c.get("/api/live/sessions", headers=w.as_("admin_CMARK")).json()
    assert [v["session_id"] for v in viewers["sessions"]] == [own.live_session]
    for name, status in (("admin_CMARK", 404), ("admin_k", 204)):
        got = c.delete(f"/api/live/sessions/{b.live_session}", headers=w.as_(name))
        assert got.status_code == status
    got = c.post(
        f"/api/playback/sessions/{b.playback_session}/control",
        json={"action": "pause"},
        headers=w.as_("admin_CMARK"),
    )
    assert got.status_code == 404
    selection = c.get(f"/api/cascade/{UPSTREAM}/channels", headers=w.as_("op_CMARK")).json()
    assert selection["shared"] == [own.channel_id]
    streams = c.get("/api/cascade", headers=w.as_("op_CMARK")).json()["streams"]
    assert [f["channel_id"] for f in streams] == [own.channel_id]
    body = {"all_channels": False, "channel_ids": [own.channel_id]}
    for name, status in (("admin_CMARK", 403), ("root", 200)):
        got = c.put(f"/api/cascade/{UPSTREAM}/channels", json=body, headers=w.as_(name))
        assert got.status_code == status
    period = {"kind": "weekly", "period_start": _last_week(w.services.settings).isoformat()}
    report = c.post("/api/supervision/reports", json=period, headers=w.as_("admin_CMARK"))
    assert report.status_code == 200
    assert [e["org_id"] for e in report.json()["enterprises"]] == [own.org_id]


def test_a_damaged_segment_fails_the_export_not_the_server(walk: Walk) -> None:
    w, b = walk, walk.sites["B"]
    with w.services.db.session() as s:
        key = s.get_one(RecordingSegment, b.segment_id).object_key
    w.services.objects.put(key, b"\x47" + b"\x00" * 187)  # one broken TS packet
    got = w.client.get(
        f"/api/recordings/{b.channel_id}/export.mp4", params=WINDOW, headers=w.as_("root")
    )
    assert got.status_code == 503 and "export failed" in got.text


def test_the_outbox_is_seen_and_resent_by_site(db_url: str, settings: Settings) -> None:
    """A county administrator lists, counts and re-sends the rows of its sites only (on
    both databases: the site of a row comes from its key or its alarm, in SQL)."""
    db = Database(db_url)
    db.open()
    try:
        services = Services(
            settings=settings, db=db, objects=LocalObjectStore(settings.objects_path)
        )
        with open_walk(services) as w:
            _outbox_by_site(w)
    finally:
        db.close()


def _outbox_by_site(w: Walk) -> None:
    c, sites = w.client, w.sites
    with w.services.db.session() as s:
        relayed = OutboxItem(  # a record relayed from the level below: no site of ours
            receiver="prov",
            table="table4",
            ordering_key="relay:34010200201320000009",
            payload={"ALARM_ID": str(uuid.uuid4())},
            state=OutboxState.dead,
        )
        s.add(relayed)
        s.flush()
        relayed_id = relayed.id
    rows = {k: {*site.outbox_ids, *site.sent_ids} for k, site in sites.items()}

    def listed(name: str, **params: Any) -> set[int]:
        got = c.get("/api/uplink/outbox", params=params, headers=w.as_(name))
        assert got.status_code == 200, got.text
        return {o["id"] for o in got.json()}

    assert listed("root") == {*rows["A"], *rows["B"], *rows["C"], relayed_id}
    assert listed("admin_k") == rows["A"] | rows["B"]
    assert listed("admin_CMARK") == rows["C"]
    assert listed("admin_CMARK", state="dead") == set(sites["C"].outbox_ids)
    status = c.get("/api/uplink/status", headers=w.as_("admin_k")).json()
    assert sum(n["count"] for n in status["outbox"]) == 6 and status["sender"] == {}
    assert c.get("/api/uplink/status", headers=w.as_("root")).json()["sender"]
    for name in ("uplink_k", "op_k", "ent_BMARK"):
        assert c.get("/api/uplink/outbox", headers=w.as_(name)).status_code == 403
    theirs = [*sites["A"].outbox_ids, *sites["C"].outbox_ids]
    got = c.post("/api/uplink/outbox/resend", json={"ids": theirs}, headers=w.as_("admin_k"))
    assert got.json() == {"requeued": 2}  # A's two; C's are not the county's
    got = c.post("/api/uplink/outbox/resend", json={}, headers=w.as_("admin_CMARK"))
    assert got.json() == {"requeued": 2}  # C's own, nothing of B's or the relayed one
    assert listed("root", state="dead") == {*sites["B"].outbox_ids, relayed_id}
