"""One typed settings object for the whole server.

Values come, highest priority first, from ``VMS_*`` environment variables
(nested with ``__``, e.g. ``VMS_SIP__PORT=5070``), then from a TOML file
(``VMS_CONFIG`` or ``vms.toml`` in the working directory), then the defaults
below.  Every field is documented in the README; keep the two in step.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from analyzers.settings import AnalyzerSettings
from sip import ids
from vms.uplink.timing import parse_clock


def _gb_id(v: str) -> str:
    if not ids.is_gb_id(v):
        raise ValueError("must be a 20-digit GB28181 id")
    return v


def _gb_domain(v: str) -> str:
    if not ids.is_domain(v):
        raise ValueError("must be 10 digits")
    return v


class Section(BaseModel):
    """A settings section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class ServerSettings(Section):
    """HTTP API and web UI."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = False
    timezone: str = "Asia/Shanghai"
    data_dir: Path = Path("var")
    # guard rails of the HTTP listener (vms/http_server.py) and of requests (api/limits.py)
    max_connections: int = Field(1024, ge=8)  # open at once; at most 1/4 of the fd limit
    header_timeout_s: float = Field(10.0, gt=0)  # a request's headers must arrive by then
    keepalive_timeout_s: float = Field(5.0, gt=0)  # an idle keep-alive connection is closed
    body_timeout_s: float = Field(60.0, gt=0)  # a request's whole body must arrive by then
    send_timeout_s: float = Field(60.0, gt=0)  # a client not reading its response is dropped
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)  # larger request bodies → 413
    max_requests: int = Field(32, ge=1)  # requests handled at once, all callers; more → 503
    max_requests_per_user: int = Field(8, ge=1)  # at once per user (or address); more → 429
    # HTTPS for the API and the web UI: PEM certificate (chain) and key, both or neither
    tls_cert_file: str = ""
    tls_key_file: str = ""
    # the map page's slippy-map tiles, e.g. "https://tiles.example/{z}/{x}/{y}.png" (a tile
    # server inside the closed network); "" → points drawn on a plain plane, no tiles fetched
    map_tile_url: str = ""
    map_tile_attribution: str = ""  # shown in the map's corner, as the tile licence asks

    @field_validator("map_tile_url")
    @classmethod
    def _check_tile_url(cls, v: str) -> str:
        placed = all(k in v for k in ("{z}", "{x}", "{y}"))
        if v and not (re.match(r"^(https?://|/)", v) and placed):
            raise ValueError("must be an http(s):// or /path URL with {z}, {x} and {y}")
        return v

    @model_validator(mode="after")
    def _check_tls(self) -> ServerSettings:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("tls_cert_file and tls_key_file go together: set both or neither")
        if self.tls_cert_file:
            check_tls_pair(self.tls_cert_file, self.tls_key_file)
        return self


def check_tls_pair(cert_file: str, key_file: str) -> None:
    """The certificate and key load and belong together; else start-up stops naming them."""
    import ssl

    for path in (cert_file, key_file):
        if not Path(path).is_file():
            raise ValueError(f"{path} does not exist")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"certificate {cert_file} and key {key_file} do not load: {exc}") from None


class DatabaseSettings(Section):
    """SQLite file by default; PostgreSQL in production."""

    url: str = ""  # empty → sqlite file in server.data_dir
    connect_timeout_s: float = Field(5.0, gt=0)
    echo: bool = False
    pool_size: int = Field(20, ge=1)  # connections kept open
    max_overflow: int = Field(20, ge=0)  # opened beyond pool_size under load, closed after
    pool_timeout_s: float = Field(10.0, gt=0)  # wait for a free connection, then 503


class ObjectStoreSettings(Section):
    """Where images, recordings and exports live."""

    backend: Literal["local", "s3"] = "local"
    path: Path | None = None  # local backend; empty → server.data_dir/objects
    endpoint: str = ""  # s3 backend, host:port
    access_key: str = ""
    secret_key: str = ""
    bucket: str = "vms"
    secure: bool = False
    region: str = "us-east-1"


class AuthSettings(Section):
    """Login, tokens and the bootstrap administrator."""

    jwt_secret: str = ""  # empty → a random secret stored in data_dir (tokens survive restarts)
    token_ttl_s: int = Field(8 * 3600, gt=0)
    admin_username: str = ""  # bootstrap admin created at start if both are set
    admin_password: str = ""
    login_max_failures: int = Field(5, ge=1)  # per username+client in login_window_s
    login_window_s: int = Field(300, gt=0)
    lockout_failures: int = Field(10, ge=1)  # consecutive failures, any client, lock the account
    lockout_s: int = Field(900, gt=0)
    password_min_length: int = Field(10, ge=8, le=128)
    password_max_age_days: int = Field(90, ge=0)  # 0 → passwords never expire

    @field_validator("jwt_secret")
    @classmethod
    def _check_secret(cls, v: str) -> str:
        if v and len(v) < 32:
            raise ValueError("must be empty (generated) or at least 32 characters")
        return v


class SipUpstreamSettings(Section):
    """A superior platform we register with (cascade)."""

    server_id: str  # the superior's 20-digit id
    domain: str  # its 10-digit SIP domain (realm)
    host: str
    port: int = Field(5060, ge=1, le=65535)
    password: str = ""
    transport: Literal["udp", "tcp"] = "udp"
    local_id: str = ""  # our id towards it; empty → sip.server_id
    expires_s: int = Field(3600, ge=60)
    keepalive_interval_s: float = Field(60.0, gt=0)
    keepalive_misses: int = Field(3, ge=1)
    retry_s: float = Field(60.0, gt=0)  # wait after a refused or unanswered REGISTER
    catalog_group: int = Field(4, ge=1, le=100)  # catalog items per MESSAGE to it
    media_ip: str = ""  # our RTP address as it reaches us (SDP c= of answers); "" → media.sdp_ip

    @field_validator("server_id")
    @classmethod
    def _check_server_id(cls, v: str) -> str:
        return _gb_id(v)

    @field_validator("local_id")
    @classmethod
    def _check_local_id(cls, v: str) -> str:
        return v and _gb_id(v)

    @field_validator("domain")
    @classmethod
    def _check_domain(cls, v: str) -> str:
        return _gb_domain(v)


class SipSettings(Section):
    """GB28181 signalling (platform side)."""

    enabled: bool = True
    host: str = "127.0.0.1"  # bind address
    port: int = Field(5060, ge=0, le=65535)  # 0 → any free port (tests)
    transports: list[Literal["udp", "tcp", "tls"]] = ["udp", "tcp"]
    tls_port: int = Field(5061, ge=0, le=65535)  # SIP over TLS when "tls" is a transport
    tls_cert_file: str = ""  # PEM certificate (chain) and key for SIP over TLS
    tls_key_file: str = ""
    server_id: str = "34020000002000000001"
    domain: str = "3402000000"
    password: str = ""  # global device password when a device has none; no default
    auto_create_devices: bool = True  # unknown devices with `password` become 'pending'
    allowed_device_ids: list[str] = []  # empty → any
    keepalive_interval_s: float = Field(60.0, gt=0)
    keepalive_misses: int = Field(3, ge=1)
    nonce_ttl_s: float = Field(300.0, gt=0, le=3600)
    auth_max_failures: int = Field(5, ge=1, le=1000)  # wrong digests per device → lockout
    auth_lockout_s: float = Field(60.0, gt=0)  # first lockout; doubled per further one
    auth_lockout_max_s: float = Field(3600.0, gt=0)
    tcp_idle_s: float = Field(30.0, gt=0)  # TCP without a registration, silent → closed
    max_tcp_connections: int = Field(4096, ge=1)  # incoming; at most 1/4 of the fd limit
    max_transactions: int = Field(10_000, ge=100)  # remembered; beyond: handled statelessly
    query_timeout_s: float = Field(10.0, gt=0)  # wait for a MANSCDP answer (DeviceInfo, ...)
    catalog_timeout_s: float = Field(15.0, gt=0)  # multi-message Catalog/RecordInfo: keep partial
    invite_timeout_s: float = Field(10.0, gt=0)  # no final answer to INVITE → CANCEL, error
    catalog_on_register: bool = True  # DeviceInfo, Catalog, DeviceStatus on each (re)connection
    max_pending: int = Field(5000, ge=1)  # REGISTERs handled at once; more get 503 + Retry-After
    t1: float = Field(0.5, gt=0, le=10)  # RFC 3261 T1: retransmit base over UDP (RTT estimate)
    send_date_header: bool = True  # Date on REGISTER 200 OK (devices set their clock from it)
    upstreams: list[SipUpstreamSettings] = []  # superior platforms (cascade)
    # SUBSCRIBE to each device on every (re)connection; refreshed before expiry
    subscribe: list[Literal["catalog", "alarm", "mobile_position"]] = ["catalog", "alarm"]
    subscribe_expires_s: int = Field(3600, ge=10, le=86400)
    mobile_position_interval_s: int = Field(5, ge=1, le=3600)

    @field_validator("server_id")
    @classmethod
    def _check_server_id(cls, v: str) -> str:
        return _gb_id(v)

    @field_validator("domain")
    @classmethod
    def _check_domain(cls, v: str) -> str:
        return _gb_domain(v)

    @field_validator("allowed_device_ids")
    @classmethod
    def _check_allowed(cls, v: list[str]) -> list[str]:
        return [_gb_id(d) for d in v]

    @field_validator("password")
    @classmethod
    def _check_password(cls, v: str) -> str:
        return check_device_password(v) if v else v

    @model_validator(mode="after")
    def _check_tls(self) -> SipSettings:
        if "tls" in self.transports:
            if not (self.tls_cert_file and self.tls_key_file):
                raise ValueError('transport "tls" needs tls_cert_file and tls_key_file')
            check_tls_pair(self.tls_cert_file, self.tls_key_file)
        return self


# Passwords printed in NVR manuals and SDK samples: an attacker tries these first.
WELL_KNOWN_PASSWORDS = frozenset(
    {"12345678", "123456789", "1234567890", "88888888", "11111111", "00000000", "password"}
)
MIN_DEVICE_PASSWORD = 8


def check_device_password(v: str) -> str:
    """A SIP digest password worth having: 8+ characters and not a vendor default."""
    if len(v) < MIN_DEVICE_PASSWORD:
        raise ValueError(f"must have at least {MIN_DEVICE_PASSWORD} characters")
    if v.lower() in WELL_KNOWN_PASSWORDS:
        raise ValueError("is a well-known default password; choose another")
    return v


class MediaSettings(Section):
    """RTP receive, stream hub."""

    sdp_ip: str = "127.0.0.1"  # the address devices can reach us at (goes into SDP c=)
    bind_host: str = "127.0.0.1"
    rtp_port_min: int = Field(30000, ge=1024, le=65535)
    rtp_port_max: int = Field(30500, ge=1024, le=65535)
    transport: Literal["udp", "tcp-passive", "tcp-active"] = "udp"
    stream_timeout_s: float = Field(10.0, gt=0)
    idle_close_s: float = Field(30.0, ge=0)  # BYE after the last consumer left
    keep_audio: bool = True  # demux G.711A/U and AAC from PS for recording and live viewers
    # RTP only from the device's signalling or SDP c= host ("device"), or from anywhere ("any");
    # either way the first valid source is pinned and any other one dropped
    rtp_source: Literal["device", "any"] = "device"

    @model_validator(mode="after")
    def _check_range(self) -> MediaSettings:
        if self.rtp_port_min > self.rtp_port_max:
            raise ValueError("rtp_port_min must be <= rtp_port_max")
        return self


class RecordingSettings(Section):
    """Continuous recording to the object store."""

    enabled: bool = True
    segment_s: float = Field(20.0, ge=2, le=600)
    retention_hours: float = Field(24.0, gt=0)
    quota_gb: float = Field(0.0, ge=0)  # 0 → no quota
    spool_dir: Path | None = None  # empty → server.data_dir/spool (local, before upload)
    max_jump_s: float = Field(5.0, gt=0)  # a PTS jump larger than this closes the run as a gap
    queue_frames: int = Field(512, ge=16)  # per-channel writer queue; overflow → gap
    refresh_s: float = Field(30.0, gt=0)  # re-read which channels to record
    retention_interval_s: float = Field(60.0, gt=0)  # how often retention runs
    max_export_s: float = Field(3600.0, gt=0)  # longest clip one export may cover
    playback_ttl_hours: float = Field(2.0, gt=0)  # NVR playback copies kept this long
    audio: bool = True  # record the camera's audio (AAC as is, G.711 transcoded to AAC)
    download_max_s: float = Field(14400.0, gt=0)  # longest range one download job may cover
    download_concurrent: int = Field(2, ge=1, le=64)  # download jobs running at once; more wait
    download_retries: int = Field(3, ge=0, le=20)  # resumed INVITEs after a stall, per job
    download_retry_s: float = Field(5.0, gt=0)  # wait before the first of them (then doubled)
    download_ttl_hours: float = Field(72.0, gt=0)  # finished download MP4s kept this long


class UplinkReceiver(Section):
    """One upward receiver (a provincial system)."""

    name: str
    table2_url: str = ""
    table3_url: str = ""
    table4_url: str = ""
    format: Literal["multipart", "json"] = "multipart"
    auth_header: str = "Authorization"
    token: str = ""
    verify_tls: bool = True  # false is logged as a warning at every start
    ca_file: str = ""  # PEM CA bundle of a receiver with a private CA (verified against it)
    timeout_s: float = Field(10.0, gt=0)

    @field_validator("table2_url", "table3_url", "table4_url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        return check_http_url(v) if v else v

    @field_validator("ca_file")
    @classmethod
    def _check_ca(cls, v: str) -> str:
        if v and not Path(v).is_file():
            raise ValueError(f"{v} does not exist")
        return v


def check_http_url(v: str) -> str:
    """An http(s) URL with a host; anything else stops start-up naming the setting."""
    from urllib.parse import urlsplit

    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return v


class UplinkSettings(Section):
    """Provincial uplink (Tables 2, 3, 4) through the durable outbox."""

    receivers: list[UplinkReceiver] = []
    dead_after_s: float = Field(7 * 24 * 3600.0, gt=0)
    retry_base_s: float = Field(1.0, gt=0)
    retry_max_s: float = Field(300.0, gt=0)
    poll_s: float = Field(1.0, gt=0)  # sender re-checks the outbox at least this often
    concurrency: int = Field(8, ge=1)  # cameras posted in parallel per receiver
    table2_at: str = "00:10"  # local HH:MM: Table 2 daily then (and on change, and after a gap)
    table3_interval_s: float = Field(600.0, gt=0)  # Table 3 period, on the clock from midnight
    image_max_bytes: int = Field(4_000_000, ge=65_536, le=64 * 1024 * 1024)  # ALARM_IMAGE cap
    # COMPANY_CODE for every site (a node serving one site); empty → each site's own code
    company_code: str = Field("", max_length=36)
    device_name: str = Field("VMS AI analysis server", max_length=100)  # DEVICE_NAME
    device_desc: str = Field("", max_length=500)  # DEVICE_DESC
    webhooks: list[str] = []  # URLs that get a JSON POST for each alarm and clear (best-effort)
    webhook_token: str = ""  # sent as "Authorization: Bearer <token>" when set
    keep_sent_s: float = Field(30 * 24 * 3600.0, gt=0)  # delivered outbox rows kept this long
    relay_intake: bool = True  # Tables 2/3/4 received from below are passed on to receivers

    @field_validator("webhooks")
    @classmethod
    def _check_webhooks(cls, v: list[str]) -> list[str]:
        return [check_http_url(u) for u in v]

    @field_validator("table2_at")
    @classmethod
    def _check_table2_at(cls, v: str) -> str:
        parse_clock(v)
        return v


class LiveSettings(Section):
    """WebRTC live view: the camera's H.264 forwarded to browsers without re-encoding."""

    enabled: bool = True
    ice_addresses: list[str] = ["127.0.0.1"]  # host candidates we offer; empty → all but loopback
    stun_urls: list[str] = []  # e.g. "stun:stun.example.org:3478"; empty → none (closed networks)
    max_sessions: int = Field(64, ge=1)  # concurrent browser viewers on this node
    max_sessions_per_user: int = Field(32, ge=1)  # e.g. two browsers with a 16-tile wall
    connect_timeout_s: float = Field(20.0, gt=0)  # a peer not connected by then is closed
    viewer_queue: int = Field(120, ge=8)  # frames buffered per viewer before skipping to a keyframe
    audio: bool = True  # send the camera's G.711 (PCMA/PCMU) as is to viewers who offer audio

    @field_validator("ice_addresses")
    @classmethod
    def _check_ice_addresses(cls, v: list[str]) -> list[str]:
        import ipaddress

        for a in v:
            try:
                ip = ipaddress.ip_address(a)
            except ValueError:
                raise ValueError(f"{a!r} is not an IP address") from None
            if ip.is_unspecified:
                raise ValueError(f"{a} is not an address browsers can reach; name the interface's")
        return v

    @field_validator("stun_urls")
    @classmethod
    def _check_stun_urls(cls, v: list[str]) -> list[str]:
        for url in v:
            if not url.startswith(("stun:", "stuns:")):
                raise ValueError(f"{url!r} must be a stun: or stuns: URL")
        return v


