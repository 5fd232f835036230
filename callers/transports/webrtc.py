"""WebRTC (aiortc): signaling (json-offer, WHIP), loopback ICE, the codec, data channels for
the agent's messages, and the receive path's stamping and statistics."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from callers.agent_messages import client_ready
from callers.errors import CallFailed
from callers.loopback import candidate_addresses, keep_loopback_candidates, loopback_only
from callers.media import ReceiveStats, received_frames
from callers.network import network_stats
from callers.transport import (
    close_peer_connection,
    make_signaling,
    new_peer_connection,
    prefer_codec,
)
from callers.transports.base import CallTransport

log = logging.getLogger(__name__)


class InlineExecutorLoop:
    """The event loop, except that run_in_executor runs the function here and now.

    aiortc's RTCRtpSender encodes every 20 ms frame through loop.run_in_executor: the hop to
    the default executor and back costs more than the Opus encode itself (measured: 375 µs of
    CPU a frame through the executor, 158 µs inline; ~1 % of a core per call), and the executor
    was ~11 % of a host's core at 8-9 callers. Inline, the same bytes go out, audio level
    included, and the loop is busy ~0.2 ms a frame instead."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def run_in_executor(self, executor: Any, func: Any, *args: Any) -> asyncio.Future:
        future = self._loop.create_future()
        try:
            future.set_result(func(*args))
        except Exception as e:
            future.set_exception(e)
        return future

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)


def encode_inline(sender: Any) -> None:
    """Make an aiortc sender encode on the event loop (InlineExecutorLoop). It keeps its
    executor hop if aiortc's sender no longer has the loop attribute this replaces."""
    loop = getattr(sender, "_RTCRtpSender__loop", None)
    if loop is not None and not isinstance(loop, InlineExecutorLoop):
        sender._RTCRtpSender__loop = InlineExecutorLoop(loop)


class WebRtcTransport(CallTransport):
    kind = "webrtc"
    continuous_media = True  # aiortc keeps sending (silence too): a silent track is a dead agent

    def __init__(self, target, clock, outgoing, events, *, codec: str) -> None:
        super().__init__(target, clock, outgoing, events)
        self.codec = codec
        self.pc = new_peer_connection(target)
        self.signaling = make_signaling(target)
        self.receive_stats = ReceiveStats()  # measured jitter-buffer depth -> record.network
        self.local_candidates: list[str] = []
        self.remote_candidates: list[str] = []
        self._track: asyncio.Future = asyncio.get_running_loop().create_future()

    async def connect(self, timeout_s: float) -> None:
        pc = self.pc
        self._read_channel(pc.createDataChannel(self.target.state_channel))
        pc.on("datachannel", self._read_channel)  # channels the agent opens itself
        encode_inline(pc.addTrack(self.outgoing))
        prefer_codec(pc.getTransceivers()[0], self.codec)
        pc.on("track", self._on_track)
        pc.on("connectionstatechange", self._on_connection_state)
        with loopback_only(self.target.local):
            await pc.setLocalDescription(await pc.createOffer())
        self.local_candidates = candidate_addresses(pc.localDescription.sdp)
        self.signaling.traceparent = self.traceparent
        answer = await self.signaling.exchange(pc.localDescription)
        self.agent_call_id = self.signaling.agent_call_id
        self.remote_candidates = candidate_addresses(answer.sdp)
        if self.target.local:  # no ICE check (nor mDNS lookup) leaves the machine
            answer.sdp = keep_loopback_candidates(answer.sdp)
        try:
            await pc.setRemoteDescription(answer)
        except Exception as e:  # aiortc's parser raises what it likes (ValueError, assert...)
            raise CallFailed("signaling_bad_answer", "the answer's SDP was refused: "
                             f"{type(e).__name__}: {e}"[:300]) from e
        deadline = time.monotonic() + timeout_s
        while pc.connectionState != "connected":
            if pc.connectionState in ("failed", "closed") or time.monotonic() > deadline:
                raise CallFailed("ice_timeout", f"connection state {pc.connectionState}")
            await asyncio.sleep(0.02)

    def _on_track(self, track) -> None:
        if track.kind == "audio" and not self._track.done():
            self._track.set_result(track)

    async def incoming(self) -> AsyncIterator[tuple[float, np.ndarray]]:
        track = await self._track
        async for t_ms, frame in received_frames(track, self.clock, self.receive_stats):
            yield t_ms, frame

    def media_end(self) -> tuple[str, dict[str, Any]]:
        return "agent_track_ended", {}  # a BYE, or the agent's transport closed

    def _read_channel(self, channel) -> None:
        """Read every message of a data channel (ours, or one the agent opened)."""
        channel.on("message", lambda message: self.events.message(channel.label, message))
        if self.target.state_format == "rtvi":
            def hello() -> None:
                channel.send(client_ready())
            if channel.readyState == "open":
                hello()
            else:
                channel.on("open", hello)

    def _on_connection_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self.events.end("connection_" + self.pc.connectionState)

    async def network_stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        try:
            clock_rate = 8000 if self.codec == "pcmu" else 48_000
            out = await asyncio.wait_for(network_stats(self.pc, clock_rate), 2.0)
        except Exception as e:  # stats are a nice-to-have; the record must still be written
            log.debug("getStats failed: %s", e)
        return {**out, **self.receive_stats.summary()}

    async def close(self) -> None:
        await self.signaling.hangup()
        await close_peer_connection(self.pc)
        if not self._track.done():
            self._track.cancel()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "codec": self.codec,
                "local_candidates": self.local_candidates,
                "remote_candidates": self.remote_candidates}
