"""`twilio-ws`: callfleet plays Twilio's side of a Media Streams WebSocket.

Sent: `connected`, `start` (streamSid, callSid, accountSid, tracks, customParameters from the
config, mediaFormat audio/x-mulaw 8000 Hz mono), a `media` message every 20 ms (160 bytes of
mu-law, base64, with sequenceNumber, chunk and timestamp), `mark` echoes, and `stop` at the end.
Received: the bot's `media` (played as it arrives), `clear` (drops what is queued and not yet
played: how a bot stops talking on barge-in), `mark` (echoed once the audio sent before it has
played). Any other event is the bot's own message (callers.agent_messages: its state, a hang-up).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import uuid
from typing import Any

import numpy as np

from callers.audio import STT_RATE
from callers.trace_context import with_traceparent
from callers.transports.websocket import (
    FrameResampler, WebSocketTransport, mulaw_decode, mulaw_encode)

TWILIO_RATE = 8000


def _sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


class TwilioWsTransport(WebSocketTransport):
    kind = "twilio-ws"
    wire_rate = TWILIO_RATE

    def __init__(self, target, clock, outgoing, events) -> None:
        super().__init__(target, clock, outgoing, events)
        self.stream_sid = _sid("MZ")
        self.call_sid = _sid("CA")
        self.account_sid = target.account_sid or _sid("AC")
        self.agent_call_id = self.call_sid  # what the bot sees: find the call in its logs by it
        self._sequence = 0
        self._chunk = 0
        # Exactly 2 samples out per sample in: a resampler that holds back its first few
        # samples would leave each 20 ms frame waiting for the next message (+~19 ms).
        self._up = FrameResampler(TWILIO_RATE, STT_RATE)
        self._pending: set = set()
        self.marks_received = 0
        self.clears_received = 0

    async def _send(self, event: str, **body: Any) -> None:
        self._sequence += 1
        message = {"event": event, "sequenceNumber": str(self._sequence), **body}
        if event != "connected":
            message["streamSid"] = self.stream_sid
        await self._send_json(message)

    async def _opened(self) -> None:
        await self.ws.send_str(json.dumps({"event": "connected", "protocol": "Call",
                                           "version": "1.0.0"}))
        await self._send("start", start={
            "streamSid": self.stream_sid, "accountSid": self.account_sid,
            "callSid": self.call_sid, "tracks": ["inbound"],
            "customParameters": with_traceparent(dict(self.target.custom_parameters),
                                                 self.traceparent),
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": TWILIO_RATE,
                            "channels": 1}})

    async def _send_audio(self, pcm: np.ndarray) -> None:
        self._chunk += 1
        await self._send("media", media={
            "track": "inbound", "chunk": str(self._chunk),
            "timestamp": str((self._chunk - 1) * 20),
            "payload": base64.b64encode(mulaw_encode(pcm)).decode("ascii")})

    def _on_text(self, data: str) -> None:
        try:
            message = json.loads(data)
        except (ValueError, RecursionError):  # not JSON, or nested past the recursion limit
            self._bad_message("not JSON")
            self.events.message("twilio-ws", data)
            return
        event = message.get("event") if isinstance(message, dict) else None
        if event == "media":
            try:
                payload = base64.b64decode(message["media"]["payload"], validate=True)
            except (KeyError, TypeError, binascii.Error):
                self._bad_message("media without a base64 payload")
                return
            self.player.push(self._up.frame(mulaw_decode(payload)))
        elif event == "mark":
            mark = message.get("mark")
            name = mark.get("name") if isinstance(mark, dict) else None
            if not isinstance(name, str):
                self._bad_message("mark without a name")
                return
            self.marks_received += 1
            self.player.mark(name)
        elif event == "clear":
            self.clears_received += 1
            self.events.message("twilio-ws", data)  # kept: when the bot barged out
            self.player.clear()
        else:
            self.events.message("twilio-ws", data)

    def _mark_played(self, name: str) -> None:
        task = asyncio.ensure_future(self._send("mark", mark={"name": name}))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _closing(self) -> None:
        await self._send("stop", stop={"accountSid": self.account_sid, "callSid": self.call_sid})

    async def network_stats(self) -> dict:
        return {**await super().network_stats(), "marks_received": self.marks_received,
                "marks_echoed": self.player.marks_echoed, "clears_received": self.clears_received}

    def describe(self) -> dict:
        return {**super().describe(), "encoding": "audio/x-mulaw", "stream_sid": self.stream_sid,
                "call_sid": self.call_sid}
