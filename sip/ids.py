"""GB/T 28181 identifiers (Appendix D of the 2016 text, unchanged in 2022), no I/O.

A code is 20 ASCII digits: 1–8 the administrative region (centre) code, 9–10 the
industry, 11–13 the type, 14 the network, 14–20 the serial as the provincial uplink
counts it (``9-digit enterprise + 0132 + 7-digit serial``).  A SIP domain is the first
10.  One type and one check here, instead of a regex per package: ``\\d`` would also
accept non-ASCII digits and ``$`` a trailing newline.
"""

from __future__ import annotations

LENGTH = 20
DOMAIN_LENGTH = 10
# For pydantic/FastAPI ``pattern=`` (their ``\d`` is Unicode-aware too).
PATTERN = r"^[0-9]{20}$"
DOMAIN_PATTERN = r"^[0-9]{10}$"

# Type codes (digits 11–13), Table D.1
DVR = 111
VIDEO_SERVER = 112
ENCODER = 113
DECODER = 114
VIDEO_SWITCH = 115
AUDIO_SWITCH = 116
ALARM_CONTROLLER = 117
NVR = 118
CAMERA = 131
IPC = 132
DISPLAY = 133
ALARM_INPUT = 134
ALARM_OUTPUT = 135
AUDIO_INPUT = 136
AUDIO_OUTPUT = 137
MOBILE_TRANSMITTER = 138
PLATFORM = 200  # centre signalling control server (a SIP server, a superior or lower platform)
WEB_SERVER = 201
MEDIA_SERVER = 202
PROXY_SERVER = 203
SECURITY_SERVER = 204
ALARM_SERVER = 205
DATABASE_SERVER = 206
GIS_SERVER = 207
MANAGEMENT_SERVER = 208
ACCESS_GATEWAY = 209
STORAGE_SERVER = 210
SIGNALLING_GATEWAY = 211
BUSINESS_GROUP = 215
VIRTUAL_ORGANISATION = 216
CENTRE_USER = 300
TERMINAL_USER = 400

FRONT_END_DEVICES = range(111, 131)  # main devices: DVR, NVR, encoders, ...
PERIPHERALS = range(131, 200)  # cameras, IPCs, alarm in/out: a catalog's channels
PLATFORM_DEVICES = range(200, 300)


class InvalidGbId(ValueError):
    """Not a 20-digit GB/T 28181 code; the message says what it got."""


def is_gb_id(value: object) -> bool:
    """20 ASCII digits (no sign, no space, no other script's digits)."""
    return isinstance(value, str) and len(value) == LENGTH and value.isascii() and value.isdigit()


def is_domain(value: object) -> bool:
    """A 10-digit GB/T 28181 SIP domain (the digest realm)."""
    return (
        isinstance(value, str)
        and len(value) == DOMAIN_LENGTH
        and value.isascii()
        and value.isdigit()
    )


def is_civil_code(value: object) -> bool:
    """An administrative division code as catalogs list region nodes: 2, 4, 6 or 8 digits
    (province, city, county, base unit; Appendix D)."""
    return (
        isinstance(value, str)
        and len(value) in (2, 4, 6, 8)
        and value.isascii()
        and value.isdigit()
    )


def is_catalog_id(value: object) -> bool:
    """What a catalog item may be called: a 20-digit id, or a region's civil code."""
    return is_gb_id(value) or is_civil_code(value)


class GbId(str):
    """A validated 20-digit code; a ``str``, so it goes wherever ids go (keys, XML, URIs)."""

    __slots__ = ()

    def __new__(cls, value: str) -> GbId:
        if not is_gb_id(value):
            raise InvalidGbId(f"not a 20-digit GB28181 id: {str(value)[:40]!r}")
        return super().__new__(cls, value)

    @classmethod
    def build(cls, prefix: str, type_code: int, serial: int) -> GbId:
        """``prefix`` (10 digits: region + industry), a type code and a 7-digit serial."""
        if not is_domain(prefix):
            raise InvalidGbId(f"id prefix must be 10 digits, got {prefix!r}")
        if not 0 <= serial < 10**7 or not 100 <= type_code <= 999:
            raise InvalidGbId(f"type {type_code} / serial {serial} out of range")
        return cls(f"{prefix}{type_code:03d}{serial:07d}")

    @property
    def region(self) -> str:
        """Digits 1–8: province, city, county and base unit of the centre."""
        return self[:8]

    @property
    def civil_code(self) -> str:
        """Digits 1–6: the administrative division, as ``<CivilCode>`` carries it."""
        return self[:6]

    @property
    def domain(self) -> str:
        """Digits 1–10: the SIP domain a platform with this id serves."""
        return self[:DOMAIN_LENGTH]

    @property
    def industry(self) -> str:
        """Digits 9–10 (00 social security, 01 public security, ...)."""
        return self[8:10]

    @property
    def type_code(self) -> int:
        """Digits 11–13 (:data:`NVR`, :data:`CAMERA`, :data:`PLATFORM`, ...)."""
        return int(self[10:13])

    @property
    def network(self) -> str:
        """Digit 14: the network identifier (0–4 public security networks, 5 others, ...)."""
        return self[13]

    @property
    def serial(self) -> str:
        """Digits 14–20: the serial of the provincial uplink's ``VIDEO_CODE`` rule."""
        return self[13:]

    @property
    def is_channel(self) -> bool:
        """A peripheral (131–199): what a catalog lists as a video channel (WVP ``isFrontEnd``)."""
        return self.type_code in PERIPHERALS

    @property
    def is_platform(self) -> bool:
        return self.type_code in PLATFORM_DEVICES


def type_code_of(value: str) -> int | None:
    """The type code of a valid id, None for anything else (tolerant: catalog items)."""
    return int(value[10:13]) if is_gb_id(value) else None
