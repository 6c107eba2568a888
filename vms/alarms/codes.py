"""Alarm-type code lookups per profile, built from ``analyzers.catalog`` (spec §1a, §1b).

The two Shandong guides give different codes for the same behaviour, so a code is only
meaningful together with its profile; never map by name across profiles.
"""

from __future__ import annotations

import re
import uuid

from analyzers.catalog import TABLES
from sip import ids

# profile → {ALARM_TYPE code → Chinese name}
CODE_TABLES: dict[str, dict[str, str]] = {
    profile: {t.code: t.name_zh for t in table.values()} for profile, table in TABLES.items()
}

UUID36_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


def is_valid_code(profile: str, code: str) -> bool:
    return code in CODE_TABLES.get(profile, {})


def code_name(profile: str, code: str) -> str:
    return CODE_TABLES.get(profile, {}).get(code, "")


def is_uuid36(value: str) -> bool:
    if not UUID36_RE.match(value or ""):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def is_video_code(value: str) -> bool:
    """A 20-digit GB/T 28181 code (spec §4.1: 9-digit enterprise + 0132 + 7-digit serial)."""
    return ids.is_gb_id(value)


def is_uplink_video_code(value: str) -> bool:
    """Table 4's VIDEO_CODE form (spec §4.1): 9-digit enterprise code + ``0132`` + 7-digit
    serial, ASCII digits only; stricter than :func:`is_video_code`, which any camera id meets."""
    return is_video_code(value) and value[9:13] == "0132"
