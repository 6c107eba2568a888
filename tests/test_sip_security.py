"""Attacks on the SIP edge that claim a device's id without its password (issue 19): each is
reproduced against the real server with a registered simulated NVR, refused and counted,
and the NVR keeps working — its keepalives are answered, its queries and live view go to
it, not to the attacker."""

from __future__ import annotations

import asyncio
import socket

from sip import manscdp
from sip.manscdp import el
from sip.media_api import MediaOffer, PlayRequest
from sip.message import SipRequest, new_branch, new_tag
from sip.store import MemoryDeviceStore
from sip.transaction import ServerTransaction
from sip.transport import Peer

from .sip_attack import TcpAttacker, UdpAttacker, keepalive, message
from .sip_support import DOMAIN, nvr_config, nvr_id, running_nvr, running_server


async def _rtp_from(sock: socket.socket, count: int) -> list[tuple[bytes, tuple[str, int]]]:
    loop = asyncio.get_running_loop()
    out = []
    async with asyncio.timeout(10):
        while len(out) < count:
            out.append(await loop.sock_recvfrom(sock, 2048))
    return out


def _invites(data: list[bytes]) -> list[bytes]:
    return [d for d in data if d.startswith(b"INVITE ")]


async def test_spoofed_keepalive_neither_moves_the_nvr_nor_redirects_its_live_view() -> None:
    store = MemoryDeviceStore()
    async with running_server(store) as server, running_nvr(nvr_config(server)) as nvr:
        dev = nvr_id(1)
        source = server.registrations[dev].source
        async with UdpAttacker(server.port) as evil:
            # The attack: a Keepalive "from" the NVR, sent from the attacker's own socket.
            resp = await evil.ask(keepalive(dev, evil.port))
            assert resp.status == 403
            assert server.stats["refused_source"] == 1
            reg = server.registrations[dev]
            assert reg.source == source and reg.peer.port == nvr.endpoint.port
            # Whatever else it sends in the NVR's name is refused too, and nothing is stored.
            alarm = manscdp.encode("Notify", "Alarm", 7, dev, el("AlarmPriority", 1))
            assert (await evil.ask(message(dev, evil.port, alarm))).status == 403
            assert store.devices[dev].alarms == []
            # The NVR's own keepalive is still answered from its own address.
            assert await nvr.keepalive() == 200
            # The live view goes to the NVR, and its RTP is what the viewer gets.
            rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rtp.bind(("127.0.0.1", 0))
            rtp.setblocking(False)
            try:
                offer = MediaOffer("127.0.0.1", rtp.getsockname()[1], "0340200001")
                session = await server.play(PlayRequest(dev, nvr.channels[0]), offer)
                packets = await _rtp_from(rtp, 10)
                assert {addr[0] for _, addr in packets} == {"127.0.0.1"}
                assert nvr.state.invites and nvr.state.invites[-1].call_id == session.call_id
                await server.stop(session)
            finally:
                rtp.close()
            assert _invites(evil.received()) == []
        assert server.stats["refused_source"] == 2


async def test_spoofed_keepalive_over_another_tcp_connection_is_refused() -> None:
    async with running_server() as server:
        async with running_nvr(nvr_config(server, transport="tcp")) as nvr:
            dev = nvr_id(1)
            conn = server.registrations[dev].peer.conn
            async with TcpAttacker(server.port) as evil:
                resp = await evil.ask(keepalive(dev, evil.port, transport="TCP"))
                assert resp.status == 403
            reg = server.registrations[dev]
            assert reg.peer.conn is conn  # requests still go down the NVR's own connection
            info = await server.device_info(dev)
            assert info.channels == 4
            assert await nvr.keepalive() == 200


async def test_answer_to_another_devices_query_is_ignored() -> None:
    """A registered device (enterprise A's NVR) cannot answer a query sent to B's NVR."""
    async with running_server() as server:
        async with (
            running_nvr(nvr_config(server, n=1)) as b,
            running_nvr(nvr_config(server, n=2)) as a,
        ):
            asked: asyncio.Queue[manscdp.Manscdp] = asyncio.Queue()

            def mute_b(stx: ServerTransaction) -> None:  # B takes the query, never answers
                stx.reply(200)
                asked.put_nowait(manscdp.decode(stx.request.body))

            b.endpoint.on_request = mute_b
            task = asyncio.create_task(server.queries.ask(nvr_id(1), "DeviceInfo", timeout=2))
            query = await asyncio.wait_for(asked.get(), 5)
            forged = manscdp.encode(
                "Response", "DeviceInfo", query.sn, nvr_id(1), el("DeviceName", "forged")
            )
            assert (await a.agent.send_message(forged)).status == 200  # A may send MESSAGEs ...
            assert await task == []  # ... but it is no answer to B's query