class IngestSettings(Section):
    """Sensor readings: collectors, batching, upload periods, retention (spec/sensors.md)."""

    enabled: bool = True
    batch_max: int = Field(5000, ge=1)  # readings per database write
    flush_interval_s: float = Field(0.5, gt=0)  # write buffered readings at least this often
    queue_max: int = Field(200_000, ge=100)  # readings buffered before new ones are refused
    normal_period_s: float = Field(300.0, gt=0)  # ≤ 5 min between readings normally
    alarm_period_s: float = Field(10.0, gt=0)  # ≤ 10 s while the point is in warning
    period_tolerance: float = Field(0.2, ge=0)  # fraction over the period before "slow"
    offline_after_s: float = Field(600.0, gt=0)  # no reading for this long → point offline
    future_tolerance_s: float = Field(60.0, ge=0)  # readings further in the future are refused
    retention_days: float = Field(30.0, gt=0)  # raw readings kept this long
    aggregate_retention_days: float = Field(400.0, gt=0)  # 1-min/1-h aggregates kept this long
    retention_interval_s: float = Field(3600.0, gt=0)  # how often retention runs
    refresh_s: float = Field(10.0, gt=0)  # re-read gateways and points from the database
    push_max_skew_s: float = Field(300.0, gt=0)  # push batch clock vs ours
    push_max_rows: int = Field(10_000, ge=1)  # rows in one push batch
    poll_timeout_s: float = Field(3.0, gt=0)  # Modbus/OPC UA request timeout
    reconnect_max_s: float = Field(30.0, gt=0)  # longest back-off between reconnects


