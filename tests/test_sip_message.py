"""Pure wire-format code of sip/: SIP messages, digest, MANSCDP, PTZ, SDP — bytes in, bytes out."""

from __future__ import annotations

import pytest

from sip import manscdp, ptz, sdp
from sip.auth import DigestAuthenticator, authorization_header, digest_response, parse_digest
from sip.message import (
    SipParseError,
    SipRequest,
    SipResponse,
    StreamFramer,
    parse_datagram,
    response_for,
)
from sip.transaction import bad_request_for

REGISTER = (
    b"REGISTER sip:34020000002000000001@3402000000 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.168.1.64:5060;rport;branch=z9hG4bK1288469017\r\n"
    b"From: <sip:34020000001180000001@3402000000>;tag=1725840235\r\n"
    b"To: <sip:34020000001180000001@3402000000>\r\n"
    b"Call-ID: 1846525722\r\n"
    b"CSeq: 1 REGISTER\r\n"
    b"Contact: <sip:34020000001180000001@192.168.1.64:5060>\r\n"
    b"Max-Forwards: 70\r\n"
    b"Expires: 3600\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def test_register_from_the_spec_parses() -> None:
    msg = parse_datagram(REGISTER)
    assert isinstance(msg, SipRequest)
    assert msg.method == "REGISTER"
    assert msg.from_.user == "34020000001180000001"
    assert msg.from_.tag == "1725840235"
    assert msg.cseq == (1, "REGISTER")
    assert msg.via.branch == "z9hG4bK1288469017"
    assert msg.via.host == "192.168.1.64" and msg.via.port == 5060
    again = parse_datagram(msg.serialise())
    assert again.headers == msg.headers


def test_vendor_quirks_are_tolerated() -> None:
    quirky = (
        b"MESSAGE sip:a@b SIP/2.0\n"
        b"v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKx\n"
        b"f: <sip:34020000001180000001@3402000000>;tag=1\n"
        b"t: <sip:34020000002000000001@3402000000>\n"
        b"i: abc\n"
        b"cseq: 2 MESSAGE\n"
        b"SUBJECT: first part,\n second part\n"
        b"c: Application/MANSCDP+xml\n"
        b"l: 500\n\n"
        b"<Notify/>"
    )
    msg = parse_datagram(quirky)
    assert msg.call_id == "abc"
    assert msg.get("subject") == "first part, second part"
    assert msg.content_type == "application/manscdp+xml"
    assert msg.body == b"<Notify/>"  # Content-Length larger than the datagram: forgiven
    no_blank_line = REGISTER.replace(b"Content-Length: 0\r\n\r\n", b"Content-Length: 0")
    assert parse_datagram(no_blank_line).method == "REGISTER"
    short = REGISTER.replace(b"Content-Length: 0", b"Content-Length: 3") + b"abcdef"
    assert parse_datagram(short).body == b"abc"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello world\r\n\r\n",
        b"REGISTER sip:x SIP/3.0\r\n\r\n",
        REGISTER.replace(b"CSeq: 1 REGISTER", b"CSeq: x REGISTER"),
        REGISTER.replace(b"CSeq: 1 REGISTER", b"CSeq: 1 INVITE"),
        REGISTER.replace(b"Call-ID: 1846525722\r\n", b""),
        REGISTER.replace(b"Via: SIP/2.0/UDP", b"Via: XYZ"),
        REGISTER.replace(b"Content-Length: 0", b"Content-Length: -5"),
        b"SIP/2.0 2000 OK\r\n\r\n",
        REGISTER.replace(b"Max-Forwards: 70", b"Bad Header Line"),
    ],
)
def test_malformed_messages_raise(data: bytes) -> None:
    with pytest.raises(SipParseError):
        parse_datagram(data)


def test_bad_request_for_keeps_the_addressing_headers() -> None:
    broken = REGISTER.replace(b"CSeq: 1 REGISTER", b"CSeq: 1 REGISTER\r\nBad Header Line")
    resp = bad_request_for(broken, "bad header")
    assert resp is not None and resp.status == 400
    assert resp.get("Call-ID") == "1846525722"
    assert bad_request_for(b"\x00\x01garbage", "x") is None


