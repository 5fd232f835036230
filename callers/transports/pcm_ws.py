"""`pcm-ws`: raw 16-bit little-endian PCM over a WebSocket, 20 ms per binary message.

The caller sends a frame every 20 ms from the moment the socket opens, silence included (such
agents time turns by the samples they receive). The agent's binary messages are its audio at
the same rate, played as they arrive. Text messages are JSON events: {"type": "clear"} drops
the agent audio not yet played; anything else is the agent's own message (its state, a
{"event": "hangup"}: callers.agent_messages). The caller hangs up by closing the socket, after
target.hangup_message if one is configured; an agent that closes the socket has hung up.
"""

from __future__ import annotations

import json

import numpy as np

from callers.audio import STT_RATE
from callers.transports.websocket import FrameResampler, WebSocketTransport


class PcmWsTransport(WebSocketTransport):
    kind = "pcm-ws"

    def __init__(self, target, clock, outgoing, events) -> None:
        self.wire_rate = target.sample_rate
        super().__init__(target, clock, outgoing, events)
        self._up = FrameResampler(self.wire_rate, STT_RATE)

    async def _send_audio(self, pcm: np.ndarray) -> None:
        await self.ws.send_bytes(pcm.astype("<i2").tobytes())

    def _on_binary(self, data: bytes) -> None:
        if len(data) % 2:
            self._bad_message(f"odd PCM message length {len(data)}")
            data = data[:-1]
        pcm = np.frombuffer(data, "<i2").astype(np.int16)
        self.player.push(self._up.frame(pcm))  # as many 16 kHz samples as they last: no hold-back

    def _on_text(self, data: str) -> None:
        try:
            message = json.loads(data)
        except (ValueError, RecursionError):  # not JSON, or nested past the recursion limit
            message = None
        if isinstance(message, dict) and message.get("type") == "clear":
            self.player.clear()
            return
        self.events.message("pcm-ws", data)

    async def _closing(self) -> None:
        if self.target.hangup_message:
            await self.ws.send_str(self.target.hangup_message)

    def describe(self) -> dict:
        return {**super().describe(), "encoding": "pcm_s16le"}