class WarningSettings(Section):
    """Warning levels, escalation timers and notification channels (spec/sensors.md §4)."""

    enabled: bool = True
    tick_s: float = Field(5.0, gt=0)  # how often escalation timers are checked
    downgrade_hold_s: float = Field(30.0, ge=0)  # a lower level must hold this long to count
    deadband: float = Field(0.02, ge=0, lt=1)  # hysteresis, fraction of the range (or value)
    webhooks: list[str] = []  # URLs that get every warning event as JSON (best-effort + retry)
    webhook_token: str = ""  # "Authorization: Bearer <token>" for those webhooks
    smtp_host: str = ""  # e-mail notices; empty → no e-mail
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = "vms@localhost"
    smtp_starttls: bool = False
    smtp_timeout_s: float = Field(10.0, gt=0)
    sms_url: str = ""  # HTTP SMS gateway (JSON POST {"to", "text"}); empty → no SMS
    sms_token: str = ""  # sent as "Authorization: Bearer <token>"
    notify_retry_base_s: float = Field(5.0, gt=0)
    notify_retry_max_s: float = Field(600.0, gt=0)
    notify_dead_after_s: float = Field(86400.0, gt=0)  # a notice still failing is a dead letter
    snapshot_timeout_s: float = Field(5.0, gt=0)  # wait this long for a linked camera's keyframe


