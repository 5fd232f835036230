"""What both WebSocket media streams share: the connection (ws:// or wss://, headers, a token
from an environment variable, a bounded handshake, named failures), the 20 ms sender loop
that pulls the caller's paced frames, and the playout of the agent's audio as it arrives."""

from __future__ import annotations

import asyncio
import logging
import ssl
from abc import abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import numpy as np

from callers.audio import FRAME_MS, STT_RATE, WIRE_RATE, StreamResampler, rms_dbfs
from callers.audio import samples_per_frame as spf
from callers.errors import CallFailed
from callers.trace_context import with_traceparent
from callers.transports.base import CallTransport

log = logging.getLogger(__name__)

STT_FRAME = spf(STT_RATE)
# Audio that arrives after its place in the stream (the agent sent it late, or our loop read it
# late) is stamped on its place when it is at most this late, else this much before it arrived
# (the same allowance as the WebRTC receive path).
LATE_ALLOWANCE_MS = 20.0
# A stream idle this long (nothing queued, nothing arriving) starts over at the next arrival.
IDLE_RESTART_MS = 100.0
# Queued silence ahead of the arrivals is played this much faster per 20 ms frame (a phone's
# adaptive playout shortens pauses), so a delay picked up mid-speech does not last forever.
RELAX_MS = 5.0
SILENCE_DBFS = -60.0
CLOSE_TIMEOUT_S = 2.0
ABNORMAL_CLOSURE = 1006  # RFC 6455: the connection closed without a close frame


# --- G.711 mu-law (Twilio Media Streams' audio/x-mulaw) ------------------------------------

_BIAS = 0x84
_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])


def mulaw_encode(pcm: np.ndarray) -> bytes:
    """16-bit linear PCM -> G.711 mu-law bytes (on 14-bit magnitudes, as G.711 defines it)."""
    x = pcm.astype(np.int32) >> 2
    negative = x < 0
    x = np.minimum(np.where(negative, -x, x), 8159) + (_BIAS >> 2)
    segment = np.searchsorted(_SEGMENT_ENDS, x, side="left")
    value = np.where(segment >= 8, 0x7F,
                     (np.minimum(segment, 7) << 4) | ((x >> (segment + 1)) & 0x0F))
    return (value ^ np.where(negative, 0x7F, 0xFF)).astype(np.uint8).tobytes()


def mulaw_decode(data: bytes) -> np.ndarray:
    """G.711 mu-law bytes -> 16-bit linear PCM."""
    b = ~np.frombuffer(data, np.uint8).astype(np.int32) & 0xFF
    exponent = (b >> 4) & 0x07
    x = (((b & 0x0F) << 3) + _BIAS << exponent) - _BIAS
    return np.where(b & 0x80, -x, x).astype(np.int16)


class FrameResampler:
    """20 ms in at one rate, exactly 20 ms out at another (the resampler's own few samples of
    delay are padded once, at the start)."""

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        self.src_rate, self.dst_rate = src_rate, dst_rate
        self._resampler = StreamResampler(dst_rate) if src_rate != dst_rate else None
        self._pending = np.zeros(0, np.int16)

    def frame(self, pcm: np.ndarray) -> np.ndarray:
        if self._resampler is None:
            return pcm
        n = spf(self.dst_rate) * pcm.size // spf(self.src_rate)
        out = np.concatenate([self._pending, self._resampler.push(pcm, self.src_rate)])
        if out.size < n:
            out = np.concatenate([np.zeros(n - out.size, np.int16), out])
        self._pending = out[n:]
        return out[:n]


