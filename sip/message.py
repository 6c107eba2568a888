"""SIP messages (RFC 3261 §7): parse and serialise, no I/O.

Strict about framing (start line, header syntax, Content-Length over streams) but
tolerant of what real NVRs send: any header case, compact forms, folded lines,
LF-only line ends, a missing final CRLF, and UDP bodies whose Content-Length is wrong.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

SIP_VERSION = "SIP/2.0"
BRANCH_MAGIC = "z9hG4bK"  # RFC 3261 §8.1.1.7
MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 256 * 1024

COMPACT = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
}
_CANONICAL = {
    n.lower(): n
    for n in (
        "Via From To Call-ID CSeq Contact Max-Forwards Expires Content-Type Content-Length "
        "WWW-Authenticate Authorization User-Agent Date Subject Allow Supported Route "
        "Record-Route Event Subscription-State Content-Encoding X-GB-Ver Reason Server "
        "Proxy-Authenticate Proxy-Authorization Min-Expires Retry-After"
    ).split()
}
REASONS = {
    100: "Trying",
    180: "Ringing",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    415: "Unsupported Media Type",
    423: "Interval Too Brief",
    481: "Call/Transaction Does Not Exist",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}
_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")
_URI = re.compile(
    r"^(?:sips?:)(?:(?P<user>[^@;>]*)@)?(?P<host>\[[^\]]+\]|[^:;>?]+)(?::(?P<port>\d+))?"
)


class SipParseError(ValueError):
    """The bytes are not a SIP message we can act on (answer 400 when possible)."""


@functools.lru_cache(maxsize=2048)
def canonical(name: str) -> str:
    low = name.strip().lower()
    if low in COMPACT:
        return COMPACT[low]
    return _CANONICAL.get(low, name.strip())


@functools.lru_cache(maxsize=2048)
def _key(name: str) -> str:
    return canonical(name).lower()


@functools.lru_cache(maxsize=4096)
def _header_name(raw: str) -> str | None:
    """The canonical name of a header as written on the wire, None when it is no token
    (cached: every message repeats the same dozen names)."""
    name = raw.strip()
    return canonical(name) if _HEADER_NAME.match(name) else None


def new_branch() -> str:
    return BRANCH_MAGIC + secrets.token_hex(8)


def new_tag() -> str:
    return secrets.token_hex(5)


def new_call_id(host: str = "") -> str:
    return secrets.token_hex(10) + (f"@{host}" if host else "")


@dataclass
class SipMessage:
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    _parsed: dict[str, object] = field(default_factory=dict, repr=False, compare=False)

    def _index(self) -> dict[str, list[str]]:
        """Values by lower-cased canonical name, built once per state of ``headers``: a
        message is asked for the same few headers many times on its way through."""
        index = self._parsed.get("#")
        if index is None:
            index = {}
            for n, v in self.headers:
                index.setdefault(_key(n), []).append(v)
            self._parsed["#"] = index
        return index  # type: ignore[return-value]

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self._index().get(_key(name))
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        return list(self._index().get(_key(name), ()))

    def _forget(self, name: str) -> None:
        """A header changed: its parsed form (cached under its lower-cased name: "via",
        "from", "to", "cseq") and the index go, the other parsed ones stay."""
        self._parsed.pop("#", None)
        self._parsed.pop(_key(name), None)

    def set(self, name: str, value: str) -> None:
        key = canonical(name)
        self.remove(key)  # forgets its parsed form
        self.headers.append((key, value))

    def add(self, name: str, value: str) -> None:
        self._forget(name)
        self.headers.append((canonical(name), value))

    def remove(self, name: str) -> None:
        key = _key(name)
        self._forget(name)
        self.headers = [(n, v) for n, v in self.headers if _key(n) != key]

    def prepend(self, name: str, value: str) -> None:
        self._forget(name)
        self.headers.insert(0, (canonical(name), value))

    def replace_header(self, index: int, name: str, value: str) -> None:
        self._forget(self.headers[index][0])
        self._forget(name)
        self.headers[index] = (canonical(name), value)

    def _cached(self, key: str, make: Callable[[], T]) -> T:
        value = self._parsed.get(key)
        if value is None:
            value = self._parsed[key] = make()
        return value  # type: ignore[return-value]

    @property
    def call_id(self) -> str:
        return self.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        return self._cached("cseq", lambda: parse_cseq(self.get("CSeq") or ""))

    @property
    def via(self) -> Via:
        def make() -> Via:
            vias = self.get_all("Via")
            if not vias:
                raise SipParseError("no Via")
            return Via.parse(vias[0].split(",")[0])

        return self._cached("via", make)

    @property
    def from_(self) -> NameAddr:
        return self._cached("from", lambda: NameAddr.parse(self.get("From") or ""))

    @property
    def to(self) -> NameAddr:
        return self._cached("to", lambda: NameAddr.parse(self.get("To") or ""))

    @property
    def content_type(self) -> str:
        return (self.get("Content-Type") or "").split(";")[0].strip().lower()

    def _serialise(self, start: str) -> bytes:
        lines = [start]
        for n, v in self.headers:
            if n.lower() != "content-length":
                lines.append(f"{n}: {v}")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


@dataclass
class SipRequest(SipMessage):
    method: str = ""
    uri: str = ""

    def serialise(self) -> bytes:
        return self._serialise(f"{self.method} {self.uri} {SIP_VERSION}")

    def note_received(self, host: str, port: int) -> None:
        """RFC 3581: a top Via asking ``;rport`` gets where the request really came from.

        The parsed Via, if any, is updated rather than thrown away: this runs on every
        request received over UDP."""
        i = next((i for i, (n, _) in enumerate(self.headers) if n == "Via"), -1)
        if i < 0:
            return
        top = self.headers[i][1]
        first, comma, rest = top.partition(",")  # only the first value of a joined Via
        if ";rport" not in first or "rport=" in first:
            return
        first = first.replace(";rport", f";rport={port}", 1) + f";received={host}"
        via = self._parsed.get("via")
        self.replace_header(i, "Via", first + comma + rest)
        if isinstance(via, Via):
            self._parsed["via"] = Via(
                via.transport,
                via.host,
                via.port,
                {**via.params, "rport": str(port), "received": host},
            )


@dataclass
class SipResponse(SipMessage):
    status: int = 0
    reason: str = ""

    def serialise(self) -> bytes:
        return self._serialise(f"{SIP_VERSION} {self.status} {self.reason}")


def parse_cseq(value: str) -> tuple[int, str]:
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit() or len(parts[0]) > 10:
        raise SipParseError(f"bad CSeq {value!r}")
    return int(parts[0]), parts[1].upper()


def _params(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        k, _, v = part.partition("=")
        out[k.strip().lower()] = v.strip().strip('"')
    return out


@dataclass
class Via:
    transport: str
    host: str
    port: int | None
    params: dict[str, str]

    @classmethod
    def parse(cls, value: str) -> Via:
        value = value.strip()
        proto, _, rest = value.partition(" ")
        bits = proto.split("/")
        if len(bits) != 3 or bits[0].upper() != "SIP":
            raise SipParseError(f"bad Via {value!r}")
        sent_by, _, params = rest.strip().partition(";")
        host, port = split_host_port(sent_by.strip())
        return cls(bits[2].upper(), host, port, _params(params))

    @property
    def branch(self) -> str:
        return self.params.get("branch", "")


def split_host_port(text: str) -> tuple[str, int | None]:
    if not text:
        raise SipParseError("empty host")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = text.partition(":")
    if port and (not port.isdigit() or int(port) > 65535):
        raise SipParseError(f"bad port in {text!r}")
    return host, int(port) if port else None


@dataclass
class SipUri:
    user: str
    host: str
    port: int | None

    @classmethod
    def parse(cls, text: str) -> SipUri:
        m = _URI.match(text.strip().strip("<>"))
        if m is None:
            raise SipParseError(f"bad SIP URI {text!r}")
        port = m.group("port")
        if port and int(port) > 65535:
            raise SipParseError(f"bad port in {text!r}")
        return cls(m.group("user") or "", m.group("host"), int(port) if port else None)


@dataclass
class NameAddr:
    """``"name" <sip:user@host>;tag=x`` or the bare ``sip:user@host;tag=x`` form."""

    uri: str
    params: dict[str, str]

    @classmethod
    def parse(cls, value: str) -> NameAddr:
        value = value.strip()
        if "<" in value:
            start = value.index("<")
            end = value.find(">", start)
            if end < 0:
                raise SipParseError(f"unclosed < in {value!r}")
            return cls(value[start + 1 : end], _params(value[end + 1 :]))
        uri, _, params = value.partition(";")
        if not uri:
            raise SipParseError("empty address")
        return cls(uri, _params(params))

    @property
    def tag(self) -> str:
        return self.params.get("tag", "")

    @property
    def user(self) -> str:
        return SipUri.parse(self.uri).user


def _split_head(data: bytes) -> tuple[bytes, bytes, bool]:
    """Head and body; the flag says whether a blank line was found."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        idx = data.find(sep)
        if idx >= 0:
            return data[:idx], data[idx + len(sep) :], True
    return data, b"", False


