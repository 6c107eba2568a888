"""The cascade's SIP role, unit by unit: MANSRTSP bodies, what a superior's INVITE must carry,
INFO/CANCEL/BYE reaching the media part, and DeviceControl forwarded to the right target."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest

from sip import manscdp, mansrtsp
from sip import sdp as sdplib
from sip.cascade import Upstream, inner_xml, ps_payload_type
from sip.cascade_source import SendAnswer, SendEnded, SendRequest
from sip.manscdp import CatalogItem, DeviceInfo, DeviceStatusInfo, RecordItem, el
from sip.mansrtsp import RtspCommand
from sip.message import SipRequest
from sip.settings import UpstreamConfig
from sip.transaction import Endpoint

UP_ID, CH, NVR = "44010000002000000001", "34020000001320000001", "34020000001180000001"


# --- MANSRTSP --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("PLAY RTSP/1.0\r\nCSeq: 3\r\nRange: npt=now-\r\n\r\n", RtspCommand("PLAY", 3)),
        ("PAUSE RTSP/1.0\r\nCSeq: 4\r\nPauseTime: now\r\n\r\n", RtspCommand("PAUSE", 4)),
        ("PLAY RTSP/1.0\r\nCSeq: 5\r\nRange: npt=120-\r\n\r\n", RtspCommand("PLAY", 5, None, 120)),
        ("PLAY RTSP/1.0\r\nCSeq: 6\r\nScale: 2.000000\r\n\r\n", RtspCommand("PLAY", 6, 2.0)),
        (
            "play rtsp/1.0\ncseq: 7\nscale: 0.5\nrange: npt=3.5-10\n",
            RtspCommand("PLAY", 7, 0.5, 3.5),
        ),
        ("TEARDOWN RTSP/1.0\r\nCSeq: 8\r\n\r\n", RtspCommand("TEARDOWN", 8)),
    ],
)
def test_mansrtsp_parse(body: str, expected: RtspCommand) -> None:
    assert mansrtsp.parse(body) == expected
    assert mansrtsp.parse(body.encode()) == expected


@pytest.mark.parametrize(
    "body",
    [
        "",
        "GET / HTTP/1.1\r\n",
        "PLAY RTSP/1.0\r\nCSeq: x\r\n",
        "PLAY RTSP/1.0\r\nScale: fast\r\n",
        "PLAY RTSP/1.0\r\nScale: 1000\r\n",
        "PLAY RTSP/1.0\r\nRange: clock=20260101T000000Z-\r\n",
        "PLAY RTSP/1.0\r\nno colon here\r\n",
        "RECORD RTSP/1.0\r\nCSeq: 1\r\n",
    ],
)
def test_mansrtsp_refuses_what_it_cannot_apply(body: str) -> None:
    with pytest.raises(mansrtsp.MansrtspError):
        mansrtsp.parse(body)


def test_mansrtsp_build_round_trip() -> None:
    for cmd in (
        RtspCommand("PAUSE", 1),
        RtspCommand("PLAY", 2),
        RtspCommand("PLAY", 3, 4.0),
        RtspCommand("PLAY", 4, None, 90.0),
    ):
        body = mansrtsp.build(cmd.method, cmd.cseq, scale=cmd.scale, range_start=cmd.range_start)
        assert mansrtsp.parse(body) == cmd
    assert mansrtsp.parse(mansrtsp.build("PLAY", 2)).is_resume


# --- helpers -------------------------------------------------------------------------------


class FakeSource:
    def __init__(self) -> None:
        self.shared = {CH: NVR}

    async def catalog(self, upstream: Any, local_id: str) -> list[CatalogItem]:
        return [CatalogItem(device_id=c, parent_id=local_id) for c in self.shared]

    async def owner(self, upstream: Any, channel_id: str) -> str | None:
        return self.shared.get(channel_id)

    async def record_info(
        self, upstream: Any, channel_id: str, start: datetime, end: datetime
    ) -> list[RecordItem]:
        return [RecordItem(channel_id, "x", start, end)]

    async def device_info(self, upstream: Any, local_id: str) -> DeviceInfo:
        return DeviceInfo(local_id)

    async def device_status(self, upstream: Any, local_id: str) -> DeviceStatusInfo:
        return DeviceStatusInfo(local_id, "ONLINE", "OK")


class FakeMedia:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.started: list[SendRequest] = []
        self.begun: list[str] = []
        self.controls: list[RtspCommand] = []
        self.stopped: list[str] = []

    async def start_send(self, request: SendRequest, ended: SendEnded) -> SendAnswer:
        if self.fail:
            raise OSError("no port")
        self.started.append(request)
        return SendAnswer("10.0.0.5", 30002, 1234 if request.offer.download_speed else None)

    def begin(self, call_id: str) -> None:
        self.begun.append(call_id)

    async def control(self, call_id: str, command: RtspCommand) -> None:
        self.controls.append(command)

    async def stop_send(self, call_id: str) -> None:
        self.stopped.append(call_id)


class FakeControls:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.sent: list[tuple[str, str, str]] = []

    async def device_control(self, device_id: str, target_id: str, inner: str) -> None:
        if self.fail:
            raise OSError("device offline")
        self.sent.append((device_id, target_id, inner))


class FakeStx:
    def __init__(self, request: SipRequest) -> None:
        self.request = request
        self.replies: list[tuple[int, str | None]] = []
        self.final: Any = None

    def reply(self, status: int, reason: str | None = None, **kw: str) -> None:
        self.replies.append((status, reason))

    def respond(self, resp: Any) -> None:
        self.final = resp


def upstream(media: FakeMedia | None = None, controls: FakeControls | None = None) -> Upstream:
    up = Upstream(
        UpstreamConfig(UP_ID, "4401000000", "127.0.0.1", 5060, "pw"),
        Endpoint(lambda stx: None),
        local_id="34020000002000000001",
        contact_host="127.0.0.1",
        source=FakeSource(),
        controls=controls or FakeControls(),
        media=media,
    )
    up.agent.endpoint.local_tag = "tag1"
    return up


def invite(sdp: str, subject: str = f"{CH}:0440000001,{UP_ID}:0") -> SipRequest:
    req = SipRequest(method="INVITE", uri=f"sip:{CH}@127.0.0.1:5060")
    req.add("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx")
    req.add("From", f"<sip:{UP_ID}@4401000000>;tag=abc")
    req.add("To", f"<sip:{CH}@127.0.0.1:5060>")
    req.add("Call-ID", "call-1@127.0.0.1")
    req.add("CSeq", "1 INVITE")
    if subject:
        req.add("Subject", subject)
    req.body = sdp.replace("\n", "\r\n").encode()
    return req


PLAY = """v=0
o={ch} 0 0 IN IP4 10.0.0.1
s=Play
c=IN IP4 10.0.0.1
t=0 0
m=video 40000 RTP/AVP 96 98
a=recvonly
a=rtpmap:96 PS/90000
a=rtpmap:98 H264/90000
y=0440000001
"""


def sdp(text: str = PLAY, **subs: str) -> str:
    out = text.replace("{ch}", CH)
    for old, new in subs.items():
        out = out.replace(old, new)
    return out


# --- INVITE --------------------------------------------------------------------------------


async def test_live_invite_answered_with_our_address_and_their_ssrc() -> None:
    media = FakeMedia()
    up = upstream(media)
    stx = FakeStx(invite(sdp()))
    await up.on_invite(stx)  # type: ignore[arg-type]
    assert stx.replies == [(100, None)]
    answer = sdplib.parse(stx.final.body)
    assert (answer.ip, answer.port, answer.ssrc) == ("10.0.0.5", 30002, "0440000001")
    assert answer.direction == "sendonly" and answer.rtpmap == {"96": "PS/90000"}
    assert media.started[0].payload_type == 96 and media.started[0].device_id == NVR
    up.on_ack("call-1@127.0.0.1")
    up.on_ack("call-1@127.0.0.1")  # a retransmitted ACK starts nothing twice
    assert media.begun == ["call-1@127.0.0.1"]
    assert up.on_bye("call-1@127.0.0.1") and not up.on_bye("call-2")
    await asyncio.sleep(0.05)
    assert media.stopped == ["call-1@127.0.0.1"] and not up.dialogs


async def test_tcp_offer_gets_the_opposite_setup() -> None:
    up = upstream(FakeMedia())
    tcp = sdp(**{"RTP/AVP": "TCP/RTP/AVP", "a=recvonly": "a=recvonly\na=setup:active"})
    stx = FakeStx(invite(tcp + "a=connection:new\n"))
    await up.on_invite(stx)  # type: ignore[arg-type]
    answer = sdplib.parse(stx.final.body)
    assert answer.tcp and answer.setup == "passive"  # it connects, we listen


async def test_download_answers_file_size_and_uses_u_line() -> None:
    media = FakeMedia()
    up = upstream(media)
    body = sdp(
        **{"s=Play": f"s=Download\nu={CH}:0", "t=0 0": "t=1700000000 1700003600", "y=04": "y=14"}
    )
    stx = FakeStx(invite(body + "a=downloadspeed:4\n", subject=""))
    await up.on_invite(stx)  # type: ignore[arg-type]
    answer = sdplib.parse(stx.final.body)
    assert answer.session_name == "Download" and answer.file_size == 1234
    assert media.started[0].offer.download_speed == 4


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"s=Play": "s=Talk"}, 488),
        ({"y=0440000001\n": ""}, 400),
        ({"s=Play": "s=Playback"}, 488),  # no t= range
        ({"96 98": "98", "a=rtpmap:96 PS/90000\n": ""}, 488),  # no PS offered
        ({"m=video": "m=audio"}, 400),
        ({"c=IN IP4 10.0.0.1": "c=IN"}, 400),
    ],
)
async def test_invites_refused(change: dict[str, str], status: int) -> None:
    media = FakeMedia()
    up = upstream(media)
    stx = FakeStx(invite(sdp(**change)))
    await up.on_invite(stx)  # type: ignore[arg-type]
    assert stx.replies[-1][0] == status and stx.final is None
    assert not media.started and not up.dialogs


async def test_unshared_channel_is_404_and_media_failure_500() -> None:
    up = upstream(FakeMedia())
    other = "34020000001320000099"
    stx = FakeStx(invite(sdp(), subject=f"{other}:0440000001,{UP_ID}:0"))
    stx.request.uri = f"sip:{other}@127.0.0.1"
    await up.on_invite(stx)  # type: ignore[arg-type]
    assert stx.replies == [(404, None)]
    up = upstream(FakeMedia(fail=True))
    stx = FakeStx(invite(sdp()))
    await up.on_invite(stx)  # type: ignore[arg-type]
    assert stx.replies[-1][0] == 500 and not up.dialogs


async def test_info_cancel_and_teardown_reach_the_media() -> None:
    media = FakeMedia()
    up = upstream(media)
    await up.on_invite(FakeStx(invite(sdp())))  # type: ignore[arg-type]
    call = "call-1@127.0.0.1"
    up.on_info(call, "PLAY RTSP/1.0\r\nCSeq: 2\r\nScale: 2.0\r\n\r\n")
    up.on_info(call, "garbage")
    up.on_info("other-call", "PAUSE RTSP/1.0\r\nCSeq: 3\r\n\r\n")
    await asyncio.sleep(0.05)
    assert media.controls == [RtspCommand("PLAY", 2, 2.0)]
    up.on_cancel(call)  # not acknowledged yet: a CANCEL ends it
    await asyncio.sleep(0.05)
    assert media.stopped == [call]
    await up.on_invite(FakeStx(invite(sdp())))  # type: ignore[arg-type]
    up.on_ack(call)
    up.on_cancel(call)  # after the ACK a CANCEL changes nothing
    up.on_info(call, "TEARDOWN RTSP/1.0\r\nCSeq: 9\r\n\r\n")
    await asyncio.sleep(0.05)
    assert media.stopped == [call, call] and not up.dialogs


# --- DeviceControl ---------------------------------------------------------------------------


def control(target: str, inner: str) -> manscdp.Manscdp:
    return manscdp.decode(manscdp.encode("Control", "DeviceControl", 11, target, inner))


async def test_controls_forwarded_to_the_channel_or_its_device() -> None:
    controls = FakeControls()
    up = upstream(controls=controls)
    responses: list[str] = []

    async def respond(doc: Any, inner: str, device_id: str | None = None) -> None:
        responses.append(inner)

    up.agent.respond = respond  # type: ignore[method-assign]
    ptz = el("PTZCmd", "A50F0100000000B5") + "<Info>\r\n" + el("ControlPriority", 5) + "</Info>\r\n"
    assert await up.device_control(control(CH, ptz)) is False  # PTZ: no Response
    assert await up.device_control(control(CH, el("RecordCmd", "Record"))) is True  # Result OK
    reset = (
        el("AlarmCmd", "ResetAlarm")
        + "<Info>\r\n"
        + el("AlarmMethod", 5)
        + el("AlarmType", 2)
        + "</Info>\r\n"
    )
    assert await up.device_control(control(CH, reset)) is True
    assert await up.device_control(control(CH, el("TeleBoot", "Boot"))) is False
    assert await up.device_control(control(CH, el("GuardCmd", "SetGuard"))) is True
    targets = [(d, t) for d, t, _ in controls.sent]
    assert targets == [(NVR, CH), (NVR, CH), (NVR, NVR), (NVR, NVR), (NVR, NVR)]
    sent = [inner for _, _, inner in controls.sent]
    assert "<PTZCmd>A50F0100000000B5</PTZCmd>" in sent[0] and "<ControlPriority>5" in sent[0]
    assert "<AlarmMethod>5</AlarmMethod>" in sent[2] and "<AlarmType>2</AlarmType>" in sent[2]
    assert all("<CmdType>" not in s and "<SN>" not in s for s in sent)
    assert responses == []

    # refused: a malformed PTZ never reaches a camera; a channel not shared; a device failing
    assert await up.device_control(control(CH, el("PTZCmd", "A50F01"))) is False
    assert (
        await up.device_control(control("34020000001320000099", el("RecordCmd", "Record"))) is False
    )
    assert len(controls.sent) == 5
    assert responses == ["<Result>ERROR</Result>\r\n"]
    controls.fail = True
    assert await up.device_control(control(CH, el("GuardCmd", "ResetGuard"))) is False
    assert responses[-1] == "<Result>ERROR</Result>\r\n"


def test_inner_xml_and_payload_type() -> None:
    doc = control(CH, el("GuardCmd", "SetGuard"))
    assert inner_xml(doc) == "<GuardCmd>SetGuard</GuardCmd>\r\n"
    offer = sdplib.parse(
        sdp(**{"a=rtpmap:96 PS/90000": "a=rtpmap:96 PS/90000\na=rtpmap:100 PS/90000"})
    )
    assert ps_payload_type(offer) == 96
    bare = sdplib.parse(sdp(**{"a=rtpmap:96 PS/90000\n": ""}))
    assert ps_payload_type(bare) == 96  # 96 listed without rtpmap: PS by GB convention


async def test_cancel_while_the_media_is_set_up_is_487() -> None:
    gate = asyncio.Event()

    class SlowMedia(FakeMedia):
        async def start_send(self, request: SendRequest, ended: SendEnded) -> SendAnswer:
            await gate.wait()
            return await super().start_send(request, ended)

    media = SlowMedia()
    up = upstream(media)
    stx = FakeStx(invite(sdp()))
    task = asyncio.create_task(up.on_invite(stx))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    up.on_cancel("call-1@127.0.0.1")
    gate.set()
    await task
    await asyncio.sleep(0.05)
    assert stx.replies[-1] == (487, None) and stx.final is None
    assert media.stopped and not up.dialogs
