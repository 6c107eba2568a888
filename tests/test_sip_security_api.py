"""No default device password (issue 19): a device added without one gets a random password,
shown once in the answer, that its NVR registers with; vendor defaults are refused."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from api.app import create_app
from api.security import create_token
from simdevice.nvr import SimulatedNvr
from sip.server import SipServer
from storage.models import Device, Role, User
from storage.passwords import hash_password
from vms.services import Services
from vms.sip_store import DbDeviceStore

from .sip_support import nvr_config, server_config, wait_until

DEV = "37010200001180000077"


async def test_added_device_gets_a_random_password_shown_once(services: Services) -> None:
    app = create_app(services)
    with services.db.session() as s:
        root = User(username="root", password_hash=hash_password("x" * 12), role=Role.admin)
        s.add(root)
        s.flush()
        h = {"Authorization": f"Bearer {create_token(app.state.jwt_secret, root.id, 'admin', 60)}"}
    server = SipServer(server_config(password=""), DbDeviceStore(services))  # no global one
    await server.start()
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for weak in ("12345678", "short"):
                body = {"device_id": DEV, "sip_password": weak}
                resp = await client.post("/api/devices", json=body, headers=h)
                assert resp.status_code == 422, weak
                assert resp.json()["errors"][0]["field"] == "body.sip_password"
            resp = await client.post("/api/devices", json={"device_id": DEV}, headers=h)
            assert resp.status_code == 201
            password = resp.json()["sip_password"]
            assert len(password) >= 16
            shown = (await client.get(f"/api/devices/{DEV}", headers=h)).json()
            assert "sip_password" not in shown and password not in str(shown)
            patch = {"sip_password": "88888888"}
            resp = await client.patch(f"/api/devices/{DEV}", json=patch, headers=h)
            assert resp.status_code == 422
        # the NVR configured with what the administrator was shown registers with it
        nvr = SimulatedNvr(nvr_config(server, device_id=DEV, password=password))
        await nvr.start(wait=True)
        try:

            def online() -> bool:
                with services.db.session() as s:
                    return bool(s.scalar(select(Device.online).where(Device.device_id == DEV)))

            await wait_until(online, 10, "the added device online")
        finally:
            await nvr.stop()
    finally:
        await server.close()


async def test_start_up_names_devices_that_cannot_register(services: Services) -> None:
    """An upgraded node whose devices relied on the old default password is told so."""
    from structlog.testing import capture_logs

    from vms.sip_component import SipComponent

    services.settings.sip.password = ""
    with services.db.session() as s:
        s.add(Device(device_id=DEV, name="relied on 12345678"))
        s.add(Device(device_id="37010200001180000078", sip_password="its-own-pass"))
    component = SipComponent(services)
    with capture_logs() as logs:
        await component.start()
    try:
        warned = [e for e in logs if "cannot register" in e["event"]]
        assert warned and warned[0]["devices"] == [DEV] and warned[0]["log_level"] == "warning"
    finally:
        await component.stop()