async def test_bye_and_media_status_for_a_session_from_elsewhere_are_refused() -> None:
    ended: list[str] = []
    async with running_server() as server, running_nvr(nvr_config(server)) as nvr:
        server.add_session_listener(lambda s, reason: ended.append(reason))
        offer = MediaOffer("127.0.0.1", 9, "0340200002")
        session = await server.play(PlayRequest(nvr_id(1), nvr.channels[0]), offer)
        dialog = server.sessions.dialogs[session.call_id]
        async with UdpAttacker(server.port) as evil:
            bye = SipRequest(method="BYE", uri=f"sip:x@127.0.0.1:{server.port}")
            bye.add("Via", f"SIP/2.0/UDP 127.0.0.1:{evil.port};branch={new_branch()}")
            bye.add("From", f"{dialog.remote_to}")
            bye.add("To", f"{dialog.local_from}")
            bye.add("Call-ID", session.call_id)
            bye.add("CSeq", "9 BYE")
            assert (await evil.ask(bye)).status == 403
            media_status = manscdp.encode(
                "Notify", "MediaStatus", 5, nvr_id(1), el("NotifyType", 121)
            )
            msg = message(nvr_id(1), evil.port, media_status)
            msg.set("Call-ID", session.call_id)
            assert (await evil.ask(msg)).status == 403
        await asyncio.sleep(0.2)
        assert session.call_id in server.sessions.dialogs and ended == []
        await server.stop(session)


async def test_request_in_a_superiors_name_from_elsewhere_is_refused() -> None:
    """An INVITE "from" our superior platform must come from its address, or our cameras
    would stream to whoever claims its id."""
    from sip.settings import UpstreamConfig

    async with running_server(server_id="44010000002000000001", domain="4401000000") as superior:
        async with running_server() as node:
            up = node.add_upstream(
                UpstreamConfig(
                    server_id="44010000002000000001",
                    domain="4401000000",
                    host="127.0.0.1",
                    port=superior.port,
                    password="cascade-pass-1",
                )
            )
            await up.start()
            try:
                async with UdpAttacker(node.port) as evil:
                    req = SipRequest(method="MESSAGE", uri=f"sip:{node.config.server_id}@{DOMAIN}")
                    req.add("Via", f"SIP/2.0/UDP 127.0.0.1:{evil.port};branch={new_branch()}")
                    req.add("From", f"<sip:44010000002000000001@4401000000>;tag={new_tag()}")
                    req.add("To", f"<sip:{node.config.server_id}@{DOMAIN}>")
                    req.add("Call-ID", "forged-superior")
                    req.add("CSeq", "1 MESSAGE")
                    req.add("Content-Type", manscdp.CONTENT_TYPE)
                    req.body = manscdp.encode("Query", "Catalog", 1, node.config.server_id)
                    assert (await evil.ask(req)).status == 403
                    await asyncio.sleep(0.2)
                    assert evil.received() == []  # no catalog was sent to the attacker
                assert up.sent_by(Peer("UDP", "127.0.0.1", superior.port))
            finally:
                await up.stop()


async def test_invalid_ids_from_the_wire_are_refused_or_dropped() -> None:
    store = MemoryDeviceStore()
    async with running_server(store) as server:
        bad = ["3402000000131000000/", "../../../../tmp/x", "34020000001310000001\n", "３４" * 10]
        good = "34020000001310000001"
        cfg = nvr_config(server, channel_ids=[good, *bad])
        async with running_nvr(cfg) as nvr:
            result = await server.catalog(nvr_id(1))
            assert [i.device_id for i in result.items] == [good]
            assert list(store.devices[nvr_id(1)].channels) == [good]
            # a MESSAGE whose sender or body id is no GB id: 400, before anything else
            async with UdpAttacker(server.port) as evil:
                body = manscdp.encode("Notify", "Keepalive", 1, "../x", el("Status", "OK"))
                assert (await evil.ask(message("../x", evil.port, body))).status == 400
            body = manscdp.encode("Notify", "Alarm", 2, "3402/../..0000000001", "")
            status = (await nvr.agent.send_message(body)).status
            assert status == 400 and store.devices[nvr_id(1)].alarms == []
            assert server.stats["bad_id"] == 2