def test_stream_framer_cuts_by_content_length_across_chunks() -> None:
    body = b"<x>1</x>"
    one = REGISTER.replace(b"Content-Length: 0", b"Content-Length: 8") + body
    stream = b"\r\n\r\n" + one + one
    framer = StreamFramer()
    out = []
    for i in range(0, len(stream), 7):
        out += framer.feed(stream[i : i + 7])
    assert [m.body for m in out] == [body, body]
    with pytest.raises(SipParseError):
        StreamFramer().feed(b"A" * 20000)


def test_response_for_copies_dialog_headers_and_adds_to_tag() -> None:
    req = parse_datagram(REGISTER)
    assert isinstance(req, SipRequest)
    resp = response_for(req, 401, to_tag="abc")
    data = parse_datagram(resp.serialise())
    assert isinstance(data, SipResponse) and data.status == 401
    assert data.to.tag == "abc" and data.call_id == req.call_id


def test_digest_qop_and_no_qop_and_expiry() -> None:
    dev, client = "34020000001180000001", ("UDP", "127.0.0.1", 5060)
    auth = DigestAuthenticator("3402000000", nonce_ttl_s=300)
    challenge = parse_digest(auth.challenge(client, dev))
    assert challenge["algorithm"] == "MD5" and challenge["qop"] == "auth"
    uri = "sip:34020000002000000001@3402000000"
    header = authorization_header(dev, "pw", "REGISTER", uri, challenge)
    bad = auth.verify(header, "REGISTER", "other", client, dev)
    assert not bad.ok and not bad.stale and bad.guess
    assert auth.verify(header, "REGISTER", "pw", client, dev).ok
    # RFC 2069 style (device ignores qop): response = MD5(HA1:nonce:HA2), single use
    nonce = parse_digest(auth.challenge(client, dev))["nonce"]
    resp = digest_response(dev, "3402000000", "pw", "REGISTER", uri, nonce)
    old = (
        f'Digest username="{dev}",realm="3402000000",nonce="{nonce}",'
        f'uri="{uri}",response="{resp}",algorithm=MD5'
    )
    assert auth.verify(old, "REGISTER", "pw", client, dev).ok
    assert auth.verify(old, "REGISTER", "pw", client, dev).stale  # used up
    expired = DigestAuthenticator("3402000000", nonce_ttl_s=0.0)
    ch = parse_digest(expired.challenge(client, dev))
    h = authorization_header(dev, "pw", "REGISTER", uri, ch)
    result = expired.verify(h, "REGISTER", "pw", client, dev)
    assert result.stale and result.reason == "nonce expired"


def test_digest_known_vector() -> None:
    # RFC 2617 §3.5 example values
    assert (
        digest_response(
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "auth",
            "00000001",
            "0a4f113b",
        )
        == "6629fae49393a05397450978507c4ef1"
    )


CATALOG_GB2312 = (
    '<?xml version="1.0" encoding="GB2312"?>\r\n<Response><CmdType>Catalog</CmdType><SN>7</SN>'
    '<DeviceID>34020000001180000001</DeviceID><SumNum>1</SumNum><DeviceList Num="1"><Item>'
    "<DeviceID>34020000001320000001</DeviceID><Name>北门枪机 A&B</Name><Status>ON</Status>"
    "<Info><PTZType>3</PTZType></Info></Item></DeviceList></Response>"
).encode("gb2312")


def test_manscdp_gb2312_with_stray_ampersand() -> None:
    doc = manscdp.decode(CATALOG_GB2312)
    assert (doc.root, doc.cmd_type, doc.sn, doc.charset) == ("Response", "Catalog", 7, "GB2312")
    item = manscdp.CatalogItem.from_element(manscdp.list_items(doc, "DeviceList")[0])
    assert item.name == "北门枪机 AB"  # raw & dropped as WVP does
    assert item.ptz_type == 3 and item.is_channel