class SupervisionSettings(Section):
    """Offline supervision and reports (spec/sensors.md §6)."""

    enabled: bool = True
    report_time: str = "08:00"  # local time the weekly (Monday) and monthly (1st) reports run
    offline_rate_limit: float = Field(0.05, ge=0, le=1)  # daily-average offline rate → notice
    interview_days: float = Field(2.0, gt=0)  # offline longer → interview list
    area_interview_days: float = Field(5.0, gt=0)  # offline longer → enterprise and area
    overdue_alarm_hours: float = Field(24.0, gt=0)  # video alarm or warning open longer: overdue
    interval_s: float = Field(300.0, gt=0)  # how often daily offline figures are brought up to date
    frequent_warnings: int = Field(10, ge=1)  # non-blue warnings a month → "frequent": key target
    frequent_major_warnings: int = Field(3, ge=1)  # orange/red warnings a month → "frequent"

    @field_validator("report_time")
    @classmethod
    def _check_report_time(cls, v: str) -> str:
        m = re.fullmatch(r"(\d{1,2}):(\d{2})", v)
        if not m or int(m.group(2)) > 59:
            raise ValueError("must be HH:MM")
        if (int(m.group(1)), int(m.group(2))) >= (11, 0):
            raise ValueError("reports are due before 11:00 (spec/sensors.md §6)")
        return v