def parse_head(head: bytes) -> SipRequest | SipResponse:
    if len(head) > MAX_HEADER_BYTES:
        raise SipParseError("header section too large")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = head.decode("gb18030", errors="replace")
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        raise SipParseError("empty message")
    start = lines[0].strip()
    msg: SipRequest | SipResponse
    if start.startswith("SIP/"):
        parts = start.split(" ", 2)
        if parts[0].upper() != SIP_VERSION or len(parts) < 2:
            raise SipParseError(f"bad status line {start!r}")
        if not (parts[1].isdigit() and len(parts[1]) == 3 and 100 <= int(parts[1]) <= 699):
            raise SipParseError(f"bad status code {parts[1]!r}")
        msg = SipResponse(status=int(parts[1]), reason=parts[2] if len(parts) > 2 else "")
    else:
        parts = start.split(" ")
        if len(parts) != 3 or parts[2].upper() != SIP_VERSION or not _TOKEN.match(parts[0]):
            raise SipParseError(f"bad request line {start!r}")
        if not parts[1] or ":" not in parts[1]:
            raise SipParseError(f"bad Request-URI {parts[1]!r}")
        msg = SipRequest(method=parts[0].upper(), uri=parts[1])
    for line in lines[1:]:
        if not line.strip():
            continue
        if line[0] in " \t":  # folded continuation (RFC 3261 §7.3.1)
            if not msg.headers:
                raise SipParseError("continuation before any header")
            n, v = msg.headers[-1]
            msg.headers[-1] = (n, v + " " + line.strip())
            continue
        name, sep, value = line.partition(":")
        known = _header_name(name) if sep else None
        if known is None:
            raise SipParseError(f"bad header line {line[:60]!r}")
        msg.headers.append((known, value.strip()))
    for required in ("Via", "From", "To", "Call-ID", "CSeq"):
        if msg.get(required) is None:
            raise SipParseError(f"missing {required}")
    msg.cseq  # noqa: B018 - validates
    msg.via  # noqa: B018
    msg.from_  # noqa: B018
    msg.to  # noqa: B018
    if isinstance(msg, SipRequest) and msg.cseq[1] != msg.method:
        raise SipParseError("CSeq method differs from request method")
    return msg


