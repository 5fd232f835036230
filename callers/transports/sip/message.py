"""SIP messages (RFC 3261) as plain data: parse a datagram, build requests and responses,
and the MD5 digest authentication (RFC 2617 / RFC 8760) a 401 or 407 asks for."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field

# RFC 3261 7.3.3: the compact header names
_COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact",
            "l": "content-length", "c": "content-type", "k": "supported", "s": "subject"}
MAX_DATAGRAM = 65_535


class SipParseError(ValueError):
    """A datagram that is not a SIP message."""


@dataclass
class SipMessage:
    """One request ("INVITE sip:... SIP/2.0") or response ("SIP/2.0 200 OK")."""

    start: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return not self.start.startswith("SIP/2.0 ")

    @property
    def method(self) -> str:
        """The request's method, or the response's CSeq method."""
        if self.is_request:
            return self.start.split(" ", 1)[0]
        return self.cseq[1]

    @property
    def uri(self) -> str:
        return self.start.split(" ")[1]

    @property
    def status(self) -> int:
        return int(self.start.split(" ")[1]) if not self.is_request else 0

    @property
    def reason(self) -> str:
        parts = self.start.split(" ", 2)
        return parts[2] if len(parts) > 2 else ""

    @property
    def cseq(self) -> tuple[int, str]:
        number, _, method = (self.header("CSeq") or "0 ").partition(" ")
        return int(number), method.strip()

    @property
    def call_id(self) -> str:
        return self.header("Call-ID") or ""

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        key = name.lower()
        return [v for k, v in self.headers if _COMPACT.get(k.lower(), k.lower()) == key]

    def tag(self, name: str) -> str | None:
        """The tag parameter of the From or To header."""
        match = re.search(r";\s*tag=([^;>\s]+)", self.header(name) or "")
        return match.group(1) if match else None

    def to_bytes(self) -> bytes:
        lines = [self.start]
        lines += [f"{k}: {v}" for k, v in self.headers if k.lower() != "content-length"]
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body

    def label(self) -> str:
        """How the exchange log names it: "INVITE" or "200 INVITE"."""
        return self.method if self.is_request else f"{self.status} {self.method}"


def parse(data: bytes) -> SipMessage:
    """A datagram -> SipMessage; SipParseError when it is not one."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SipParseError("not UTF-8") from e
    lines = text.replace("\r\n", "\n").split("\n")
    start = lines[0].strip()
    if not (start.startswith("SIP/2.0 ") and start[8:11].isdigit()
            or re.fullmatch(r"[A-Z]+ \S+ SIP/2\.0", start)):
        raise SipParseError(f"not a SIP start line: {start[:60]!r}")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:  # folded continuation line
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise SipParseError(f"bad header line: {line[:60]!r}")
        headers.append((name.strip(), value.strip()))
    message = SipMessage(start, headers, body)
    length = message.header("Content-Length")
    if length is not None and length.strip().isdigit():
        message.body = body[:int(length)]
    for required in ("Via", "CSeq", "Call-ID", "From", "To"):
        if message.header(required) is None:
            raise SipParseError(f"no {required} header")
    try:
        message.cseq  # noqa: B018 (validates)
        message.status  # noqa: B018
    except ValueError as e:
        raise SipParseError("bad CSeq or status") from e
    return message


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


def new_tag() -> str:
    return secrets.token_hex(6)


def response(request: SipMessage, status: int, reason: str, *, to_tag: str | None = None,
             headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> SipMessage:
    """A response to request: its Via, From, To (with to_tag added), Call-ID and CSeq."""
    to = request.header("To") or ""
    if to_tag and ";tag=" not in to.replace(" ", ""):
        to = f"{to};tag={to_tag}"
    copied = [(k, v) for k, v in request.headers
              if _COMPACT.get(k.lower(), k.lower()) in ("via", "from", "call-id", "cseq")]
    return SipMessage(f"SIP/2.0 {status} {reason}", [*copied, ("To", to), *(headers or [])],
                      body)


# --- digest authentication -------------------------------------------------------------------

def parse_challenge(value: str) -> dict[str, str]:
    """`Digest realm="x", nonce="y", qop="auth"` -> {"realm": "x", ...} (keys lower case)."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return {}
    return {k.lower(): v1 or v2 for k, v1, v2 in
            re.findall(r'([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))', rest)}


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 (the protocol's hash)


def digest_response(*, username: str, password: str, realm: str, method: str, uri: str,
                    nonce: str, qop: str | None = None, nc: str = "00000001",
                    cnonce: str = "") -> str:
    """RFC 2617 3.2.2.1: the request-digest, with qop=auth or without qop."""
    ha1 = _md5(f"{username}:{realm}:{password}")
    ha2 = _md5(f"{method}:{uri}")
    if qop == "auth":
        return _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _md5(f"{ha1}:{nonce}:{ha2}")


class DigestUnsupported(ValueError):
    """A challenge this UA cannot answer (an algorithm other than MD5, qop auth-int only)."""


def authorization(challenge: dict[str, str], *, username: str, password: str, method: str,
                  uri: str, nc: int = 1, cnonce: str | None = None) -> str:
    """The Authorization (or Proxy-Authorization) value answering a parsed challenge."""
    algorithm = challenge.get("algorithm", "MD5")
    if algorithm.upper() != "MD5":
        raise DigestUnsupported(f"digest algorithm {algorithm}")
    offered = [q.strip() for q in challenge.get("qop", "").split(",") if q.strip()]
    if offered and "auth" not in offered:
        raise DigestUnsupported(f"qop {challenge['qop']}")
    qop = "auth" if offered else None
    cnonce = cnonce or secrets.token_hex(8)
    realm, nonce = challenge.get("realm", ""), challenge.get("nonce", "")
    value = digest_response(username=username, password=password, realm=realm, method=method,
                            uri=uri, nonce=nonce, qop=qop, nc=f"{nc:08x}", cnonce=cnonce)
    parts = [f'username="{username}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"',
             f'response="{value}"', "algorithm=MD5"]
    if qop:
        parts += [f"qop={qop}", f"nc={nc:08x}", f'cnonce="{cnonce}"']
    if "opaque" in challenge:
        parts.append(f'opaque="{challenge["opaque"]}"')
    return "Digest " + ", ".join(parts)


# --- SIP URIs ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SipUri:
    user: str | None
    host: str
    port: int

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"sip:{user}{self.host}:{self.port}"


def parse_uri(text: str) -> SipUri:
    """`sip:user@host:port` (port 5060 when absent); ValueError naming what is wrong."""
    match = re.fullmatch(r"sip:(?:([^@:;]+)@)?([A-Za-z0-9.\-]+)(?::(\d+))?(?:;.*)?", text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a sip:user@host:port URI")
    port = int(match.group(3) or 5060)
    if not 0 < port < 65536:
        raise ValueError(f"{text!r}: port {port} is out of range")
    return SipUri(match.group(1), match.group(2), port)


def contact_uri(value: str) -> str | None:
    """The URI inside a Contact/From/To header value (`"A" <sip:a@h>;tag=x` -> `sip:a@h`)."""
    match = re.search(r"<([^>]+)>", value)
    uri = match.group(1) if match else value.split(";", 1)[0].strip()
    return uri if uri.startswith("sip:") else None
