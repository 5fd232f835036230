"""The target (every transport's options), and WebRTC's signaling adapters (json-offer, WHIP)
and a bounded peer-connection life (callers/transports/webrtc.py uses them)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from urllib.parse import urljoin

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from callers.errors import CallFailed, ConfigError
from callers.loopback import is_loopback_url

log = logging.getLogger(__name__)

CODECS = {"opus": "audio/opus", "pcmu": "audio/PCMU"}


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


class Signaling(ABC):
    """Trades our SDP offer for the agent's answer, and hangs up."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._session: aiohttp.ClientSession | None = None
        self.agent_call_id: str | None = None  # the agent's own id for the call, if it says

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.target.signaling_timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def exchange(self, offer: RTCSessionDescription) -> RTCSessionDescription:
        try:
            sdp = await self._exchange(offer)
        except CallFailed:
            raise
        except (aiohttp.ClientConnectionError, OSError) as e:
            raise CallFailed("signaling_unreachable", f"{self.target.url}: {e}") from e
        except TimeoutError as e:
            raise CallFailed("signaling_timeout", self.target.url) from e
        if not sdp.lstrip().startswith("v=0"):
            raise CallFailed("signaling_bad_answer", "the answer is not an SDP (no v=0)")
        return RTCSessionDescription(sdp=sdp, type="answer")

    @abstractmethod
    async def _exchange(self, offer: RTCSessionDescription) -> str: ...

    async def hangup(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @staticmethod
    def _check_status(response: aiohttp.ClientResponse, ok: tuple[int, ...]) -> None:
        if response.status not in ok:
            raise CallFailed(f"signaling_http_{response.status}", response.reason or "")


class JsonOfferSignaling(Signaling):
    """POST {"sdp", "type"} as JSON, get the answer back as JSON (aiortc examples, SmallWebRTC)."""

    async def _exchange(self, offer: RTCSessionDescription) -> str:
        body = {"sdp": offer.sdp, "type": offer.type}
        async with self._http().post(self.target.url, json=body, headers=_auth(self.target)) as r:
            self._check_status(r, (200, 201))
            self.agent_call_id = _bounded_id(r.headers.get("X-Call-Id"))
            try:
                answer = json.loads(await r.text())
                sdp = str(answer["sdp"])
            except (ValueError, KeyError, TypeError) as e:
                raise CallFailed("signaling_bad_answer", "expected JSON with an 'sdp' field") from e
            # SmallWebRTC answers pc_id; others call_id.
            self.agent_call_id = self.agent_call_id or _bounded_id(
                answer.get("call_id") or answer.get("pc_id"))
            return sdp


class WhipSignaling(Signaling):
    """WHIP (RFC 9725): POST application/sdp -> 201 + Location; DELETE the resource to hang up."""

    resource: str | None = None

    async def _exchange(self, offer: RTCSessionDescription) -> str:
        headers = {"Content-Type": "application/sdp", **_auth(self.target)}
        async with self._http().post(self.target.url, data=offer.sdp, headers=headers) as r:
            self._check_status(r, (201,))
            location = r.headers.get("Location")
            if not location:
                raise CallFailed("signaling_bad_answer", "WHIP answer has no Location header")
            self.resource = urljoin(self.target.url, location)
            self.agent_call_id = _bounded_id(r.headers.get("X-Call-Id") or location)
            return await r.text()

    async def hangup(self) -> None:
        if self.resource is not None:
            try:
                async with self._http().delete(self.resource, headers=_auth(self.target)):
                    pass
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                log.info("WHIP DELETE %s failed: %s", self.resource, e)
            self.resource = None
        await super().hangup()


def _bounded_id(value: object, limit: int = 128) -> str | None:
    """An agent-supplied id as a short printable string (it ends up in records and reports)."""
    if value is None or isinstance(value, dict | list):
        return None
    text = "".join(c for c in str(value) if c.isprintable()).strip()
    return text[:limit] or None


def _auth(target: Target) -> dict[str, str]:
    token = target.token()
    return {"Authorization": f"Bearer {token}"} if token else {}


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
