"""What the SIP parts read from their settings, as read-only protocols.

The application hands its settings objects over whole (``vms.config.SipSettings`` is a
:class:`ServerSettings`, each of its ``upstreams`` an :class:`UpstreamSettings`), so a
setting added there reaches the server without a copy step that could drop it.
:class:`ServerConfig` and :class:`UpstreamConfig` are the same in plain dataclasses, for
tests, benchmarks and standalone use.  :class:`AgentSettings` is the device side's
(``sip.user_agent``): the simulated NVR's config is one, the cascade builds an
:class:`AgentConfig` from its :class:`UpstreamSettings`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class UpstreamSettings(Protocol):
    """A superior platform this node registers with (cascade)."""

    @property
    def server_id(self) -> str: ...  # the superior's 20-digit id
    @property
    def domain(self) -> str: ...  # its 10-digit SIP domain (realm)
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def password(self) -> str: ...
    @property
    def transport(self) -> str: ...  # "udp" / "tcp"
    @property
    def local_id(self) -> str: ...  # our id towards it; "" → our server id
    @property
    def expires_s(self) -> int: ...
    @property
    def keepalive_interval_s(self) -> float: ...
    @property
    def keepalive_misses(self) -> int: ...
    @property
    def retry_s(self) -> float: ...  # wait after a refused or unanswered REGISTER
    @property
    def catalog_group(self) -> int: ...  # catalog items per MESSAGE
    @property
    def media_ip(self) -> str: ...  # our RTP address as it reaches us (answers' c=); "" → default


class ServerSettings(Protocol):
    """The platform side: listening, registry, timeouts, superiors."""

    @property
    def server_id(self) -> str: ...
    @property
    def domain(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def transports(self) -> Sequence[str]: ...
    @property
    def tls_port(self) -> int: ...  # SIP over TLS, when "tls" is among the transports
    @property
    def tls_cert_file(self) -> str: ...  # PEM certificate (chain) for SIP over TLS
    @property
    def tls_key_file(self) -> str: ...
    @property
    def password(self) -> str: ...
    @property
    def auto_create_devices(self) -> bool: ...
    @property
    def allowed_device_ids(self) -> Sequence[str]: ...
    @property
    def keepalive_interval_s(self) -> float: ...
    @property
    def keepalive_misses(self) -> int: ...
    @property
    def nonce_ttl_s(self) -> float: ...
    @property
    def auth_max_failures(self) -> int: ...  # wrong digests per device before a lockout
    @property
    def auth_lockout_s(self) -> float: ...  # the first lockout; doubled per further one
    @property
    def auth_lockout_max_s(self) -> float: ...
    @property
    def tcp_idle_s(self) -> float: ...  # incoming TCP without a registration: closed when silent
    @property
    def max_tcp_connections(self) -> int: ...  # incoming, at most a quarter of the fd limit
    @property
    def max_transactions(self) -> int: ...  # server transactions remembered; beyond: stateless
    @property
    def query_timeout_s(self) -> float: ...
    @property
    def catalog_timeout_s(self) -> float: ...
    @property
    def invite_timeout_s(self) -> float: ...
    @property
    def catalog_on_register(self) -> bool: ...  # DeviceInfo, Catalog, DeviceStatus per connection
    @property
    def max_pending(self) -> int: ...  # REGISTERs handled at once; more get 503 + Retry-After
    @property
    def t1(self) -> float: ...  # RFC 3261 T1, the retransmit base
    @property
    def send_date_header(self) -> bool: ...  # Date on REGISTER 200 (devices set their clock)
    @property
    def upstreams(self) -> Sequence[UpstreamSettings]: ...
    @property
    def subscribe(self) -> Sequence[str]: ...  # SUBSCRIBE on each connection: catalog, alarm, ...
    @property
    def subscribe_expires_s(self) -> int: ...  # asked lifetime; refreshed before it ends
    @property
    def mobile_position_interval_s(self) -> int: ...  # <Interval> of a MobilePosition SUBSCRIBE


@dataclass
class UpstreamConfig:
    server_id: str
    domain: str
    host: str
    port: int
    password: str
    transport: str = "udp"
    local_id: str = ""
    expires_s: int = 3600
    keepalive_interval_s: float = 60.0
    keepalive_misses: int = 3
    retry_s: float = 60.0
    catalog_group: int = 4
    media_ip: str = ""


@dataclass
class ServerConfig:
    server_id: str = "34020000002000000001"
    domain: str = "3402000000"
    host: str = "127.0.0.1"
    port: int = 5060
    transports: tuple[str, ...] = ("udp", "tcp")
    tls_port: int = 5061
    tls_cert_file: str = ""
    tls_key_file: str = ""
    password: str = ""  # no default: devices need their own, or one configured here
    auto_create_devices: bool = True
    allowed_device_ids: tuple[str, ...] = ()
    keepalive_interval_s: float = 60.0
    keepalive_misses: int = 3
    nonce_ttl_s: float = 300.0
    auth_max_failures: int = 5
    auth_lockout_s: float = 60.0
    auth_lockout_max_s: float = 3600.0
    tcp_idle_s: float = 30.0
    max_tcp_connections: int = 4096
    max_transactions: int = 10_000
    query_timeout_s: float = 10.0
    catalog_timeout_s: float = 15.0
    invite_timeout_s: float = 10.0
    catalog_on_register: bool = True
    max_pending: int = 5000
    t1: float = 0.5
    send_date_header: bool = True
    upstreams: tuple[UpstreamConfig, ...] = ()
    subscribe: tuple[str, ...] = ()  # none here: tests and tools opt in (the node's default: two)
    subscribe_expires_s: int = 3600
    mobile_position_interval_s: int = 5


class AgentSettings(Protocol):
    """Who the device is and where its platform is (``NvrConfig`` is one)."""

    @property
    def device_id(self) -> str: ...
    @property
    def server_id(self) -> str: ...
    @property
    def server_domain(self) -> str: ...
    @property
    def server_host(self) -> str: ...
    @property
    def server_port(self) -> int: ...
    @property
    def password(self) -> str: ...
    @property
    def transport(self) -> str: ...  # how SIP reaches the platform: "udp" / "tcp"
    @property
    def expires_s(self) -> int: ...
    @property
    def keepalive_interval_s(self) -> float: ...
    @property
    def keepalive_misses(self) -> int: ...  # unanswered keepalives before registering again
    @property
    def retry_s(self) -> float: ...  # after a refused or unanswered REGISTER (≤ keepalive)
    @property
    def charset(self) -> str: ...  # of the MANSCDP bodies sent
    @property
    def catalog_per_message(self) -> int: ...
    @property
    def record_per_message(self) -> int: ...


@dataclass
class AgentConfig:
    device_id: str
    server_id: str
    server_domain: str
    server_host: str
    server_port: int
    password: str
    transport: str = "udp"
    expires_s: int = 3600
    keepalive_interval_s: float = 60.0
    keepalive_misses: int = 3
    retry_s: float = 60.0
    charset: str = "GB2312"
    catalog_per_message: int = 4
    record_per_message: int = 4