class ClusterSettings(Section):
    """Scale-out (issue 14): this node's role and the bus between roles.

    ``role`` "all" is one process doing everything (the default, ``make demo``); "control"
    runs SIP, the API, alarms, uplink and the sensor side; "media" pulls, records and relays
    the cameras it holds a lease on; "analyzer" analyses the cameras it holds a lease on,
    from keyframes the media nodes put on the bus.  Roles other than "all" need PostgreSQL
    (``database.url``), a shared object store and ``nats_url``.
    """

    role: Literal["all", "control", "media", "analyzer"] = "all"
    node_name: str = ""  # unique per node; empty → "<role>-<hostname>-<pid>"
    nats_url: str = "nats://127.0.0.1:4222"
    heartbeat_s: float = Field(2.0, gt=0)  # node row and leases renewed this often
    lease_ttl_s: float = Field(6.0, gt=0)  # a node silent this long is dead; its cameras move
    media_host: str = ""  # this media node's IP in SDP c=; empty → media.sdp_ip
    frame_queue: int = Field(8, ge=1)  # keyframes an analyzer holds per camera before dropping
    request_timeout_s: float = Field(10.0, gt=0)  # a media node's SIP request to the control node

    @model_validator(mode="after")
    def _check_ttl(self) -> ClusterSettings:
        if self.lease_ttl_s < 2 * self.heartbeat_s:
            raise ValueError("cluster.lease_ttl_s must be at least 2 × cluster.heartbeat_s")
        return self


