"""SIP over TLS (issue 17, optional transport): a device registers with its digest over a
verified TLS connection on the TLS port, keeps alive and answers queries down the same
connection; a client that does not trust the certificate, or speaks plain SIP to the TLS
port, gets nothing and costs nothing; settings refuse "tls" without a certificate."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from simdevice.nvr import SimulatedNvr
from sip.message import parse_datagram
from sip.server import SipServer
from sip.store import MemoryDeviceStore
from vms.config import ConfigError, load_settings

from .sip_attack import register
from .sip_support import PASSWORD, nvr_config, nvr_id, server_config, wait_until
from .tls_support import TlsFiles, make_tls_files


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("sip-tls"))


def _tls_server(tls: TlsFiles, store: MemoryDeviceStore | None = None) -> SipServer:
    config = server_config(
        transports=("udp", "tcp", "tls"),
        tls_port=0,
        tls_cert_file=str(tls.cert),
        tls_key_file=str(tls.key),
    )
    return SipServer(config, store or MemoryDeviceStore({nvr_id(1): PASSWORD}))


async def test_device_registers_keeps_alive_and_is_queried_over_tls(tls: TlsFiles) -> None:
    server = _tls_server(tls)
    await server.start()
    tls_port = server.endpoint.transport.tls_port
    assert tls_port and tls_port != server.port
    nvr = SimulatedNvr(
        nvr_config(
            server,
            server_port=tls_port,
            transport="tls",
            tls_ca_file=str(tls.ca),
            keepalive_interval_s=0.3,
        )
    )
    try:
        await nvr.start(wait=True, timeout=10)
        reg = server.registrations.get(nvr_id(1))
        assert reg is not None and reg.peer.transport == "TLS" and reg.peer.conn is not None
        device = server.store.devices[nvr_id(1)]  # type: ignore[attr-defined]
        assert device.transport == "tls"
        seen = reg.last_seen
        await wait_until(lambda: reg.last_seen > seen, 5, "a keepalive over TLS")
        result = await server.catalog(nvr_id(1))  # the platform asks down the same connection
        assert len(result.items) == 4
        assert server.registrar.auth.counts["challenged"] >= 1  # the digest still applies
    finally:
        await nvr.stop()
        await server.close()


async def test_untrusted_certificate_and_plain_sip_get_nothing(tls: TlsFiles) -> None:
    server = _tls_server(tls)
    await server.start()
    port = server.endpoint.transport.tls_port
    try:
        # a device without the CA refuses the server: no registration, no crash
        stranger = SimulatedNvr(nvr_config(server, server_port=port, transport="tls"))
        with pytest.raises(ssl.SSLCertVerificationError):
            await stranger.agent.register()
        await stranger.agent.close()
        # plain SIP to the TLS port: the handshake fails, the connection is closed unanswered
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(register(nvr_id(1), 5999, transport="TCP").serialise())
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(65535), 5)
        writer.close()
        with pytest.raises(ValueError):
            parse_datagram(answer)  # no SIP answer came back
        assert server.registrations.get(nvr_id(1)) is None
        assert server.stats["register"] == 0
        # and the listener still serves a real device afterwards
        ok = SimulatedNvr(
            nvr_config(server, server_port=port, transport="tls", tls_ca_file=str(tls.ca))
        )
        try:
            await ok.start(wait=True, timeout=10)
        finally:
            await ok.stop()
    finally:
        await server.close()


def test_settings_refuse_tls_without_a_certificate(tls: TlsFiles, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tls_cert_file"):
        load_settings(server={"data_dir": tmp_path}, sip={"transports": ["udp", "tls"]})
    with pytest.raises(ConfigError, match="do not load"):
        load_settings(
            server={"data_dir": tmp_path},
            sip={
                "transports": ["udp", "tls"],
                "tls_cert_file": str(tls.cert),
                "tls_key_file": str(tls.other_key),
            },
        )
    settings = load_settings(
        server={"data_dir": tmp_path},
        sip={
            "transports": ["udp", "tcp", "tls"],
            "tls_cert_file": str(tls.cert),
            "tls_key_file": str(tls.key),
        },
    )
    assert settings.sip.tls_port == 5061
