"""GB/T 28181 identifiers: one type, one check, used by the registrar and the settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sip import ids
from sip.ids import GbId, InvalidGbId
from sip.manscdp import CatalogItem
from vms.config import SipSettings, SipUpstreamSettings

NVR = "34020000001180000001"


def test_accessors_name_the_parts_of_a_code() -> None:
    gb = GbId("37010200001320000042")
    assert (gb.region, gb.civil_code, gb.domain) == ("37010200", "370102", "3701020000")
    assert (gb.industry, gb.type_code, gb.network, gb.serial) == ("00", 132, "0", "0000042")
    assert gb == "37010200001320000042" and isinstance(gb, str)
    assert gb.is_channel and not gb.is_platform
    assert GbId("34020000002000000001").is_platform
    assert GbId(NVR).type_code == ids.NVR and not GbId(NVR).is_channel


@pytest.mark.parametrize(
    "value",
    [
        "3402000000118000000",  # 19 digits
        "340200000011800000011",
        "34020000001180000001\n",  # what "^\\d{20}$" let through
        "３４０２００００００１１８００００００１",  # full-width digits: isdigit() but not ASCII
        "3402000000118000000a",
        "",
    ],
)
def test_anything_but_20_ascii_digits_is_refused(value: str) -> None:
    assert not ids.is_gb_id(value)
    with pytest.raises(InvalidGbId, match="20-digit"):
        GbId(value)


def test_build_makes_sequential_ids_and_refuses_overflow() -> None:
    assert GbId.build("3402000000", ids.CAMERA, 1) == "34020000001310000001"
    assert GbId.build("3402000000", ids.VIRTUAL_ORGANISATION, 9_999_999).type_code == 216
    with pytest.raises(InvalidGbId):
        GbId.build("3402000000", ids.CAMERA, 10**7)
    with pytest.raises(InvalidGbId):
        GbId.build("340200000", ids.CAMERA, 1)


def test_catalog_channels_are_the_peripheral_type_codes() -> None:
    kinds = {
        "34020000001310000001": True,  # camera
        "34020000001320000001": True,  # IPC
        "34020000001990000001": True,
        "34020000001180000001": False,  # the NVR itself
        "34020000002150000001": False,  # business group
        "34020000002160000001": False,  # virtual organisation
        "3402000000131000000": False,  # not an id at all
    }
    assert {k: CatalogItem(k).is_channel for k in kinds} == kinds


def test_settings_validate_ids_with_the_same_check() -> None:
    with pytest.raises(ValidationError, match="20-digit"):
        SipSettings(server_id="３４０２００００００２０００００００１")
    with pytest.raises(ValidationError, match="10 digits"):
        SipSettings(domain="340200000\n")
    with pytest.raises(ValidationError, match="20-digit"):
        SipSettings(allowed_device_ids=[NVR, "1234"])
    with pytest.raises(ValidationError, match="20-digit"):
        SipUpstreamSettings(server_id="4401", domain="4401000000", host="127.0.0.1")
    up = SipUpstreamSettings(server_id="44010000002000000001", domain="4401000000", host="h")
    assert up.local_id == "" and up.catalog_group == 4