class IncomingPlayout:
    """The agent's audio played as it arrives: no jitter buffer, so no constant receive delay.

    Audio is cut into 20 ms frames at 16 kHz, each stamped when it is heard: on arrival, or
    after the audio queued before it (an agent may send faster than real time; a phone plays
    it in order). frames() releases each frame when the clock reaches its stamp, so `clear`
    can still drop what has not been heard. A mark is reported (on_mark) once the audio queued
    before it has been played.
    """

    def __init__(self, clock, on_mark: Callable[[str], None] = lambda name: None) -> None:
        self.clock = clock
        self.on_mark = on_mark
        self._queue: deque[tuple[float, np.ndarray | str]] = deque()  # (stamp, frame | mark)
        self._partial = np.zeros(0, np.int16)
        self._next_ms: float | None = None  # where the next frame goes on the clock
        self._wake = asyncio.Event()
        self._finished = False
        self.frame_count = 0
        self.late_ms: list[float] = []  # arrival after the frame's place in the stream
        self.ahead_ms_max = 0.0  # the most audio queued ahead of the clock
        self.cleared_frames = 0
        self.marks_echoed = 0

    def push(self, pcm16: np.ndarray, arrival_ms: float | None = None) -> None:
        """Audio at 16 kHz as it arrives (any length: a part frame waits for the rest)."""
        arrival = self.clock.ms() if arrival_ms is None else arrival_ms
        pcm = np.concatenate([self._partial, pcm16]) if self._partial.size else pcm16
        whole = pcm.size // STT_FRAME * STT_FRAME
        for i in range(0, whole, STT_FRAME):
            self._queue.append((self._stamp(pcm[i:i + STT_FRAME], arrival),
                                pcm[i:i + STT_FRAME]))
        self._partial = pcm[whole:].copy()
        self._wake.set()

    def _stamp(self, frame: np.ndarray, arrival: float) -> float:
        q = self._next_ms
        if q is None or q < arrival - IDLE_RESTART_MS:
            stamp = arrival  # a new stream (or one resuming after a pause): heard on arrival
        elif q < arrival - LATE_ALLOWANCE_MS:
            stamp = arrival - LATE_ALLOWANCE_MS  # sent (or read) late: heard late
        elif q > arrival and rms_dbfs(frame) < SILENCE_DBFS:
            stamp = max(arrival, q - RELAX_MS)  # queued silence ahead: shorten it
        else:
            stamp = q
        if q is not None and arrival > q:
            self.late_ms.append(arrival - q)
        self.ahead_ms_max = max(self.ahead_ms_max, stamp - arrival)
        self._next_ms = stamp + FRAME_MS
        self.frame_count += 1
        return stamp

    def mark(self, name: str) -> None:
        """Echo name once everything queued before it has played."""
        self._queue.append((self._next_ms or 0.0, name))
        self._wake.set()

    def clear(self) -> None:
        """Drop every frame not yet heard; marks queued among them are echoed now (as Twilio
        does)."""
        dropped = [item for _, item in self._queue]
        self._queue.clear()
        self._partial = np.zeros(0, np.int16)
        self.cleared_frames += sum(1 for item in dropped if not isinstance(item, str))
        self._next_ms = None
        for item in dropped:
            if isinstance(item, str):
                self._echo(item)
        self._wake.set()

    def finish(self) -> None:
        """No more audio will arrive: frames() ends after what is queued has played."""
        self._finished = True
        self._wake.set()

    def _echo(self, name: str) -> None:
        self.marks_echoed += 1
        self.on_mark(name)

    async def frames(self) -> AsyncIterator[tuple[float, np.ndarray]]:
        while True:
            self._wake.clear()
            if self._queue:
                stamp, item = self._queue[0]
                wait_ms = stamp - self.clock.ms()
                if wait_ms > 0 and not isinstance(item, str):
                    try:
                        await asyncio.wait_for(self._wake.wait(), wait_ms / 1000)
                    except TimeoutError:
                        pass
                    continue
                self._queue.popleft()
                if isinstance(item, str):
                    self._echo(item)
                else:
                    yield stamp, item
            elif self._finished:
                return
            else:
                await self._wake.wait()

    def summary(self) -> dict[str, Any]:
        late = self.late_ms
        return {"receive_buffer_ms": 0.0, "receive_frames": self.frame_count,
                "receive_late_ms_p99": round(float(np.percentile(late, 99)), 1) if late else None,
                "receive_late_ms_max": round(max(late), 1) if late else None,
                "receive_ahead_ms_max": round(self.ahead_ms_max, 1),
                "receive_frames_cleared": self.cleared_frames}


