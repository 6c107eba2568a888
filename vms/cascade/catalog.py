"""The catalog a superior sees: our organisation tree as GB/T 28181 regions and groups.

Organisations of kind province / city / county with an administrative code become
civil-code region items (``37``, ``3701``, ``370102``: GB/T 2260 cut to the level); parks,
enterprises and gas stations become virtual organisations (type 216) inside one business
group (type 215) of this platform; each shared channel hangs under its device's
organisation (``ParentID`` the 216, ``CivilCode`` the county, ``BusinessGroupID`` the 215).
Only what leads to a shared channel is listed, so a superior never sees empty branches.
:func:`build_catalog` is pure; :func:`shared_channels` reads the database.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from sip import ids
from sip.manscdp import CatalogItem
from storage.models import Channel, Device, DeviceStatus, Organisation, OrgKind

from .selection import Selection, selection_of

REGION_DIGITS = {OrgKind.province: 2, OrgKind.city: 4, OrgKind.county: 6}
GROUP_KINDS = (OrgKind.park, OrgKind.enterprise, OrgKind.gas_station)
GROUP_NAME = "企业视频监控"  # the one business group: enterprise and gas-station video
GROUP_SERIAL = 1


@dataclass(frozen=True)
class OrgNode:
    id: int
    parent_id: int | None
    kind: OrgKind
    name: str
    code: str


@dataclass(frozen=True)
class SharedChannel:
    """A channel a superior may get, with its device and the device's organisation."""

    device_id: str
    org_id: int | None
    item: CatalogItem  # as the device described it (ParentID = the device)


def region_code(org: OrgNode) -> str | None:
    """The civil code of a region organisation (``370102`` county → ``370102``, city → ``3701``)."""
    digits = REGION_DIGITS.get(org.kind)
    code = org.code.strip()
    if digits is None or len(code) < digits or not (code.isascii() and code.isdigit()):
        return None
    return code[:digits]


def group_id(local_id: str) -> str:
    return str(ids.GbId.build(local_id[: ids.DOMAIN_LENGTH], ids.BUSINESS_GROUP, GROUP_SERIAL))


def organisation_id(local_id: str, org_id: int) -> str:
    return str(ids.GbId.build(local_id[: ids.DOMAIN_LENGTH], ids.VIRTUAL_ORGANISATION, org_id))


def _path(org_id: int | None, orgs: dict[int, OrgNode]) -> list[OrgNode]:
    """The organisation and its ancestors, nearest first (a cycle is cut)."""
    out: list[OrgNode] = []
    seen: set[int] = set()
    while org_id is not None and org_id in orgs and org_id not in seen:
        seen.add(org_id)
        out.append(orgs[org_id])
        org_id = orgs[org_id].parent_id
    return out


def build_catalog(
    local_id: str, orgs: dict[int, OrgNode], channels: list[SharedChannel]
) -> list[CatalogItem]:
    """Regions, then the business group and its virtual organisations, then the channels."""
    business_group = group_id(local_id)
    regions: dict[str, CatalogItem] = {}
    groups: dict[int, tuple[int, CatalogItem]] = {}  # org id → (depth, item)
    items: list[CatalogItem] = []
    for shared in sorted(channels, key=lambda c: c.item.device_id):
        path = _path(shared.org_id, orgs)
        region_path = [(o, c) for o in path if (c := region_code(o)) is not None]
        for org, code in region_path:
            regions.setdefault(code, CatalogItem(device_id=code, name=org.name))
        nearest_region = region_path[0][1] if region_path else ""
        # virtual organisations: the group-kind organisations below the nearest region
        chain: list[OrgNode] = []
        for org in path:
            if region_code(org) is not None:
                break
            if org.kind in GROUP_KINDS:
                chain.append(org)
        parent = business_group
        for depth, org in enumerate(reversed(chain)):
            vid = organisation_id(local_id, org.id)
            if org.id not in groups:
                groups[org.id] = (
                    depth,
                    CatalogItem(
                        device_id=vid,
                        name=org.name,
                        civil_code=nearest_region,
                        parent_id=parent,
                        business_group_id=business_group,
                    ),
                )
            parent = vid
        item = shared.item
        if chain:
            parent_id, group = organisation_id(local_id, chain[0].id), business_group
        else:
            parent_id, group = (nearest_region or local_id), ""
        items.append(
            CatalogItem(
                device_id=item.device_id,
                name=item.name,
                manufacturer=item.manufacturer,
                model=item.model,
                owner=item.owner,
                civil_code=nearest_region or item.civil_code,
                address=item.address,
                parental=0,
                parent_id=parent_id,
                status=item.status,
                longitude=item.longitude,
                latitude=item.latitude,
                ptz_type=item.ptz_type,
                business_group_id=group,
            )
        )
    head = sorted(regions.values(), key=lambda r: (len(r.device_id), r.device_id))
    if groups:
        head.append(CatalogItem(device_id=business_group, name=GROUP_NAME, parent_id=local_id))
        head += [g for _, g in sorted(groups.values(), key=lambda dg: (dg[0], dg[1].device_id))]
    return head + items


