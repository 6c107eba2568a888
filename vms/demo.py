"""``vms demo``: a seeded organisation tree, a demo admin, simulated NVRs and sensors.

The demo admin's password is never in the repo: it comes from
``auth.admin_password`` or is generated once and written to
``<data_dir>/demo-admin.txt``.  Neither are the demo NVRs' SIP passwords: each seeded
device gets a random one in its row, which its simulated NVR reads from there.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

from sqlalchemy import select

from sip.channel_ref import ChannelRef
from storage.models import Channel, Device, Organisation, OrgKind, Role, User
from storage.org_tree import create_org
from storage.passwords import hash_password
from vms.app import ComponentFactory
from vms.logging import get_logger
from vms.services import Services

log = get_logger("vms.demo")

ENTERPRISE_CODE = "370102001"  # 9-digit enterprise code: cameras are <code>0132<serial7>
STATION_CODE = "370102002"


# Debian's opencv-doc ships a real surveillance clip with pedestrians; the demo streams it when
# present (else a generated pattern) so that the person detector has something to find.
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")

# Analysis switched on for the demo's first camera: people anywhere in the yard raise an
# area-intrusion alarm (enterprise code 4) and clear once the yard has been empty a while.
DEMO_ANALYSIS: dict[str, Any] = {
    "enabled": True,  # input size and precision: the analyzer defaults (640, int8 on CPU)
    "sample": {"mode": "fps", "fps": 1},
    "zones": {"yard": [[0, 0], [1, 0], [1, 1], [0, 1]]},
    "rules": [
        {
            "type": "intrusion",
            "zones": ["yard"],
            "min_score": 0.3,
            "confirm_s": 2,
            "clear_s": 5,
            "cooldown_s": 30,
        }
    ],
}


def demo_video(configured: Path | None) -> Path | None:
    if configured is not None:
        return configured
    return VTEST if VTEST.is_file() else None


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
                        sip_password=secrets.token_urlsafe(12),  # no default password
                    )
                )
        if settings.demo.sensors:
            from vms.demo_sensors import seed_demo_sensors

            ent = s.scalar(select(Organisation).where(Organisation.code == ENTERPRISE_CODE))
            if ent is not None:
                seed_demo_sensors(s, ent)
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


class DemoNvrs:
    """``demo.devices`` simulated NVRs registering with this node's own SIP port."""

    name = "demo-nvrs"

    def __init__(self, services: Services) -> None:
        self.services = services
        self.nvrs: list[Any] = []
        self._analysis: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from simdevice.nvr import NvrConfig, SimulatedNvr

        settings = self.services.settings
        sip = settings.sip
        server = self.services.sip
        port = server.port if server is not None else sip.port
        host = sip.host if sip.host not in ("0.0.0.0", "") else "127.0.0.1"
        per = settings.demo.channels
        ids = [demo_device_id(i) for i in range(1, settings.demo.devices + 1)]
        passwords = await self.services.db.run(lambda s: _device_passwords(s, ids))
        for i in range(1, settings.demo.devices + 1):
            password = passwords.get(demo_device_id(i)) or sip.password
            if not password:
                log.warning("demo NVR without a password skipped", device_id=demo_device_id(i))
                continue
            channel_ids = [
                demo_channel_id(ENTERPRISE_CODE, (i - 1) * per + n) for n in range(1, per + 1)
            ]
            nvr = SimulatedNvr(
                NvrConfig(
                    device_id=demo_device_id(i),
                    server_id=sip.server_id,
                    server_domain=sip.domain,
                    server_host=host,
                    server_port=port,
                    password=password,
                    transport="udp" if "udp" in sip.transports else "tcp",
                    channel_ids=channel_ids,
                    keepalive_interval_s=min(sip.keepalive_interval_s, 60.0),
                    video=demo_video(settings.demo.video),
                    name=f"演示NVR-{i}",
                    timezone=settings.server.timezone,
                )
            )
            await nvr.start()
            self.nvrs.append(nvr)
        log.info("demo NVRs started", count=len(self.nvrs), channels_each=per)
        if self.nvrs:
            first = ChannelRef(demo_device_id(1), demo_channel_id(ENTERPRISE_CODE, 1))
            self._analysis = asyncio.create_task(self._analyse(first), name="demo-analysis")

    async def _analyse(self, camera: ChannelRef) -> None:
        """Once the first camera is in the catalog, switch analysis on for it (if unset)."""
        from analyzers.config import AnalysisConfig

        def enable(s: Any) -> bool | None:
            channel = s.scalar(
                select(Channel)
                .join(Device, Channel.device_pk == Device.id)
                .where(Device.device_id == camera.device_id)
                .where(Channel.channel_id == camera.channel_id)
            )
            if channel is None:
                return None
            if channel.analysis:
                return False  # the user's own configuration wins
            channel.analysis = dict(DEMO_ANALYSIS)
            return True

        try:
            for _ in range(120):
                changed = await self.services.db.run(enable)
                if changed is not None:
                    break
                await asyncio.sleep(0.5)
            pool = self.services.analyzers
            if changed and pool is not None:
                await pool.configure(
                    camera, "enterprise", AnalysisConfig.model_validate(DEMO_ANALYSIS)
                )
                log.info("demo analysis on", channel=str(camera), rule="intrusion")
        except Exception as exc:  # noqa: BLE001 - the demo runs on without analysis
            log.warning("demo analysis not started", channel=str(camera), error=repr(exc))

    async def stop(self) -> None:
        if self._analysis is not None:
            self._analysis.cancel()
        await asyncio.gather(*(nvr.stop() for nvr in self.nvrs), return_exceptions=True)
        self.nvrs.clear()


def _device_passwords(s: Any, ids: list[str]) -> dict[str, str]:
    rows = s.execute(select(Device.device_id, Device.sip_password).where(Device.device_id.in_(ids)))
    return {device_id: password for device_id, password in rows if password}


def demo_nvrs(services: Services) -> DemoNvrs | None:
    if services.settings.demo.devices <= 0 or not services.settings.sip.enabled:
        return None
    return DemoNvrs(services)


def demo_sensors(services: Services) -> Any:
    """The simulated sensor gateway of the seeded demo plant (``vms.demo_sensors``)."""
    if not services.settings.demo.sensors or not services.settings.ingest.enabled:
        return None
    from vms.demo_sensors import DemoSensors

    first = ChannelRef(demo_device_id(1), demo_channel_id(ENTERPRISE_CODE, 1))
    return DemoSensors(services, ENTERPRISE_CODE, first)


def demo_components() -> list[ComponentFactory]:
    """Simulated NVRs that register with this node's SIP service, and the simulated sensors."""
    return [demo_nvrs, demo_sensors]
