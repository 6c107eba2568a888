"""TLS (issue 17): HTTPS on the API port with the certificate from settings, a clear refusal
at start for a bad pair, and verified TLS to provincial receivers — against the system
store by default, a private CA when ``ca_file`` is set — with nothing lost when it fails."""

from __future__ import annotations

import contextlib
import ssl
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from api.app import create_app
from storage.db import Database
from storage.models import OutboxItem, OutboxState
from storage.objects import LocalObjectStore
from vms.config import ConfigError, UplinkReceiver, load_settings
from vms.services import Services
from vms.uplink import outbox, tables
from vms.uplink.receiver import Receiver
from vms.uplink.sender import UplinkSender
from vms.uplink.transport import HttpTransport

from .alarms_support import make_settings, small_jpeg
from .api_limits_support import served
from .sip_support import wait_until
from .tls_support import TlsFiles, make_tls_files


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def _server(tmp_path: Path, **server: str) -> dict:
    return {"data_dir": str(tmp_path / "data"), **server}


def test_a_bad_certificate_pair_stops_start_up(tls: TlsFiles, tmp_path: Path) -> None:
    for server, why in (
        ({"tls_cert_file": str(tls.cert)}, "set both or neither"),
        (
            {"tls_cert_file": str(tls.cert), "tls_key_file": str(tmp_path / "no.pem")},
            "does not exist",
        ),
        ({"tls_cert_file": str(tls.cert), "tls_key_file": str(tls.other_key)}, "do not load"),
    ):
        with pytest.raises(ConfigError, match=why):
            load_settings(server=_server(tmp_path, **server))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(uplink={"receivers": [{"name": "p", "ca_file": str(tmp_path / "x.pem")}]})


@contextlib.asynccontextmanager
async def https_api(services: Services) -> AsyncIterator[int]:
    async with served(create_app(services), services.settings.server) as config:
        yield config.port


async def test_the_api_answers_over_https_only(tls: TlsFiles, tmp_path: Path) -> None:
    settings = load_settings(
        server=_server(
            tmp_path,
            host="127.0.0.1",
            port="0",
            tls_cert_file=str(tls.cert),
            tls_key_file=str(tls.key),
        ),
        auth={"jwt_secret": "test-secret-not-for-production-0123456789"},
    )
    settings.server.data_dir.mkdir(parents=True)
    db = Database(settings.database_url)
    db.open()
    services = Services(settings, db, LocalObjectStore(settings.objects_path))
    try:
        async with https_api(services) as port:
            trusted = ssl.create_default_context(cafile=str(tls.ca))
            async with httpx.AsyncClient(verify=trusted, timeout=10) as client:
                resp = await client.get(f"https://127.0.0.1:{port}/healthz")
                assert resp.status_code == 200 and resp.json()["status"] == "ok"
                assert (await client.get(f"https://127.0.0.1:{port}/")).status_code == 200
            async with httpx.AsyncClient(timeout=5) as plain:  # system store: not trusted
                with pytest.raises(httpx.ConnectError):
                    await plain.get(f"https://127.0.0.1:{port}/healthz")
                with pytest.raises(httpx.HTTPError):  # cleartext on the TLS port
                    await plain.get(f"http://127.0.0.1:{port}/healthz")
    finally:
        db.close()


async def test_receivers_are_verified_and_nothing_is_lost(tls: TlsFiles, tmp_path: Path) -> None:
    province = Receiver(tls=(str(tls.cert), str(tls.key))).start()
    payload = tables.table4(
        str(uuid.uuid4()),
        "2",
        1,
        datetime.now(UTC),
        "Asia/Shanghai",
        "AI-1",
        "37010200101320000001",
    )
    try:
        private = HttpTransport(
            UplinkReceiver(name="p", table4_url=province.url(), ca_file=str(tls.ca))
        )
        assert (await private.post("table4", payload, small_jpeg())).ok
        await private.aclose()
        system = HttpTransport(UplinkReceiver(name="p", table4_url=province.url()))
        refused = await system.post("table4", payload, small_jpeg())
        await system.aclose()
        assert not refused.ok and refused.status is None and "ConnectError" in refused.error
        # Through the outbox: refused while untrusted, delivered once the CA is configured.
        settings = make_settings(tmp_path, [{"name": "p", "table4_url": province.url()}])
        settings.server.data_dir.mkdir(parents=True)
        db = Database(settings.database_url)
        db.open()
        services = Services(settings, db, LocalObjectStore(settings.objects_path))
        services.objects.put("a.jpg", small_jpeg())
        with db.session() as s:
            outbox.enqueue(s, ["p"], "table4", "cam", payload, "a.jpg")
        sender = UplinkSender(services)
        await sender.start()
        await wait_until(lambda: sender.stats()["p"]["failures"] >= 2, 10, "untrusted refusals")
        await sender.stop()
        with db.session() as s:
            row = s.scalar(select(OutboxItem))
            assert row.state == OutboxState.pending and "certificate" in row.last_error.lower()
        settings.uplink.receivers[0].ca_file = str(tls.ca)
        sender = UplinkSender(services)
        await sender.start()
        await wait_until(lambda: sender.stats()["p"]["sent"] == 1, 10, "delivered")
        await sender.stop()
        db.close()
        assert len(province.snapshot()) == 2 and province.snapshot()[-1].errors == []
    finally:
        province.stop()