class DemoSettings(Section):
    """What ``vms demo`` adds to ``vms serve``."""

    devices: int = Field(1, ge=0)
    channels: int = Field(4, ge=1)
    video: Path | None = None  # NVR clip; empty → opencv-doc's vtest.avi, else a pattern
    sensors: bool = True  # also run a simulated sensor gateway with a scripted gas-leak ramp


class Settings(BaseSettings):
    """The whole configuration.  See README.md, section Settings."""

    model_config = SettingsConfigDict(
        env_prefix="VMS_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    objects: ObjectStoreSettings = ObjectStoreSettings()
    auth: AuthSettings = AuthSettings()
    sip: SipSettings = SipSettings()
    media: MediaSettings = MediaSettings()
    recording: RecordingSettings = RecordingSettings()
    analyzers: AnalyzerSettings = AnalyzerSettings()
    uplink: UplinkSettings = UplinkSettings()
    live: LiveSettings = LiveSettings()
    ingest: IngestSettings = IngestSettings()
    warning: WarningSettings = WarningSettings()
    supervision: SupervisionSettings = SupervisionSettings()
    demo: DemoSettings = DemoSettings()
    cluster: ClusterSettings = ClusterSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = os.environ.get("VMS_CONFIG", "vms.toml")
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_path),
        )

    @model_validator(mode="after")
    def _check_request_limits(self) -> Settings:
        pool = self.database.pool_size + self.database.max_overflow
        if self.server.max_requests >= pool:
            raise ValueError(
                f"server.max_requests ({self.server.max_requests}) must be below "
                f"database.pool_size + database.max_overflow ({pool}): components need "
                "connections while the API is saturated"
            )
        if self.server.max_requests_per_user > self.server.max_requests:
            raise ValueError(
                f"server.max_requests_per_user ({self.server.max_requests_per_user}) must not "
                f"exceed server.max_requests ({self.server.max_requests})"
            )
        return self

    # Derived paths: one place decides where embedded defaults live.
    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{self.server.data_dir / 'vms.db'}"

    @property
    def objects_path(self) -> Path:
        return self.objects.path or self.server.data_dir / "objects"

    @property
    def models_path(self) -> Path:
        return self.analyzers.models_dir or self.server.data_dir / "models"


