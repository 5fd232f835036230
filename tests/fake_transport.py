"""A fake for the transport seam: an in-memory agent on the other end of a CallTransport.

The agent "says" each line of a script as a tone (played in real time through the same
IncomingPlayout the WebSocket transports use), waits for the caller to speak and stop, says the
next line, and hangs up after the last. FakeSTT hears whatever the agent last said; FakeTTS
speaks any text as a tone. A whole CallSession conversation runs without aiortc, Whisper or
Piper.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np

from callers.audio import STT_RATE, rms_dbfs
from callers.transports.base import CallTransport
from callers.transports.websocket import IncomingPlayout


def tone(seconds: float, hz: float = 140.0, rate: int = STT_RATE) -> np.ndarray:
    """Voice-like sound (harmonics of hz, at 4 syllables a second) that a VAD takes for
    speech; a steady sine it soon takes for noise."""
    t = np.arange(int(seconds * rate)) / rate
    voice = sum(np.sin(2 * np.pi * hz * k * t) / k for k in range(1, 12))
    syllables = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    return (4000 * voice * syllables).astype(np.int16)


class FakeTTS:
    sample_rate = STT_RATE

    async def synthesize(self, text: str, rate: float = 1.0, variant: int = 0) -> np.ndarray:
        return np.concatenate([np.zeros(800, np.int16), tone(0.25 + 0.02 * len(text.split())),
                               np.zeros(800, np.int16)])


class FakeSTT:
    def __init__(self) -> None:
        self.agent: FakeAgentTransport | None = None

    async def transcribe(self, audio, prompt=None, *, needed_in_s=None):
        return SimpleNamespace(text=self.agent.said if self.agent else "")


class FakeAgentTransport(CallTransport):
    kind = "fake"

    def __init__(self, target, clock, outgoing, events, *, script: list[str],
                 stt: FakeSTT) -> None:
        super().__init__(target, clock, outgoing, events)
        self.script = script
        self.said = ""
        stt.agent = self
        self.player = IncomingPlayout(clock)
        self.caller_frames: list[float] = []  # rms dBFS of each frame the caller sent
        self.heard_turns = 0
        self._tasks: list[asyncio.Task] = []
        self.agent_call_id = "fake-1"

    async def connect(self, timeout_s: float) -> None:
        self._tasks = [asyncio.create_task(self._send_loop()), asyncio.create_task(self._agent())]

    async def _send_loop(self) -> None:
        while True:
            _, pcm48, _ = await self.outgoing.paced_frame()
            self.caller_frames.append(rms_dbfs(pcm48))

    async def _caller_turn(self) -> None:
        """Until the caller has spoken and then been quiet for 300 ms."""
        start = len(self.caller_frames)
        while True:
            await asyncio.sleep(0.02)
            frames = self.caller_frames[start:]
            loud = [i for i, level in enumerate(frames) if level > -40]
            if loud and len(frames) - loud[-1] > 15:
                self.heard_turns += 1
                return

    async def _agent(self) -> None:
        await asyncio.sleep(0.1)
        for i, line in enumerate(self.script):
            self.said = line
            # then silence, as agents send it: the VAD hears the end of the turn
            self.player.push(np.concatenate([tone(0.4 + 0.01 * len(line)),
                                             np.zeros(STT_RATE // 2, np.int16)]))
            if i < len(self.script) - 1:
                await self._caller_turn()
        await asyncio.sleep(1.0)
        self.events.message("agent-state", '{"event": "hangup"}')
        self.player.finish()

    async def incoming(self):
        async for item in self.player.frames():
            yield item

    def media_end(self):
        return "hangup", {"by": "agent"}

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
