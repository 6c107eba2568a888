"""Who reports upward: one analysis device per enterprise or gas station.

A county node analyses the cameras of many sites, and the province files Tables 2-4 by
the site's ``COMPANY_CODE`` and the analysis device's ``DEVICE_ID`` / ``DEVICE_CODE``.  One
code for all (and the first enterprise's ``COMPANY_CODE``) misfiles every other site, and a
shared default code makes two installs one device.  So each site is its own device:

- ``COMPANY_CODE``: the site's code (``uplink.company_code`` overrides it: a node serving
  one site whose code is not in its organisation row);
- ``DEVICE_CODE``: the site's ``uplink_device_code``, else ``analyzers.device_code`` (a node
  serving one site), else ``AI-<site code>-<install>``, unique to this install;
- ``DEVICE_ID``: a uuid5 of this install's DEVICE_ID and the site, stable across restarts.

A camera's ``VIDEO_CODE`` (Table 4, spec §4.1) must be the code the province already knows it
by: 9-digit enterprise code + ``0132`` + 7-digit serial.  It is the channel's
``uplink_video_code`` when set, else its channel ID when that has this form; a camera with
neither is not reportable (refused when its analysis is switched on, never invented).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Channel, Device, Organisation, OrgKind
from vms.alarms import codes

SITE_KINDS = (OrgKind.enterprise, OrgKind.gas_station)
ENTERPRISE_CODE_RE = re.compile(r"[0-9]{9}")


@dataclass(frozen=True)
class SiteIdentity:
    org_id: int
    company_code: str  # "" when the site has no code: Tables 2 and 3 cannot be sent for it
    device_id: str
    device_code: str


def derived_device_code(install_id: str, org: Organisation) -> str:
    """``AI-<site code or org id>-<first 8 of the install's id>``, cut to the 36 allowed."""
    site = org.code or f"org{org.id}"
    return f"AI-{site}-{install_id[:8]}"[:36]


def site_identity(
    install_id: str, org: Organisation, device_code: str = "", company_code: str = ""
) -> SiteIdentity:
    """The identity of ``org``'s analysis device (``device_code``, ``company_code``: the
    node-wide settings, empty when not configured)."""
    code = org.uplink_device_code or device_code or derived_device_code(install_id, org)
    did = str(uuid.uuid5(uuid.UUID(install_id), f"site:{org.id}"))
    return SiteIdentity(org.id, company_code or org.code, did, code)


def sites(session: Session) -> list[Organisation]:
    """Enterprises and gas stations with at least one device: the sites this node reports."""
    with_devices = select(Device.org_id).where(Device.org_id.is_not(None)).distinct()
    return list(
        session.scalars(
            select(Organisation)
            .where(Organisation.kind.in_(SITE_KINDS), Organisation.id.in_(with_devices))
            .order_by(Organisation.id)
        )
    )


def enterprise_code(org: Organisation | None) -> str:
    """The 9-digit code a camera's VIDEO_CODE starts with: its site's code when the camera
    belongs to an enterprise or gas station whose code has 9 digits; "" when unknown (a
    park's or county's camera, a site coded otherwise), and then only the form is checked."""
    if org is None or org.kind not in SITE_KINDS:
        return ""
    return org.code if ENTERPRISE_CODE_RE.fullmatch(org.code or "") else ""


def video_code_problem(code: str, org: Organisation | None) -> str:
    """Why ``code`` cannot be the VIDEO_CODE of a camera of ``org``; "" when it can."""
    if not codes.is_uplink_video_code(code):
        return (
            f"{code!r} is not a VIDEO_CODE: 20 digits, the 9-digit enterprise code, "
            "then 0132, then a 7-digit serial"
        )
    prefix = enterprise_code(org)
    if prefix and code[:9] != prefix:
        return f"{code!r} does not start with the enterprise's code {prefix}"
    return ""


def camera_video_code(channel_id: str, override: str, org: Organisation | None) -> str:
    """The camera's effective VIDEO_CODE; "" when it has none (not reportable).  An override
    that no longer fits (the site was recoded) is not replaced by the channel ID: whoever set
    it said the province knows the camera by that code, not by its ID."""
    code = override or channel_id
    return "" if video_code_problem(code, org) else code


def channel_video_code(channel: Channel, override: str | None = None) -> str:
    """:func:`camera_video_code` of a channel row (through its device's organisation);
    ``override``: the ``uplink_video_code`` it is about to get, when not the stored one."""
    org = channel.device.org if channel.device is not None else None
    code = channel.uplink_video_code if override is None else override
    return camera_video_code(channel.channel_id, code, org)


def not_reportable_reason(channel: Channel, override: str | None = None) -> str:
    """What to fix so the camera's alarms can go upward; "" when they can."""
    if channel_video_code(channel, override):
        return ""
    org = channel.device.org if channel.device is not None else None
    prefix = enterprise_code(org)
    form = f"{prefix or 'the 9-digit enterprise code'} + 0132 + a 7-digit serial"
    code = channel.uplink_video_code if override is None else override
    if code:
        why = f"its uplink_video_code {code} is not {form}"
    else:
        why = f"its channel ID is not {form}"
    device = channel.device.device_id if channel.device is not None else "{device_id}"
    return (
        f"camera {channel.channel_id} has no VIDEO_CODE the province knows ({why}): set "
        f"uplink_video_code (PATCH /api/devices/{device}/channels/{channel.channel_id}) to "
        "the camera's code in the provincial system"
    )


def reports_alarms(analysis: object) -> bool:
    """A stored analysis config that raises alarms: switched on with a rule switched on."""
    if not isinstance(analysis, dict) or not analysis.get("enabled"):
        return False
    rules = analysis.get("rules") or []
    return any(isinstance(r, dict) and r.get("enabled", True) for r in rules)


def unreportable_cameras(session: Session, org: Organisation) -> list[Channel]:
    """``org``'s cameras with analysis on that have no VIDEO_CODE (flagged on org changes)."""
    channels = session.scalars(
        select(Channel).join(Device, Channel.device_pk == Device.id).where(Device.org_id == org.id)
    )
    return [c for c in channels if reports_alarms(c.analysis) and not channel_video_code(c)]
