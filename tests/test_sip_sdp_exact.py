"""Play, Playback and Download INVITEs line by line, as GB/T 28181 asks: built by
``sip.play_offer``, received by the simulated NVR over a real socket, and started by the stream
hub (live pulls and the NVR playback the recorder and the API use)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from simdevice.media import offer_problem
from sip import play_offer
from sip.media_api import MediaOffer, MediaTransport, PlayError, PlayMode, PlayRequest
from sip.message import SipRequest, new_call_id, new_tag
from sip.sdp import parse as parse_sdp
from sip.transport import Peer
from vms.media.frames import AccessUnit
from vms.services import Services

from .media_support import collect_units, nvr_rig
from .sip_support import SERVER_ID, nvr_config, nvr_id, running_nvr, running_server, wait_until

CH = "34020000001310000001"
START = datetime(2026, 11, 23, 8, 0, 0, tzinfo=UTC)  # 1795420800
END = START + timedelta(minutes=30)  # 1795422600
RTPMAP_LINES = [
    "a=rtpmap:96 PS/90000",
    "a=rtpmap:98 H264/90000",
    "a=rtpmap:100 H265/90000",
]


def lines(body: bytes) -> list[str]:
    text = body.decode("ascii")
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")  # CRLF only
    return text.split("\r\n")[:-1]


def play_lines(ch: str, ip: str, port: int, ssrc: str) -> list[str]:
    return [
        "v=0",
        f"o={ch} 0 0 IN IP4 {ip}",
        "s=Play",
        f"c=IN IP4 {ip}",
        "t=0 0",
        f"m=video {port} RTP/AVP 96 98 100",
        "a=recvonly",
        *RTPMAP_LINES,
        f"y={ssrc}",
    ]


def history_lines(
    mode: str, ch: str, ip: str, port: int, ssrc: str, start: int, end: int
) -> list[str]:
    return [
        "v=0",
        f"o={ch} 0 0 IN IP4 {ip}",
        f"s={mode}",
        f"u={ch}:0",
        f"c=IN IP4 {ip}",
        f"t={start} {end}",
        f"m=video {port} RTP/AVP 96 98 100",
        "a=recvonly",
        *RTPMAP_LINES,
    ]


# --- the offer, no I/O -----------------------------------------------------------------


def test_play_offer_lines() -> None:
    req = PlayRequest(nvr_id(1), CH)
    sdp = play_offer.offer_sdp(req, MediaOffer("192.168.1.10", 30002, "0200000001"))
    assert lines(sdp.serialise()) == play_lines(CH, "192.168.1.10", 30002, "0200000001")
    offer = MediaOffer("192.168.1.10", 30002, "0200000001")
    assert play_offer.subject(req, offer, SERVER_ID) == f"{CH}:0200000001,{SERVER_ID}:0"


def test_playback_offer_lines() -> None:
    req = PlayRequest(nvr_id(1), CH, PlayMode.playback, START, END)
    sdp = play_offer.offer_sdp(req, MediaOffer("192.168.1.10", 30004, "1200000002"))
    assert lines(sdp.serialise()) == [
        *history_lines("Playback", CH, "192.168.1.10", 30004, "1200000002", 1795420800, 1795422600),
        "y=1200000002",
    ]


def test_download_offer_lines_over_tcp_passive() -> None:
    req = PlayRequest(nvr_id(1), CH, PlayMode.download, START, END, download_speed=4)
    offer = MediaOffer("192.168.1.10", 30006, "1200000003", MediaTransport.tcp_passive)
    assert lines(play_offer.offer_sdp(req, offer).serialise()) == [
        "v=0",
        f"o={CH} 0 0 IN IP4 192.168.1.10",
        "s=Download",
        f"u={CH}:0",
        "c=IN IP4 192.168.1.10",
        "t=1795420800 1795422600",
        "m=video 30006 TCP/RTP/AVP 96 98 100",
        "a=recvonly",
        *RTPMAP_LINES,
        "a=setup:passive",
        "a=connection:new",
        "a=downloadspeed:4",
        "y=1200000003",
    ]


def test_live_offer_over_tcp_active_and_sub_stream() -> None:
    req = PlayRequest(nvr_id(1), CH, stream_number=1)
    offer = MediaOffer("10.0.0.5", 30008, "0200000004", MediaTransport.tcp_active)
    got = lines(play_offer.offer_sdp(req, offer).serialise())
    assert got[2:5] == ["s=Play", "c=IN IP4 10.0.0.5", "t=0 0"]
    assert got[5] == "m=video 30008 TCP/RTP/AVP 96 98 100"
    assert got[-4:] == ["a=setup:active", "a=connection:new", "a=streamnumber:1", "y=0200000004"]


def test_naive_times_are_utc_and_modes_given_as_text() -> None:
    naive = PlayRequest(
        nvr_id(1), CH, "playback", START.replace(tzinfo=None), END.replace(tzinfo=None)
    )  # type: ignore[arg-type]
    assert naive.mode is PlayMode.playback
    sdp = play_offer.offer_sdp(naive, MediaOffer("127.0.0.1", 30010, "1200000005"))
    assert (sdp.session_name, sdp.start, sdp.end) == ("Playback", 1795420800, 1795422600)
    assert PlayRequest(nvr_id(1), CH, "Download", START, END).mode is PlayMode.download  # type: ignore[arg-type]
    assert PlayRequest(nvr_id(1), CH, "live").mode is PlayMode.live  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown play mode"):
        PlayRequest(nvr_id(1), CH, "Talk")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mode", "ssrc", "start", "end", "speed", "port", "message"),
    [
        (PlayMode.playback, "0200000001", START, END, 1, 30000, "history SSRC starting with 1"),
        (PlayMode.download, "0200000001", START, END, 4, 30000, "history SSRC starting with 1"),
        (PlayMode.live, "1200000001", None, None, 1, 30000, "live SSRC starting with 0"),
        (PlayMode.live, "200000001", None, None, 1, 30000, "10 decimal digits"),
        (PlayMode.live, "02000000x1", None, None, 1, 30000, "10 decimal digits"),
        (PlayMode.playback, "4294967296", START, END, 1, 30000, "32 bits"),
        (PlayMode.playback, "1200000001", START, None, 1, 30000, "a start and an end"),
        (PlayMode.playback, "1200000001", END, START, 1, 30000, "end after it starts"),
        (PlayMode.download, "1200000001", START, START, 4, 30000, "end after it starts"),
        (PlayMode.download, "1200000001", START, END, 0, 30000, "download speed 0"),
        (PlayMode.live, "0200000001", None, None, 1, 0, "port 0"),
    ],
)
def test_offers_a_device_would_misread_are_refused(
    mode: PlayMode,
    ssrc: str,
    start: datetime | None,
    end: datetime | None,
    speed: int,
    port: int,
    message: str,
) -> None:
    req = PlayRequest(nvr_id(1), CH, mode, start, end, download_speed=speed)
    with pytest.raises(PlayError, match=message) as err:
        play_offer.offer_sdp(req, MediaOffer("127.0.0.1", port, ssrc))
    assert err.value.status == 400


def test_the_simulated_nvr_is_strict_about_offers() -> None:
    """The NVR the other tests INVITE refuses what a strict recorder refuses."""

    def offer(*body: str) -> str:
        return offer_problem(parse_sdp("\r\n".join(body) + "\r\n"), CH)

    good = history_lines("Playback", CH, "127.0.0.1", 30000, "", 1795420800, 1795422600)
    assert offer(*good, "y=1200000001") == ""
    assert "y= starting with 1" in offer(*good, "y=0200000001")
    assert "u=" in offer(*[g for g in good if not g.startswith("u=")], "y=1200000001")
    no_range = [g if not g.startswith("t=") else "t=0 0" for g in good]
    assert "t=<start> <end>" in offer(*no_range, "y=1200000001")
    assert "downloadspeed" in offer(*[g.replace("Playback", "Download") for g in good])
    assert "y= starting with 0" in offer(*play_lines(CH, "127.0.0.1", 30000, "1200000001"))
    assert "no u=" in offer(*play_lines(CH, "127.0.0.1", 30000, "0200000001"), f"u={CH}:0")
    assert offer(*play_lines(CH, "127.0.0.1", 30000, "0200000001")) == ""


# --- on the wire: what the device receives -----------------------------------------------


async def _udp_port() -> tuple[asyncio.DatagramTransport, int]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    return transport, transport.get_extra_info("sockname")[1]


async def test_device_receives_exact_play_playback_and_download_invites() -> None:
    async with running_server() as server:
        async with running_nvr(nvr_config(server)) as nvr:
            sink, port = await _udp_port()
            try:
                ch = nvr.channels[0]
                end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
                start = end - timedelta(seconds=2)
                s0, s1 = int(start.timestamp()), int(end.timestamp())
                cases = [
                    (
                        PlayRequest(nvr_id(1), ch),
                        "0200000001",
                        play_lines(ch, "127.0.0.1", port, "0200000001"),
                    ),
                    (
                        PlayRequest(nvr_id(1), ch, PlayMode.playback, start, end),
                        "1200000002",
                        history_lines("Playback", ch, "127.0.0.1", port, "", s0, s1)
                        + ["y=1200000002"],
                    ),
                    (
                        PlayRequest(nvr_id(1), ch, PlayMode.download, start, end, 4),
                        "1200000003",
                        history_lines("Download", ch, "127.0.0.1", port, "", s0, s1)
                        + ["a=downloadspeed:4", "y=1200000003"],
                    ),
                ]
                for request, ssrc, want in cases:
                    session = await server.play(request, MediaOffer("127.0.0.1", port, ssrc))
                    invite = nvr.state.invites[-1]
                    assert invite.method == "INVITE" and invite.call_id == session.call_id
                    assert invite.uri.startswith(f"sip:{ch}@127.0.0.1:")
                    assert invite.get("Subject") == f"{ch}:{ssrc},{SERVER_ID}:0"
                    assert invite.get("Content-Type") == "APPLICATION/SDP"
                    assert lines(invite.body) == want
                    assert session.answer.ssrc == ssrc  # the device accepted it as offered
                    if request.mode is PlayMode.download:
                        assert session.answer.file_size == 2 * 250_000
                    await server.stop(session)
                assert len(nvr.state.invites) == 3
                wrong = PlayRequest(nvr_id(1), ch, PlayMode.playback, start, end)
                with pytest.raises(PlayError) as err:  # a live SSRC for a playback
                    await server.play(wrong, MediaOffer("127.0.0.1", port, "0200000009"))
                assert err.value.status == 400
                assert len(nvr.state.invites) == 3  # refused before anything was sent
            finally:
                sink.close()


async def test_strict_nvr_answers_488_to_an_inexact_playback_invite() -> None:
    """A Playback INVITE without u= and with a live SSRC (the reported symptom) is refused."""
    async with running_server() as server:
        async with running_nvr(nvr_config(server)) as nvr:
            ch = nvr.channels[0]
            body = "\r\n".join(
                [
                    *history_lines("Playback", ch, "127.0.0.1", 9, "", 1795420800, 1795420810),
                    "y=0200000001",
                ]
            )
            req = SipRequest(method="INVITE", uri=f"sip:{ch}@127.0.0.1:{nvr.endpoint.port}")
            req.add("From", f"<sip:{SERVER_ID}@3402000000>;tag={new_tag()}")
            req.add("To", f"<sip:{ch}@127.0.0.1:{nvr.endpoint.port}>")
            req.add("Call-ID", new_call_id("127.0.0.1"))
            req.add("CSeq", "1 INVITE")
            req.add("Content-Type", "APPLICATION/SDP")
            req.body = (body + "\r\n").encode()
            resp = await server.endpoint.request(
                req, Peer("UDP", "127.0.0.1", nvr.endpoint.port), timeout=5
            )
            assert resp.status == 488 and "starting with 1" in resp.reason
            assert not nvr.media.streams


# --- through the stream hub: live pulls and NVR playback (recorder, API) -------------------


async def test_hub_live_and_playback_invites_are_exact(services: Services) -> None:
    device = "34020000001180000031"
    async with nvr_rig(services, device, channels=2) as rig:
        hub, nvr, ch = rig.hub, rig.nvr, rig.channels[0]
        ip = services.settings.media.sdp_ip
        sub = hub.subscribe(rig.cameras[0], "viewer")
        await collect_units(sub, 3)
        live = hub._live[rig.cameras[0]]
        invite = nvr.state.invites[-1]
        assert live.ssrc is not None and live.ssrc.startswith("020000")  # 0 + domain digits
        assert lines(invite.body) == play_lines(ch, ip, live.port or 0, live.ssrc)
        assert invite.get("Subject") == f"{ch}:{live.ssrc},{SERVER_ID}:0"
        sub.close()

        end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
        start = end - timedelta(seconds=2)
        key, psub = hub.open_playback(rig.cameras[1], start, end, name="recorder-playback")
        stream = hub._playback[key]
        await wait_until(lambda: len(nvr.state.invites) == 2, 10, "playback INVITE")
        invite = nvr.state.invites[-1]
        assert stream.ssrc is not None and stream.ssrc.startswith("120000")
        assert lines(invite.body) == history_lines(
            "Playback",
            rig.channels[1],
            ip,
            stream.port or 0,
            "",
            int(start.timestamp()),
            int(end.timestamp()),
        ) + [f"y={stream.ssrc}"]
        assert invite.get("Subject") == f"{rig.channels[1]}:{stream.ssrc},{SERVER_ID}:0"
        units = []
        async with asyncio.timeout(20):
            async for item in psub:  # iteration ends with the device's MediaStatus 121
                if isinstance(item, AccessUnit):
                    units.append(item)
        assert units and units[0].keyframe
