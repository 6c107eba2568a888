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
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Device, Organisation, OrgKind

SITE_KINDS = (OrgKind.enterprise, OrgKind.gas_station)


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
