"""`sip`: callfleet places a SIP call over UDP and carries the audio as G.711 RTP.

Connect: INVITE with an SDP offer (the configured law first, the other next, telephone-event),
digest authentication from environment variables, ACK. Sent: the caller's paced frames, one
RTP packet per 20 ms. Received: RTP put back in order by a small jitter buffer (gaps filled
with silence, each packet stamped at its place on the stream's timeline: the path's median
delay, not the buffer's hold), decoded, resampled to 16 kHz and played at those stamps
(callers.transports.websocket.IncomingPlayout); loss, out-of-order, late and concealed
packets and RFC 3550 jitter counted. A BYE from the agent ends the call;
ours ends it from our side. A re-INVITE is answered with our SDP; hold (the agent sends
sendonly, or inactive) is honoured: we stop sending, and silence stands in for its audio.
The agent's INFO/MESSAGE bodies are its messages (the reference agent reports its state so).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from callers.audio import STT_RATE, WIRE_RATE
from callers.audio import samples_per_frame as spf
from callers.errors import CallFailed, ConfigError
from callers.transports.base import CallTransport
from callers.transports.sip import sdp
from callers.transports.sip.dialog import OutgoingCall
from callers.transports.sip.message import SipMessage, parse_uri
from callers.transports.sip.rtp import G711_RATE, RtpStream
from callers.transports.websocket import FrameResampler, IncomingPlayout

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 2.0
STT_FRAME = spf(STT_RATE)


class SipTransport(CallTransport):
    kind = "sip"
    # A SIP peer sends RTP all call long (silence too): audio that stops means it is gone.
    continuous_media = True

    def __init__(self, target, clock, outgoing, events) -> None:
        super().__init__(target, clock, outgoing, events)
        self.codec = target.codec if target.codec in sdp.PAYLOAD_TYPES else "pcmu"
        self.local_host = target.local_address or "127.0.0.1"
        self.player = IncomingPlayout(clock)
        self.rtp = RtpStream(self._heard)
        self.call: OutgoingCall | None = None
        self.remote: sdp.AudioDescription | None = None
        self._down = FrameResampler(WIRE_RATE, G711_RATE)
        self._up = FrameResampler(G711_RATE, STT_RATE)
        self._tasks: list[asyncio.Task] = []
        self._hold_task: asyncio.Task | None = None
        self._sdp_version = 1
        self._session_id: int | None = None
        self.holds = 0
        self.reinvites = 0
        self.bye_status: int | None = None

    # --- connecting -------------------------------------------------------------------

    def _credentials(self) -> tuple[str, str] | None:
        try:
            return self.target.sip_credentials()
        except ConfigError as e:
            raise CallFailed("sip_auth_failed", str(e)) from None

    async def connect(self, timeout_s: float) -> None:
        try:
            uri = parse_uri(self.target.url)
        except ValueError as e:
            raise CallFailed("sip_unreachable", str(e)) from None
        self.call = OutgoingCall(uri, self.local_host, credentials=self._credentials(),
                                 on_request=self._on_request,
                                 invite_headers=[("traceparent", self.traceparent)]
                                 if self.traceparent else None)
        self.agent_call_id = self.call.call_id  # the SIP Call-ID: find the call in its logs
        rtp_port = await self.rtp.open(self.local_host)
        await self.call.open()
        offer = sdp.offer(self.local_host, rtp_port, self.codec)
        self._session_id = int(offer.split("\r\n")[1].split()[1])
        ok = await self.call.invite(offer, min(timeout_s, self.target.signaling_timeout_s))
        try:
            self._apply(sdp.parse(ok.body))
        except sdp.SdpError as e:
            await self.call.bye()
            raise CallFailed("sip_bad_answer", str(e)) from None
        self._tasks.append(asyncio.create_task(self._send_loop(), name="sip-send"))
        self._tasks.append(asyncio.create_task(self._watch_bye(), name="sip-bye"))

    def _apply(self, remote: sdp.AudioDescription) -> None:
        """Use what the agent's SDP says: where to send, which law, whether it is on hold."""
        pt = sdp.choose_codec(remote)
        self.remote = remote
        self.rtp.remote = (remote.address, remote.port)
        self.rtp.payload_type = pt
        self.rtp.sending = remote.receives
        self._hold(not remote.sends)

    def _hold(self, on: bool) -> None:
        """While the agent sends nothing (hold), silence stands in for its audio, so that the
        missing RTP is not taken for a dead agent."""
        if on and self._hold_task is None:
            self.holds += 1
            self._hold_task = asyncio.create_task(self._hold_silence(), name="sip-hold")
        elif not on and self._hold_task is not None:
            self._hold_task.cancel()
            self._hold_task = None

    async def _hold_silence(self) -> None:
        silence = np.zeros(STT_FRAME, np.int16)
        while True:
            self.player.push(silence)
            await asyncio.sleep(0.02)

    # --- media --------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        """Every 20 ms, on the pacer's deadline: the caller's next frame as one RTP packet."""
        while True:
            _, pcm48, _ = await self.outgoing.paced_frame()
            self.rtp.send(self._down.frame(pcm48))

    def _heard(self, pcm8k: np.ndarray, heard_s: float) -> None:
        if self._hold_task is None:
            self.player.push(self._up.frame(pcm8k), (heard_s - self.clock.t0) * 1000)

    async def _watch_bye(self) -> None:
        await self.call.bye_received.wait()
        self.player.finish()

    def _on_request(self, message: SipMessage) -> str | None:
        """The agent's requests inside the call: re-INVITE -> our SDP; INFO/MESSAGE bodies
        are its messages."""
        if message.method == "INVITE":
            self.reinvites += 1
            try:
                remote = sdp.parse(message.body) if message.body else self.remote
                if remote is None:
                    return None
                self._apply(remote)
            except sdp.SdpError as e:
                log.info("re-INVITE not acceptable: %s", e)
                return None
            self._sdp_version += 1
            answer, _ = sdp.answer(remote, self.local_host, self.rtp.port,
                                   supported=[self.rtp.payload_type],
                                   session_id=self._session_id, version=self._sdp_version)
            return answer
        if message.method in ("INFO", "MESSAGE") and message.body:
            self.events.message(f"sip-{message.method.lower()}",
                                message.body.decode("utf-8", "replace"))
        return None

    async def incoming(self) -> AsyncIterator[tuple[float, np.ndarray]]:
        async for item in self.player.frames():
            yield item

    def media_end(self) -> tuple[str, dict[str, Any]]:
        if self.call is not None and self.call.bye_received.is_set():
            return "hangup", {"by": "agent", "how": "bye"}
        return "agent_track_ended", {}

    def closed_before_audio(self) -> bool:
        return (self.call is not None and self.call.bye_received.is_set()
                and self.rtp.stats.received == 0)

    async def close(self) -> None:
        for task in self._tasks:
            if task.get_name() == "sip-send":
                task.cancel()
        self._hold(False)
        if self.call is not None:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT_S + 0.5):
                    self.bye_status = await self.call.bye(CLOSE_TIMEOUT_S)
            except TimeoutError:
                log.info("SIP BYE: no answer in %.0f s", CLOSE_TIMEOUT_S)
            self.call.close()
        self.player.finish()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.rtp.close()

    async def network_stats(self) -> dict[str, Any]:
        return {"rtt_ms": None, **self.rtp.receive_summary(), **self.player.summary(),
                "rtp_sent": self.rtp.sent, "rtp_events_received": self.rtp.events_received,
                "rtp_unknown_received": self.rtp.unknown_received}

    def describe(self) -> dict[str, Any]:
        remote = self.remote
        return {**super().describe(), "url": self.target.url,
                "codec": sdp.CODEC_NAMES.get(self.rtp.payload_type) if remote else None,
                "remote_rtp": f"{remote.address}:{remote.port}" if remote else None,
                "sip_exchange": list(self.call.exchange) if self.call else [],
                "bye_status": self.bye_status, "reinvites": self.reinvites, "holds": self.holds}
