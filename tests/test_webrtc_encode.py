"""The caller's aiortc sender encodes each 20 ms frame on the event loop, not through the
default executor (callers.transports.webrtc.encode_inline): same bytes, audio level kept."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from callers.transports.webrtc import InlineExecutorLoop, encode_inline


class NoExecutor(ThreadPoolExecutor):
    def submit(self, fn, *args, **kwargs):
        raise AssertionError("a frame was sent to the executor")


class Tone(MediaStreamTrack):
    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.pts = 0

    async def recv(self) -> av.AudioFrame:
        pcm = (3000 * np.sin(np.arange(960) / 8)).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48_000, self.pts, Fraction(1, 48_000)
        self.pts += 960
        return frame


async def test_the_sender_encodes_opus_on_the_loop_with_its_audio_level():
    pc = RTCPeerConnection()
    try:
        sender = pc.addTrack(Tone())
        encode_inline(sender)
        encode_inline(sender)  # twice: wrapped once
        assert isinstance(sender._RTCRtpSender__loop, InlineExecutorLoop)
        assert not isinstance(sender._RTCRtpSender__loop._loop, InlineExecutorLoop)
        asyncio.get_running_loop().set_default_executor(NoExecutor())
        opus = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48_000, channels=2,
                                     payloadType=111)
        frames = [await sender._next_encoded_frame(opus) for _ in range(5)]
        sent = [f for f in frames if f is not None]
        assert len(sent) >= 4
        assert all(f.payloads and f.payloads[0] for f in sent)
        assert all(f.audio_level is not None for f in sent)  # RFC 6464 level still computed
        steps = {b.timestamp - a.timestamp for a, b in zip(sent, sent[1:])}
        assert steps == {960}  # 20 ms of 48 kHz RTP clock apart
    finally:
        await pc.close()


async def test_an_encoder_error_reaches_the_sender_as_from_the_executor():
    loop = InlineExecutorLoop(asyncio.get_running_loop())

    def broken():
        raise ValueError("bad frame")

    future = loop.run_in_executor(None, broken)
    try:
        await future
    except ValueError as e:
        assert str(e) == "bad frame"
    else:
        raise AssertionError("the error was lost")
    assert await loop.run_in_executor(None, lambda a, b: a + b, 2, 3) == 5
    assert loop.time() > 0  # everything else is the loop's own
