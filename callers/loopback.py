"""Keep WebRTC media on 127.0.0.1 when the target is local.

aioice gathers host candidates from every interface *except* 127.0.0.1, so two local
aiortc peers would exchange RTP over the machine's private address, which is not allowed
here. aioice has no option for this, so this module replaces
`aioice.ice.get_host_addresses` once, in this one place: inside a `loopback_only()` block
(a context variable, so it is per call/task) gathering yields exactly 127.0.0.1; outside
it the original behaviour is unchanged. No STUN either: use RTCConfiguration(iceServers=[]).
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import re
from collections.abc import Iterator
from urllib.parse import urlparse

import aioice.ice

_loopback_only: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "callfleet_loopback_only", default=False
)
_original_get_host_addresses = aioice.ice.get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    if _loopback_only.get():
        return ["127.0.0.1"]
    return _original_get_host_addresses(use_ipv4, use_ipv6)


aioice.ice.get_host_addresses = _get_host_addresses


@contextlib.contextmanager
def loopback_only(enabled: bool = True) -> Iterator[None]:
    """Within this block (this task and what it awaits), ICE gathers only 127.0.0.1."""
    token = _loopback_only.set(enabled)
    try:
        yield
    finally:
        _loopback_only.reset(token)


def is_loopback_url(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ \S+ \d+ (\S+) ", re.MULTILINE)


def candidate_addresses(sdp: str) -> list[str]:
    """Connection addresses of every ICE candidate in an SDP."""
    return _CANDIDATE.findall(sdp)


def keep_loopback_candidates(sdp: str) -> str:
    """Drop every a=candidate line whose address is not on 127.0.0.0/8."""
    lines = []
    for line in sdp.splitlines():
        match = _CANDIDATE.match(line + " ")
        if match and not _is_loopback_address(match.group(1)):
            continue
        lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def _is_loopback_address(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # e.g. an mDNS .local name: not provably local
