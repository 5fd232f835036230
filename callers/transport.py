"""The target (every transport's options), and WebRTC's signaling adapters (json-offer, WHIP)
and a bounded peer-connection life (callers/transports/webrtc.py uses them).

Signaling is bounded against a hostile or broken agent: the whole exchange (connect, headers,
body, redirects) within target.signaling_timeout_s, however slowly bytes drip; an answer body
of at most MAX_ANSWER_BYTES, never read whole when larger; at most MAX_REDIRECTS redirects, and
only 307/308 (they keep the POST and its offer; RFC 9725 asks WHIP clients to follow them), never
from a loopback target off the machine, and the token only to the target's own origin. The body
decides what the answer is, not its Content-Type (which a failure's detail names).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from callers.errors import CallFailed, ConfigError
from callers.loopback import is_loopback_url
from callers.trace_context import with_traceparent

log = logging.getLogger(__name__)

CODECS = {"opus": "audio/opus", "pcmu": "audio/PCMU"}
MAX_ANSWER_BYTES = 256 * 1024  # an SDP answer is a few kB: anything near this is not one
MAX_REDIRECTS = 3
_REDIRECTS = (301, 302, 303, 307, 308)


@dataclass(frozen=True)
class Target:
    """The voice agent to call."""

    url: str
    signaling: str = "json-offer"  # "json-offer" | "whip"
    token_env: str | None = None  # name of the env var holding a Bearer token (never the token)
    codec: str = "opus"
    signaling_timeout_s: float = 10.0
    # How the agent reports its state: the data channel the caller opens (agents may also open
    # their own: every channel is read) and the message format (callers.agent_messages).
    state_channel: str = "agent-state"
    state_format: str = "auto"  # "auto" | "entities-json" | "rtvi"
    # How the call is carried: "webrtc" (url: the signaling endpoint), "twilio-ws" or "pcm-ws"
    # (url: ws:// or wss://); see callers/transports/.
    transport: str = "webrtc"
    headers: tuple[tuple[str, str], ...] = ()  # extra handshake headers (WebSocket transports)
    ca_file: str | None = None  # a CA bundle for wss:// (verification is always on)
    sample_rate: int = 16_000  # pcm-ws: the PCM rate, both ways
    hangup_message: str | None = None  # pcm-ws: text sent before the caller closes the socket
    custom_parameters: tuple[tuple[str, str], ...] = ()  # twilio-ws: start.customParameters
    account_sid: str | None = None  # twilio-ws: start.accountSid (else a random AC...)
    # sip (url: sip:user@host:port; codec pcmu or pcma): digest credentials from the env vars
    # these name (never the values), and the local address our SIP and RTP sockets bind to.
    auth_username_env: str | None = None
    auth_password_env: str | None = None
    local_address: str = "127.0.0.1"
    # Send the call's W3C traceparent (callers.trace_context) on every transport: an HTTP
    # header on signaling and the WebSocket handshake, a SIP header, a Twilio parameter.
    traceparent: bool = True

    @property
    def local(self) -> bool:
        return is_loopback_url(self.url)

    def token(self) -> str | None:
        if not self.token_env:
            return None
        value = os.environ.get(self.token_env)
        if not value:
            raise ConfigError(f"target.token_env: environment variable {self.token_env} is not set")
        return value

    def sip_credentials(self) -> tuple[str, str] | None:
        """(username, password) for SIP digest auth, or None; ConfigError naming an unset
        variable (only its name: the values are never shown)."""
        if not (self.auth_username_env or self.auth_password_env):
            return None
        values = []
        for field, name in (("auth_username_env", self.auth_username_env),
                            ("auth_password_env", self.auth_password_env)):
            value = os.environ.get(name) if name else None
            if not value:
                raise ConfigError(f"target.{field}: environment variable {name} is not set"
                                  if name else f"target.{field} is needed too")
            values.append(value)
        return values[0], values[1]


class Signaling(ABC):
    """Trades our SDP offer for the agent's answer, and hangs up."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._session: aiohttp.ClientSession | None = None
        self.agent_call_id: str | None = None  # the agent's own id for the call, if it says
        self.url = target.url  # where the answer came from (the target, or where it redirected)
        self.content_type = "no Content-Type"  # of the answer, named in failure details
        self.traceparent: str | None = None  # the call's, sent with every request when set

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.target.signaling_timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def exchange(self, offer: RTCSessionDescription) -> RTCSessionDescription:
        try:
            # The whole exchange, body included: a server that drips bytes forever ends here.
            async with asyncio.timeout(self.target.signaling_timeout_s):
                sdp = await self._exchange(offer)
        except CallFailed:
            raise
        except TimeoutError as e:
            raise CallFailed("signaling_timeout", self.target.url) from e
        except (aiohttp.ClientConnectionError, OSError) as e:
            raise CallFailed("signaling_unreachable", f"{self.target.url}: {e}") from e
        except aiohttp.ClientError as e:  # a malformed HTTP response, a broken body
            raise CallFailed("signaling_bad_answer", f"{type(e).__name__}: {e}"[:300]) from e
        if not sdp.lstrip().startswith("v=0"):
            raise CallFailed("signaling_bad_answer",
                             f"the answer is not an SDP (no v=0; {self.content_type})")
        return RTCSessionDescription(sdp=sdp, type="answer")

    @asynccontextmanager
    async def _post(self, **kwargs) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST to the target, following at most MAX_REDIRECTS 307/308 redirects; yields the
        final response (self.url is where it came from)."""
        url = self.target.url
        for hop in range(MAX_REDIRECTS + 1):
            headers = with_traceparent({**kwargs.get("headers", {}), **_auth(self.target, url)},
                                       self.traceparent)
            async with self._http().post(url, **{**kwargs, "headers": headers},
                                         allow_redirects=False) as r:
                if r.status not in _REDIRECTS:
                    self.url = url
                    self.content_type = r.headers.get("Content-Type", "no Content-Type")[:100]
                    yield r
                    return
                url = self._redirect(url, r.status, r.headers.get("Location"), hop)

    def _redirect(self, url: str, status: int, location: str | None, hop: int) -> str:
        """The next URL of a redirect we follow; CallFailed(signaling_bad_redirect) if not."""
        shown = _bounded_id(location, 200)
        if status not in (307, 308):
            raise CallFailed("signaling_bad_redirect", f"{status} to {shown}: only 307/308 are "
                             "followed (a 301/302/303 turns the POST into a GET, without offer)")
        if not location:
            raise CallFailed("signaling_bad_redirect", f"{status} without a Location")
        if hop >= MAX_REDIRECTS:
            raise CallFailed("signaling_bad_redirect",
                             f"more than {MAX_REDIRECTS} redirects (a loop?), last to {shown}")
        target = urljoin(url, location)
        if urlsplit(target).scheme not in ("http", "https"):
            raise CallFailed("signaling_bad_redirect", f"{status} to {shown}: not http(s)")
        if self.target.local and not is_loopback_url(target):
            raise CallFailed("signaling_bad_redirect",
                             f"{status} to {shown}: a loopback target may not send us elsewhere")
        return target

    @abstractmethod
    async def _exchange(self, offer: RTCSessionDescription) -> str: ...

    async def hangup(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @staticmethod
    def _check_status(response: aiohttp.ClientResponse, ok: tuple[int, ...]) -> None:
        if response.status not in ok:
            raise CallFailed(f"signaling_http_{response.status}", (response.reason or "")[:200])


async def _read_answer(response: aiohttp.ClientResponse) -> str:
    """The body as text, at most MAX_ANSWER_BYTES: a larger one is refused as soon as its
    Content-Length (or the bytes read so far) says so, never read whole."""
    too_big = f"the answer is larger than {MAX_ANSWER_BYTES} bytes: not an SDP answer"
    length = response.content_length
    if length is not None and length > MAX_ANSWER_BYTES:
        raise CallFailed("signaling_bad_answer", f"{too_big} (Content-Length {length})")
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise CallFailed("signaling_bad_answer", too_big)
    try:
        return body.decode(response.charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", errors="replace")


class JsonOfferSignaling(Signaling):
    """POST {"sdp", "type"} as JSON, get the answer back as JSON (aiortc examples, SmallWebRTC)."""

    async def _exchange(self, offer: RTCSessionDescription) -> str:
        body = {"sdp": offer.sdp, "type": offer.type}
        async with self._post(json=body) as r:
            self._check_status(r, (200, 201))
            self.agent_call_id = _bounded_id(r.headers.get("X-Call-Id"))
            text = await _read_answer(r)
            try:
                answer = json.loads(text)
                sdp = answer["sdp"]
            except (ValueError, KeyError, TypeError, RecursionError) as e:
                raise CallFailed("signaling_bad_answer", "expected JSON with an 'sdp' field "
                                 f"({self.content_type})") from e
            if not isinstance(sdp, str):
                raise CallFailed("signaling_bad_answer", "the answer's 'sdp' is not a string")
            # SmallWebRTC answers pc_id; others call_id.
            self.agent_call_id = self.agent_call_id or _bounded_id(
                answer.get("call_id") or answer.get("pc_id"))
            return sdp


class WhipSignaling(Signaling):
    """WHIP (RFC 9725): POST application/sdp -> 201 + Location; DELETE the resource to hang up."""

    resource: str | None = None

    async def _exchange(self, offer: RTCSessionDescription) -> str:
        async with self._post(data=offer.sdp, headers={"Content-Type": "application/sdp"}) as r:
            self._check_status(r, (201,))
            location = r.headers.get("Location")
            if not location:
                raise CallFailed("signaling_bad_answer", "WHIP answer has no Location header")
            resource = urljoin(self.url, location)
            # Hanging up must not send a local call's DELETE off the machine either.
            if not self.target.local or is_loopback_url(resource):
                self.resource = resource
            self.agent_call_id = _bounded_id(r.headers.get("X-Call-Id") or location)
            return await _read_answer(r)

    async def hangup(self) -> None:
        if self.resource is not None:
            try:
                async with asyncio.timeout(self.target.signaling_timeout_s):
                    async with self._http().delete(
                            self.resource, headers=with_traceparent(
                                _auth(self.target, self.resource), self.traceparent),
                            allow_redirects=False):
                        pass
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as e:
                log.info("WHIP DELETE %s failed: %s", self.resource, e)
            self.resource = None
        await super().hangup()


def _bounded_id(value: object, limit: int = 128) -> str | None:
    """An agent-supplied id as a short printable string (it ends up in records and reports)."""
    if value is None or isinstance(value, dict | list):
        return None
    text = "".join(c for c in str(value) if c.isprintable()).strip()
    return text[:limit] or None


def _auth(target: Target, url: str | None = None) -> dict[str, str]:
    """The Bearer header, only for the target's own origin (a redirect or a WHIP resource
    elsewhere does not get the token)."""
    token = target.token()
    if not token or (url is not None and _origin(url) != _origin(target.url)):
        return {}
    return {"Authorization": f"Bearer {token}"}


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    return parts.scheme, (parts.hostname or ""), port or {"http": 80, "https": 443}.get(
        parts.scheme)


def make_signaling(target: Target) -> Signaling:
    if target.signaling == "whip":
        return WhipSignaling(target)
    if target.signaling == "json-offer":
        return JsonOfferSignaling(target)
    raise ConfigError(f"target.signaling: expected json-offer or whip, got {target.signaling!r}")


def new_peer_connection(target: Target) -> RTCPeerConnection:
    # Local targets: no STUN at all; host candidates come from callers.loopback.
    config = RTCConfiguration(iceServers=[]) if target.local else RTCConfiguration()
    return RTCPeerConnection(configuration=config)


def prefer_codec(transceiver, codec: str) -> None:
    """Offer only the chosen audio codec (opus by default, PCMU for telephone realism)."""
    if codec not in CODECS:
        raise ConfigError(f"target.codec: expected one of {sorted(CODECS)}, got {codec!r}")
    wanted = CODECS[codec].lower()
    codecs = [
        c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == wanted
    ]
    transceiver.setCodecPreferences(codecs)


async def close_peer_connection(pc: RTCPeerConnection, timeout_s: float = 5.0) -> None:
    """pc.close() can hang on a dead transport (aiortc #283): bound it and say so."""
    try:
        await asyncio.wait_for(pc.close(), timeout_s)
    except TimeoutError:
        log.warning("RTCPeerConnection.close() took more than %.0f s; abandoned", timeout_s)