def test_manscdp_undeclared_charsets_and_rare_characters() -> None:
    utf8 = "<Notify><CmdType>Keepalive</CmdType><SN>1</SN><DeviceID>萳</DeviceID></Notify>"
    assert manscdp.decode(utf8.encode()).device_id == "萳"
    gb = utf8.encode("gb18030")
    assert manscdp.decode(gb).device_id == "萳"
    declared = b'<?xml version="1.0" encoding="GBK"?>' + gb
    assert manscdp.decode(declared).device_id == "萳"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<Query>",
        b"<Foo><CmdType>x</CmdType><SN>1</SN></Foo>",
        b"<Query><SN>1</SN></Query>",
        b"<Query><CmdType>Catalog</CmdType><SN>abc</SN></Query>",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]>'
        b"<Query><CmdType>&b;</CmdType><SN>1</SN></Query>",
    ],
)
def test_manscdp_rejects_bad_bodies(body: bytes) -> None:
    with pytest.raises(manscdp.ManscdpError):
        manscdp.decode(body)


def test_manscdp_encode_round_trip_in_gb2312() -> None:
    item = manscdp.CatalogItem(
        "34020000001320000001", name="罐区球机", owner="o", address="a", status="ON", ptz_type=1
    )
    inner = manscdp.el("SumNum", 1) + '<DeviceList Num="1">' + item.to_xml() + "</DeviceList>"
    body = manscdp.encode("Response", "Catalog", 3, "34020000001180000001", inner, "GB2312")
    assert "罐区球机".encode("gb2312") in body
    doc = manscdp.decode(body)
    assert manscdp.CatalogItem.from_element(manscdp.list_items(doc, "DeviceList")[0]) == item


def test_record_ranges_are_sorted_and_merged() -> None:
    from datetime import datetime

    def r(a: int, b: int) -> manscdp.RecordItem:
        return manscdp.RecordItem("c", "n", datetime(2026, 1, 1, a), datetime(2026, 1, 1, b))

    merged = manscdp.merge_ranges([r(5, 6), r(1, 2), r(2, 3), r(1, 2), r(8, 9), r(5, 7)])
    assert [(a.hour, b.hour) for a, b in merged] == [(1, 3), (5, 7), (8, 9)]


def test_ptz_commands_match_the_standard_examples() -> None:
    assert ptz.move("up", 0x40) == "A50F01084040003D"
    assert ptz.move("stop") == "A50F0100000000B5"
    assert ptz.zoom("in", 1) == "A50F0110000010D5"
    assert ptz.preset("call", 3) == "A50F01820003003A"
    assert ptz.parse("A50F01084040003D") == {
        "op": 0x08,
        "data1": 0x40,
        "data2": 0x40,
        "zoom": 0,
        "address": 1,
    }
    with pytest.raises(ValueError):
        ptz.parse("A50F01084040003E")
    with pytest.raises(ValueError):
        ptz.move("sideways")


def test_sdp_answer_with_gb_lines() -> None:
    answer = (
        b"v=0\r\no=34020000001320000001 0 0 IN IP4 192.168.1.64\r\ns=Play\r\n"
        b"c=IN IP4 192.168.1.64\r\nt=0 0\r\nm=video 15060 RTP/AVP 96\r\na=sendonly\r\n"
        b"a=rtpmap:96 PS/90000\r\ny=0200000001\r\nf=\r\n"
    )
    s = sdp.parse(answer)
    assert (s.ip, s.port, s.ssrc, s.direction, s.fmt) == (
        "192.168.1.64",
        15060,
        "0200000001",
        "sendonly",
        "",
    )
    offer = sdp.Sdp(
        session_name="Playback",
        origin_user="c",
        ip="10.0.0.1",
        port=30002,
        proto="TCP/RTP/AVP",
        setup="passive",
        uri="c:0",
        start=1,
        end=2,
        ssrc="1200000001",
    )
    text = offer.serialise().decode()
    assert "a=recvonly\r\na=rtpmap:96 PS/90000" in text
    back = sdp.parse(text)
    assert (back.tcp, back.setup, back.start, back.end, back.uri) == (True, "passive", 1, 2, "c:0")
    with pytest.raises(sdp.SdpError):
        sdp.parse(b"v=0\r\ns=Play\r\n")
