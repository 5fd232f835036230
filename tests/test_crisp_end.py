"""The caller's turn ends where the agent hears it end, through Opus.

Piper fades some lines out at -38..-50 dBFS ("...what a mess that was.", "...thank you for
your help."), right at the -45 dBFS bound both sides use: after Opus the agent's last loud
window came up to 120 ms before the end callfleet recorded, and test_latency_accuracy_e2e
failed on such turns. The caller's voice now ends crisply (callers.audio.CRISP_END_DBFS).
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
from aiortc.codecs.opus import OpusDecoder, OpusEncoder
from aiortc.jitterbuffer import JitterFrame

from callers.audio import FRAME_MS, STT_RATE, WIRE_RATE, StreamResampler
from callers.caller_voice import CallerVoice
from callers.media import utterance_from_pcm
from callers.persona import resolve_persona
from reference_agent.turn_log import LastSound

# Lines whose Piper endings moved by 87-120 ms through Opus before the crisp end, and two
# ordinary ones.
LINES = ("Pretty good, thank you for your help.",
         "My last name is Davis. My neighbour had the same problem last spring, what a mess "
         "that was.",
         "My last name is Smith.", "The amount is fifty dollars.", "Emily. E, M, I, L, Y.")
PERSONAS = ("cooperative-john", "rambler-robert")
LEAD_FRAMES = 5


def heard_end_ms(pcm48: np.ndarray) -> float:
    """Where the agent hears this audio's sound end: aiortc's Opus both ways, then the
    reference agent's 16 kHz receive path and its turn log's LastSound (ms from pcm48[0])."""
    encoder, decoder = OpusEncoder(), OpusDecoder()
    resampler, last = StreamResampler(STT_RATE), LastSound()
    n, k = WIRE_RATE * FRAME_MS // 1000, STT_RATE * FRAME_MS // 1000
    padded = np.concatenate([np.zeros(n * LEAD_FRAMES, np.int16), pcm48,
                             np.zeros(n * 10, np.int16)])
    pending, t_ms = np.zeros(0, np.int16), 0.0
    for i in range(0, padded.size - n + 1, n):
        frame = av.AudioFrame.from_ndarray(padded[i : i + n].reshape(1, -1), format="s16",
                                           layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = WIRE_RATE, i, Fraction(1, WIRE_RATE)
        payloads, timestamp = encoder.encode(frame)
        for payload in payloads:
            for decoded in decoder.decode(JitterFrame(data=payload, timestamp=timestamp)):
                pending = np.concatenate([pending, resampler.push_frame(decoded)])
        while pending.size >= k:
            last.push(t_ms, pending[:k])
            pending, t_ms = pending[k:], t_ms + FRAME_MS
    assert last.ms is not None
    return last.ms - LEAD_FRAMES * FRAME_MS


@pytest.fixture(scope="module")
def heard_minus_recorded(synth):
    """For each persona and line: (heard end - recorded end) ms, crisp and as Piper made it."""
    import asyncio

    async def both(persona_id: str, text: str) -> tuple[float, float]:
        voice = CallerVoice(resolve_persona(persona_id), synth)
        crisp = await voice.utterance(text)
        raw = utterance_from_pcm(await voice._pcm(text), synth.sample_rate, text)
        return tuple(heard_end_ms(u.pcm48) - u.spans[-1][1] * 1000 / WIRE_RATE
                     for u in (crisp, raw))

    return {(p, t): asyncio.run(both(p, t)) for p in PERSONAS for t in LINES}


def test_the_agent_hears_the_callers_turn_end_where_callfleet_records_it(heard_minus_recorded):
    crisp = [c for c, _ in heard_minus_recorded.values()]
    # a constant (Opus and the resampler delay the sound ~5 ms), never a line's faint tail
    assert max(crisp) - min(crisp) <= 8.0, heard_minus_recorded
    assert all(-2.0 <= d <= 10.0 for d in crisp), heard_minus_recorded


def test_piper_endings_as_synthesized_are_what_the_crisp_end_fixes(heard_minus_recorded):
    # the check above could fail: without the crisp end, some of these lines end early
    raw = [r for _, r in heard_minus_recorded.values()]
    assert max(raw) - min(raw) > 30.0, heard_minus_recorded


async def test_the_crisp_end_only_cuts_the_faint_tail(synth):
    text = LINES[1]
    pcm = await CallerVoice(resolve_persona("rambler-robert"), synth)._pcm(text)
    crisp, raw = (utterance_from_pcm(pcm, synth.sample_rate, text, crisp_end=c)
                  for c in (True, False))
    end = crisp.spans[-1][1]
    assert 0.0 < (raw.spans[-1][1] - end) * 1000 / WIRE_RATE <= 150.0
    assert np.array_equal(crisp.pcm48[: end - 48 * 10], raw.pcm48[: end - 48 * 10])
    assert np.array_equal(crisp.pcm16[: end // 3 - 160], raw.pcm16[: end // 3 - 160])
    assert not crisp.pcm48[end + 48 * 5 :].any() and not crisp.pcm16[end // 3 + 80 :].any()