def content_length(msg: SipMessage) -> int | None:
    raw = msg.get("Content-Length")
    if raw is None:
        return None
    raw = raw.strip()
    if not raw.isdigit() or len(raw) > 9:
        raise SipParseError(f"bad Content-Length {raw!r}")
    return int(raw)


def parse_datagram(data: bytes) -> SipRequest | SipResponse:
    """One UDP datagram; a Content-Length larger than the body is forgiven (vendor quirk)."""
    head, body, _ = _split_head(data)
    msg = parse_head(head)
    length = content_length(msg)
    if length is not None and length < len(body):
        body = body[:length]
    if len(body) > MAX_BODY_BYTES:
        raise SipParseError("body too large")
    msg.body = body
    return msg


class StreamFramer:
    """Cuts SIP messages out of a TCP byte stream by Content-Length (RFC 3261 §18.3)."""

    def __init__(self, max_buffer: int = MAX_HEADER_BYTES + MAX_BODY_BYTES) -> None:
        self._buf = bytearray()
        self.max_buffer = max_buffer

    def feed(self, data: bytes) -> list[SipRequest | SipResponse]:
        """Messages completed by ``data``; raises SipParseError when the stream is unusable."""
        self._buf += data
        out: list[SipRequest | SipResponse] = []
        while True:
            while self._buf[:2] in (b"\r\n",) or self._buf[:1] == b"\n":  # keepalive CRLFs
                del self._buf[: 2 if self._buf[:2] == b"\r\n" else 1]
            idx = self._buf.find(b"\r\n\r\n")
            sep = 4
            if idx < 0:
                idx, sep = self._buf.find(b"\n\n"), 2
            if idx < 0:
                if len(self._buf) > MAX_HEADER_BYTES:
                    raise SipParseError("header section too large")
                if len(self._buf) > self.max_buffer:
                    raise SipParseError("buffer limit exceeded")
                return out
            head = bytes(self._buf[:idx])
            msg = parse_head(head)
            length = content_length(msg) or 0
            if length > MAX_BODY_BYTES:
                raise SipParseError("body too large")
            end = idx + sep + length
            if len(self._buf) < end:
                return out
            msg.body = bytes(self._buf[idx + sep : end])
            del self._buf[:end]
            out.append(msg)


_COPIED = ("Via", "From", "To", "Call-ID", "CSeq")


def response_for(
    req: SipRequest, status: int, reason: str | None = None, to_tag: str | None = None
) -> SipResponse:
    """A response copying Via/From/To/Call-ID/CSeq as RFC 3261 §8.2.6.2 requires."""
    resp = SipResponse(status=status, reason=reason or REASONS.get(status, "Unknown"))
    resp.headers = [(name, v) for name in _COPIED for v in req.get_all(name)]
    if to_tag and status != 100:
        to = req.get("To") or ""
        if ";tag=" not in to.replace(" ", ""):
            resp.set("To", f"{to};tag={to_tag}")
    return resp
