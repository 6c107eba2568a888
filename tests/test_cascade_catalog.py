"""The catalog a superior sees: our organisation tree as civil-code regions, a business group
(215) and virtual organisations (216), the channels under them; per-superior selection and
classified channels left out.  Built from the database (SQLite and PostgreSQL) and sent over
real SIP to a superior, whose Catalog query must parse it back into the same tree."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from sip import ids
from sip.manscdp import CatalogItem
from storage.db import Database
from storage.models import Channel, Device, DeviceStatus, OrgKind
from storage.objects import LocalObjectStore
from storage.org_tree import create_org
from vms.cascade import catalog as tree
from vms.cascade.selection import Selection, selection_of, set_selection
from vms.cascade.service import CascadeService
from vms.config import load_settings
from vms.services import Services

LOCAL = "37010200002000000001"  # the county platform
UP = "37010000002000000001"  # its city superior
OTHER_UP = "37000000002000000001"  # the province, a second superior
NVR = "37010200001180000001"
STATION_NVR = "37010200001180000002"


def cam(n: int) -> str:
    return f"370102000013200000{n:02d}"


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    database.open()
    yield database
    database.close()


def seed(db: Database) -> dict[str, int]:
    with db.session() as s:
        province = create_org(s, "山东省", OrgKind.province, None, "370000")
        city = create_org(s, "济南市", OrgKind.city, province, "370100")
        county = create_org(s, "历下区", OrgKind.county, city, "370102")
        park = create_org(s, "化工园区", OrgKind.park, county, "")
        plant = create_org(s, "示例化工", OrgKind.enterprise, park, "370102001")
        station = create_org(s, "示例加油站", OrgKind.gas_station, county, "370102002")
        s.add(
            Device(
                device_id=NVR,
                org_id=plant.id,
                channels=[
                    Channel(channel_id=cam(1), name="罐区", manufacturer="Hik", ptz_type=1),
                    Channel(channel_id=cam(2), name="装卸台", status="OFF"),
                    Channel(channel_id=cam(3), name="机房", secrecy=1),  # classified
                ],
            )
        )
        s.add(
            Device(device_id=STATION_NVR, org_id=station.id, channels=[Channel(channel_id=cam(4))])
        )
        s.add(
            Device(
                device_id="37010200001180000003",
                status=DeviceStatus.pending,  # not admitted: nothing of it goes up
                channels=[Channel(channel_id=cam(5))],
            )
        )
        return {"county": county.id, "park": park.id, "plant": plant.id, "station": station.id}


def by_id(items: list[CatalogItem]) -> dict[str, CatalogItem]:
    return {i.device_id: i for i in items}


def test_tree_regions_groups_and_channels(db: Database) -> None:
    orgs = seed(db)
    with db.session() as s:
        items = tree.catalog_for(s, UP, LOCAL)
    got = by_id(items)
    group = tree.group_id(LOCAL)
    park, plant = (
        tree.organisation_id(LOCAL, orgs["park"]),
        tree.organisation_id(LOCAL, orgs["plant"]),
    )
    station = tree.organisation_id(LOCAL, orgs["station"])
    assert [i.device_id for i in items[:3]] == ["37", "3701", "370102"]  # regions first
    assert got["37"].name == "山东省" and got["370102"].name == "历下区"
    assert ids.GbId(group).type_code == ids.BUSINESS_GROUP and got[group].parent_id == LOCAL
    assert ids.GbId(park).type_code == ids.VIRTUAL_ORGANISATION
    assert (got[park].parent_id, got[park].business_group_id) == (group, group)
    assert got[plant].parent_id == park and got[plant].civil_code == "370102"
    assert got[station].parent_id == group
    assert sorted(i for i in got if ids.is_gb_id(i) and ids.GbId(i).is_channel) == [
        cam(1),
        cam(2),
        cam(4),
    ]  # the classified one and the pending device's are not there
    c1 = got[cam(1)]
    assert (c1.parent_id, c1.civil_code, c1.business_group_id) == (plant, "370102", group)
    assert (c1.name, c1.manufacturer, c1.ptz_type) == ("罐区", "Hik", 1)
    assert got[cam(2)].status == "OFF"
    assert got[cam(4)].parent_id == station
    # parents come before their children, so a superior can build the tree as it reads
    seen: set[str] = {LOCAL}
    for item in items:
        if item.parent_id:
            assert item.parent_id in seen, item
        seen.add(item.device_id)


def test_selection_per_superior(db: Database) -> None:
    orgs = seed(db)
    with db.session() as s:
        assert selection_of(s, UP) == Selection(UP)  # no row: every channel
        set_selection(s, UP, False, [cam(4), cam(3)])
    with db.session() as s:
        items = tree.catalog_for(s, UP, LOCAL)
        other = tree.catalog_for(s, OTHER_UP, LOCAL)
        assert tree.owner_for(s, UP, cam(4)) is not None
        assert tree.owner_for(s, UP, cam(1)) is None  # not selected for this superior
        assert tree.owner_for(s, UP, cam(3)) is None  # selected, but classified
        assert tree.owner_for(s, OTHER_UP, cam(1)).device_id == NVR  # type: ignore[union-attr]
    assert [
        i.device_id for i in items if ids.is_gb_id(i.device_id) and ids.GbId(i.device_id).is_channel
    ] == [cam(4)]
    assert "370102" in by_id(items) and tree.organisation_id(LOCAL, orgs["plant"]) not in by_id(
        items
    )
    assert (
        len([i for i in other if ids.is_gb_id(i.device_id) and ids.GbId(i.device_id).is_channel])
        == 3
    )
    with db.session() as s:
        set_selection(s, UP, True, [])
    with db.session() as s:
        assert selection_of(s, UP).all_channels


def test_no_organisation_hangs_channels_under_the_platform(db: Database) -> None:
    with db.session() as s:
        s.add(Device(device_id=NVR, channels=[Channel(channel_id=cam(1), civil_code="370102")]))
    with db.session() as s:
        items = tree.catalog_for(s, UP, LOCAL)
    assert [(i.device_id, i.parent_id, i.civil_code) for i in items] == [(cam(1), LOCAL, "370102")]


def test_items_render_by_kind() -> None:
    region = CatalogItem(device_id="3701", name="济南市").to_xml()
    assert "<DeviceID>3701</DeviceID>" in region and "<ParentID>" not in region
    org = CatalogItem(
        device_id=tree.organisation_id(LOCAL, 7), name="厂", parent_id="x", business_group_id="g"
    ).to_xml()
    assert "<BusinessGroupID>g</BusinessGroupID>" in org and "<Manufacturer>" not in org
    channel = CatalogItem(device_id=cam(1), secrecy=1, business_group_id="g").to_xml()
    assert "<Secrecy>1</Secrecy>" in channel and "<BusinessGroupID>g</BusinessGroupID>" in channel


async def test_service_device_info_counts_what_the_superior_gets(tmp_path: Path) -> None:
    settings = load_settings(server={"data_dir": tmp_path / "data"})
    settings.server.data_dir.mkdir(parents=True)
    database = Database(settings.database_url)
    database.open()
    try:
        seed(database)
        service = CascadeService(Services(settings, database, LocalObjectStore(tmp_path / "o")))
        with database.session() as s:
            set_selection(s, UP, False, [cam(1), cam(2)])

        class Up:
            server_id = UP

        info = await service.device_info(Up(), LOCAL)  # type: ignore[arg-type]
        assert (info.device_id, info.channels, info.manufacturer) == (LOCAL, 2, "vms-gb28181")
        status = await service.device_status(Up(), LOCAL)  # type: ignore[arg-type]
        assert (status.online, status.status, status.record) == ("ONLINE", "OK", "OFF")
        assert await service.owner(Up(), cam(1)) == NVR  # type: ignore[arg-type]
        assert await service.owner(Up(), cam(4)) is None  # type: ignore[arg-type]
        with database.session() as s:
            assert s.scalar(select(Channel.secrecy).where(Channel.channel_id == cam(3))) == 1
    finally:
        database.close()