def load_orgs(session: Session) -> dict[int, OrgNode]:
    rows = session.execute(
        select(
            Organisation.id,
            Organisation.parent_id,
            Organisation.kind,
            Organisation.name,
            Organisation.code,
        )
    )
    return {r.id: OrgNode(r.id, r.parent_id, r.kind, r.name, r.code or "") for r in rows}


def _shareable(channel_id: str | None = None) -> Select[Any]:
    stmt = (
        select(Channel, Device.device_id, Device.org_id)
        .join(Device, Channel.device_pk == Device.id)
        .where(Device.status == DeviceStatus.active, Channel.secrecy == 0)
        .order_by(Channel.channel_id)
    )
    if channel_id is not None:
        stmt = stmt.where(Channel.channel_id == channel_id)
    return stmt


def _shared(channel: Channel, device_id: str, org_id: int | None) -> SharedChannel:
    return SharedChannel(
        device_id,
        org_id,
        CatalogItem(
            device_id=channel.channel_id,
            name=channel.name,
            manufacturer=channel.manufacturer,
            model=channel.model,
            civil_code=channel.civil_code,
            address=channel.address,
            parent_id=device_id,
            status=channel.status,
            longitude=channel.longitude,
            latitude=channel.latitude,
            ptz_type=channel.ptz_type,
        ),
    )


def shared_channels(session: Session, selection: Selection) -> list[SharedChannel]:
    """The channels of active devices a superior gets: selected and not classified.

    A superior names a channel by its code alone, so a code that several devices list
    (rows from before catalogs refused taken codes) is left out: its INVITE could not say
    which camera it means."""
    out = []
    rows = session.execute(_shareable()).all()
    counts = Counter(channel.channel_id for channel, _, _ in rows)
    for channel, device_id, org_id in rows:
        code = channel.channel_id
        if ids.is_gb_id(code) and counts[code] == 1 and selection.allows(code):
            out.append(_shared(channel, device_id, org_id))
    return out


def catalog_for(session: Session, upstream_id: str, local_id: str) -> list[CatalogItem]:
    """The whole catalog one superior sees."""
    selection = selection_of(session, upstream_id)
    return build_catalog(local_id, load_orgs(session), shared_channels(session, selection))


def owner_for(session: Session, upstream_id: str, channel_id: str) -> SharedChannel | None:
    """The shared channel with this id (and its device), if this superior may use it."""
    if not ids.is_gb_id(channel_id) or not selection_of(session, upstream_id).allows(channel_id):
        return None
    rows = session.execute(_shareable(channel_id).limit(2)).all()
    if len(rows) != 1:  # unknown, or on several devices: never a guess between two cameras
        return None
    channel, device_id, org_id = rows[0]
    return _shared(channel, device_id, org_id)
