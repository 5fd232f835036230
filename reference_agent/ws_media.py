"""The reference agent over a WebSocket media stream: /pcm (raw 16-bit PCM, 16 kHz) and
/twilio (the bot's side of Twilio Media Streams). The same AgentCall runs behind both.

The agent sends a 20 ms frame every 20 ms from call.track (silence too), stamps the caller's
audio when it arrives, reports its state as a JSON text message ({"entities": ...}, and
{"event": "hangup"} before it closes: callfleet reads both), and on barge-in sends `clear`
({"type": "clear"} on /pcm, Twilio's {"event": "clear"} on /twilio).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging

import numpy as np
from aiohttp import WSMsgType, web

from callers.audio import STT_RATE, WIRE_RATE
from callers.audio import samples_per_frame as spf
from callers.transports.websocket import FrameResampler, mulaw_decode, mulaw_encode
from reference_agent.call import AgentCall, AgentMedia

log = logging.getLogger(__name__)

STT_FRAME = spf(STT_RATE)
TWILIO_RATE = 8000


class WebSocketAgentMedia(AgentMedia):
    """One WebSocket call; kind "pcm" or "twilio". run() serves it until either side ends."""

    def __init__(self, ws: web.WebSocketResponse, kind: str) -> None:
        self.ws = ws
        self.kind = kind
        self.rate = TWILIO_RATE if kind == "twilio" else STT_RATE
        self.call: AgentCall | None = None
        self.stream_sid: str | None = None
        self.start: dict | None = None  # Twilio's start message
        self.on_start = None  # called with Twilio's first start message's "start" object
        self._started = asyncio.Event()
        self._frames: asyncio.Queue = asyncio.Queue()
        self._up = FrameResampler(self.rate, STT_RATE)  # no hold-back: frames not delayed
        self._down = FrameResampler(WIRE_RATE, self.rate)
        self._pending = np.zeros(0, np.int16)
        self._sends: set[asyncio.Task] = set()
        self.marks_echoed: list[str] = []
        self._mark = 0

    def attach(self, call: AgentCall) -> None:
        self.call = call

    @property
    def connected(self) -> bool:
        return self._started.is_set() and not self.ws.closed

    async def incoming(self, source, call: AgentCall):
        while True:
            item = await self._frames.get()
            if item is None:
                return
            yield item

    def _heard(self, pcm: np.ndarray) -> None:
        """The caller's audio as it arrives, cut into 20 ms frames stamped with the arrival."""
        t_ms = self.call.clock.ms()
        pcm = np.concatenate([self._pending, self._up.frame(pcm)])
        whole = pcm.size // STT_FRAME * STT_FRAME
        n = whole // STT_FRAME
        for i in range(n):  # a late burst: each frame where it fell in the burst
            self._frames.put_nowait((t_ms - (n - 1 - i) * 20.0,
                                     pcm[i * STT_FRAME:(i + 1) * STT_FRAME]))
        self._pending = pcm[whole:].copy()

    def _send(self, text: str) -> None:
        if self.ws.closed:
            return
        task = asyncio.ensure_future(self.ws.send_str(text))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def send_state(self, text: str) -> None:
        self._send(text)

    def clear(self) -> None:
        if self.kind == "twilio":
            self._send(json.dumps({"event": "clear", "streamSid": self.stream_sid}))
        else:
            self._send(json.dumps({"type": "clear"}))

    async def run(self) -> None:
        """Read the caller until the socket closes (or Twilio's stop); send our audio."""
        if self.kind == "pcm":
            self._started.set()
        sender = asyncio.create_task(self._send_loop(), name="agent-ws-send")
        self.call.listen()
        try:
            async for msg in self.ws:
                if msg.type == WSMsgType.BINARY and self.kind == "pcm":
                    self._heard(np.frombuffer(msg.data[: len(msg.data) // 2 * 2], "<i2")
                                .astype(np.int16))
                elif msg.type == WSMsgType.TEXT:
                    if self._on_text(msg.data):
                        break
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break
        finally:
            self._frames.put_nowait(None)
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            self.call.caller_hung_up()

    def _on_text(self, data: str) -> bool:
        """Handle one text message; True when the caller ends the stream."""
        try:
            message = json.loads(data)
        except ValueError:
            return False
        if not isinstance(message, dict):
            return False
        if self.kind == "pcm":
            return message.get("type") == "hangup"
        event = message.get("event")
        if event == "start":
            start = message.get("start")
            self.start = start if isinstance(start, dict) else {}
            self.stream_sid = message.get("streamSid") or self.start.get("streamSid")
            if self.on_start is not None and not self._started.is_set():
                self.on_start(self.start)
            self._started.set()
        elif event == "media" and self._started.is_set():
            try:
                payload = base64.b64decode(message["media"]["payload"])
            except (KeyError, TypeError, binascii.Error):
                return False
            self._heard(mulaw_decode(payload))
        elif event == "mark":
            self.marks_echoed.append(str((message.get("mark") or {}).get("name")))
        elif event == "stop":
            return True
        return False

    async def _send_loop(self) -> None:
        await self._started.wait()
        track = self.call.track
        try:
            while not self.ws.closed:
                _, pcm48, _ = await track.paced_frame()
                pcm = self._down.frame(pcm48)
                if self.kind == "pcm":
                    await self.ws.send_bytes(pcm.astype("<i2").tobytes())
                else:
                    await self.ws.send_str(json.dumps({
                        "event": "media", "streamSid": self.stream_sid,
                        "media": {"payload": base64.b64encode(mulaw_encode(pcm)).decode()}}))
        except (ConnectionError, RuntimeError) as e:
            log.debug("agent ws send ended: %s", e)

    async def close(self) -> None:
        if not self.ws.closed:
            try:
                async with asyncio.timeout(2.0):
                    await self.ws.close()
            except (TimeoutError, ConnectionError, RuntimeError):
                pass