class ConfigError(Exception):
    """A setting is invalid; the message is one line naming it."""


def load_settings(**overrides: object) -> Settings:
    """Build Settings, turning validation errors into one clear line per setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    except SettingsError as exc:  # a complex value (list, section) that is not JSON
        raise ConfigError(_format_settings_error(exc)) from None
    except (tomllib.TOMLDecodeError, OSError) as exc:  # the TOML file is broken or unreadable
        path = os.environ.get("VMS_CONFIG", "vms.toml")
        reason = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise ConfigError(f"invalid config file {path} [VMS_CONFIG]: {reason}") from None


def _format_settings_error(exc: SettingsError) -> str:
    match = re.search(r'field "([^"]+)"', str(exc))
    field = match.group(1) if match else "?"
    prefix = f"VMS_{field.upper()}"
    names = sorted(
        k for k in os.environ if k.upper() == prefix or k.upper().startswith(prefix + "__")
    )
    cause = str(exc.__cause__).splitlines()[0] if exc.__cause__ else str(exc)
    return (
        f"invalid setting {field} [{', '.join(names) or prefix}]: not a valid JSON value ({cause})"
    )


def format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        if not err["loc"]:  # a rule across sections: its message names the settings
            parts.append(f"invalid settings: {err['msg'].removeprefix('Value error, ')}")
            continue
        name = ".".join(str(p) for p in err["loc"])
        env = "VMS_" + "__".join(str(p) for p in err["loc"]).upper()
        value = err.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        parts.append(f"invalid setting {name} [{env}]: {err['msg']}{shown}")
    return "; ".join(parts)
