"""SDP offer/answer (RFC 3264) for one audio stream of G.711: PCMU (0), PCMA (8), and
telephone-event (RFC 4733) offered and otherwise ignored."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

PAYLOAD_TYPES = {"pcmu": 0, "pcma": 8}
CODEC_NAMES = {0: "PCMU", 8: "PCMA"}
TELEPHONE_EVENT = 101
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
# What we answer to the direction the other side offers (RFC 3264 6.1).
ANSWER_DIRECTION = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly",
                    "inactive": "inactive"}


class SdpError(ValueError):
    """An SDP we cannot use (no audio, no address, no codec in common)."""


@dataclass
class AudioDescription:
    """What one side's SDP says about its audio: where to send RTP, in which formats."""

    address: str
    port: int
    payload_types: list[int] = field(default_factory=list)
    direction: str = "sendrecv"
    ptime_ms: int = 20

    @property
    def sends(self) -> bool:
        return self.direction in ("sendrecv", "sendonly")

    @property
    def receives(self) -> bool:
        return self.direction in ("sendrecv", "recvonly")


def build(address: str, port: int, payload_types: list[int], *, direction: str = "sendrecv",
          session_id: int | None = None, version: int = 1, user: str = "callfleet") -> str:
    """An SDP with one audio m-line: payload_types in order of preference."""
    sid = session_id if session_id is not None else secrets.randbelow(1 << 31)
    lines = ["v=0", f"o={user} {sid} {version} IN IP4 {address}", "s=callfleet",
             f"c=IN IP4 {address}", "t=0 0",
             f"m=audio {port} RTP/AVP {' '.join(str(pt) for pt in payload_types)}"]
    for pt in payload_types:
        if pt in CODEC_NAMES:
            lines.append(f"a=rtpmap:{pt} {CODEC_NAMES[pt]}/8000")
        elif pt == TELEPHONE_EVENT:
            lines += [f"a=rtpmap:{pt} telephone-event/8000", f"a=fmtp:{pt} 0-16"]
    lines += ["a=ptime:20", f"a={direction}"]
    return "\r\n".join(lines) + "\r\n"


def offer(address: str, port: int, codec: str = "pcmu", **kw) -> str:
    """Our offer: the configured codec first, the other G.711 law next, telephone-event."""
    first = PAYLOAD_TYPES[codec]
    rest = [pt for pt in PAYLOAD_TYPES.values() if pt != first]
    return build(address, port, [first, *rest, TELEPHONE_EVENT], **kw)


def parse(text: str | bytes) -> AudioDescription:
    """The first audio stream of an SDP; SdpError when there is none we can reach."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    session_address, audio, direction = None, None, "sendrecv"
    media_address, ptime, in_audio = None, 20, False
    names: dict[int, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            if audio is not None and in_audio:
                break  # only the first audio stream
            parts = line[2:].split()
            in_audio = len(parts) >= 4 and parts[0] == "audio"
            if in_audio:
                try:
                    audio = (int(parts[1]), [int(p) for p in parts[3:] if p.isdigit()])
                except ValueError as e:
                    raise SdpError(f"bad m-line: {line[:60]}") from e
        elif line.startswith("c="):
            address = line.split()[-1].split("/")[0]
            if in_audio:
                media_address = address
            elif audio is None:
                session_address = address
        elif line.startswith("a=") and (in_audio or audio is None):
            attribute = line[2:]
            if attribute in DIRECTIONS:
                direction = attribute
            elif attribute.startswith("ptime:") and attribute[6:].strip().isdigit():
                ptime = int(attribute[6:])
            elif attribute.startswith("rtpmap:"):
                pt, _, name = attribute[7:].partition(" ")
                if pt.isdigit():
                    names[int(pt)] = name.split("/")[0].upper()
    if audio is None:
        raise SdpError("no audio m-line")
    address = media_address or session_address
    if not address:
        raise SdpError("no connection address")
    port, pts = audio
    # a dynamic payload type named PCMU/PCMA in its rtpmap is still G.711
    pts = [(0 if names.get(p) == "PCMU" else 8 if names.get(p) == "PCMA" else p)
           if p >= 96 else p for p in pts]
    return AudioDescription(address, port, pts, "inactive" if port == 0 else direction, ptime)


def choose_codec(remote: AudioDescription, supported: list[int] | None = None) -> int:
    """The first G.711 payload type of the remote's list that we support (its preference)."""
    supported = supported or list(CODEC_NAMES)
    for pt in remote.payload_types:
        if pt in supported:
            return pt
    raise SdpError("no codec in common (PCMU or PCMA needed), got payload types "
                   f"{remote.payload_types}")


def answer(remote_offer: AudioDescription, address: str, port: int, *,
           supported: list[int] | None = None, session_id: int | None = None,
           version: int = 1) -> tuple[str, int]:
    """(our answer, the payload type chosen) to an offer."""
    pt = choose_codec(remote_offer, supported)
    extra = [TELEPHONE_EVENT] if TELEPHONE_EVENT in remote_offer.payload_types else []
    sdp = build(address, port, [pt, *extra], session_id=session_id, version=version,
                direction=ANSWER_DIRECTION[remote_offer.direction])
    return sdp, pt