class WebSocketTransport(CallTransport):
    """A WebSocket media stream: subclasses define the wire format (_send_audio, _on_text,
    _on_binary, and the opening and closing messages)."""

    continuous_media = False
    wire_rate: int = STT_RATE

    def __init__(self, target, clock, outgoing, events) -> None:
        super().__init__(target, clock, outgoing, events)
        self.player = IncomingPlayout(clock, on_mark=self._mark_played)
        self._http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._tasks: list[asyncio.Task] = []
        self._down = FrameResampler(WIRE_RATE, self.wire_rate)
        self._closed_by_agent = False
        self._closing_started = False
        self.close_code: int | None = None
        self.bad_messages = 0

    # --- connection -------------------------------------------------------------------

    def _ssl(self) -> ssl.SSLContext | bool:
        if self.target.ca_file:
            return ssl.create_default_context(cafile=self.target.ca_file)
        return True  # verify against the system's CAs

    def _headers(self) -> dict[str, str]:
        headers = {str(k): str(v) for k, v in self.target.headers}
        token = self.target.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return with_traceparent(headers, self.traceparent)

    async def connect(self, timeout_s: float) -> None:
        url = self.target.url
        self._http = aiohttp.ClientSession()
        try:
            async with asyncio.timeout(min(timeout_s, self.target.signaling_timeout_s)):
                self.ws = await self._http.ws_connect(
                    url, headers=self._headers(), ssl=self._ssl(), autoping=True,
                    max_msg_size=1 << 22)
        except aiohttp.WSServerHandshakeError as e:
            raise CallFailed(f"ws_handshake_http_{e.status}", e.message or "") from e
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError,
                ssl.SSLError) as e:
            raise CallFailed("ws_tls_error", f"{url}: {e}") from e
        except TimeoutError as e:
            raise CallFailed("ws_handshake_timeout", url) from e
        except (aiohttp.ClientError, OSError) as e:
            raise CallFailed("ws_unreachable", f"{url}: {e}") from e
        response = getattr(self.ws, "_response", None)  # the handshake's HTTP response
        if response is not None:
            self.agent_call_id = self.agent_call_id or _short(response.headers.get("X-Call-Id"))
        await self._opened()
        self._tasks = [asyncio.create_task(self._send_loop(), name="ws-send"),
                       asyncio.create_task(self._read_loop(), name="ws-read")]

    async def _opened(self) -> None:
        """Messages that open the stream (Twilio's connected and start)."""

    async def _send_loop(self) -> None:
        """Every 20 ms, on the pacer's deadline: the caller's next frame, silence included."""
        try:
            while self.ws is not None and not self.ws.closed:
                _, pcm48, _ = await self.outgoing.paced_frame()
                await self._send_audio(self._down.frame(pcm48))
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as e:
            log.debug("ws send ended: %s", e)

    async def _read_loop(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    break
                try:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        self._on_text(msg.data)
                    else:
                        self._on_binary(msg.data)
                except Exception as e:  # one message no reader expected: never the whole call
                    log.exception("reading the agent's message failed")
                    self._bad_message(f"unreadable: {type(e).__name__}")
        finally:
            self.close_code = self.ws.close_code
            self._closed_by_agent = not self._closing_started
            if self._closed_by_agent:  # else the call is over already: nothing more to hear
                self.player.finish()

    def _bad_message(self, why: str) -> None:
        self.bad_messages += 1
        if self.bad_messages <= 3:
            log.info("agent sent a bad media stream message: %s", why)

    async def _send_json(self, message: dict) -> None:
        import json

        if self.ws is not None and not self.ws.closed:
            try:
                await self.ws.send_str(json.dumps(message))
            except (ConnectionError, aiohttp.ClientError, RuntimeError) as e:
                log.debug("ws send failed: %s", e)

    # --- the wire format ----------------------------------------------------------------

    @abstractmethod
    async def _send_audio(self, pcm: np.ndarray) -> None: ...

    @abstractmethod
    def _on_text(self, data: str) -> None: ...

    def _on_binary(self, data: bytes) -> None:
        self._bad_message(f"{len(data)} bytes of binary data")

    def _mark_played(self, name: str) -> None:
        """A mark's audio has been played (Twilio echoes it)."""

    # --- the call's side ----------------------------------------------------------------

    async def incoming(self) -> AsyncIterator[tuple[float, np.ndarray]]:
        async for item in self.player.frames():
            yield item

    def media_end(self) -> tuple[str, dict[str, Any]]:
        if self._closed_by_agent and self.close_code in (None, ABNORMAL_CLOSURE):
            # no close frame: the agent's process (or the path to it) died, it did not hang up
            return "connection_lost", {"code": self.close_code}
        return "hangup", {"by": "agent", "how": "close", "code": self.close_code}

    def closed_before_audio(self) -> bool:
        return self._closed_by_agent and self.player.frame_count == 0

    async def close(self) -> None:
        self._closing_started = True
        for task in self._tasks:
            if task.get_name() == "ws-send":
                task.cancel()
        try:
            if self.ws is not None and not self.ws.closed:
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await self._closing()
                    await self.ws.close()
        except (TimeoutError, ConnectionError, aiohttp.ClientError, RuntimeError) as e:
            log.info("WebSocket close: %s", e)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()

    async def _closing(self) -> None:
        """Messages that end the stream (Twilio's stop, a hang-up message)."""

    async def network_stats(self) -> dict[str, Any]:
        return {"jitter_ms": None, "packet_loss_pct": None, "rtt_ms": None,
                **self.player.summary(), "bad_messages": self.bad_messages}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "url": self.target.url, "wire_rate": self.wire_rate,
                "close_code": self.close_code, "closed_by_agent": self._closed_by_agent}


def _short(value: object, limit: int = 128) -> str | None:
    if value is None:
        return None
    text = "".join(c for c in str(value) if c.isprintable()).strip()
    return text[:limit] or None
