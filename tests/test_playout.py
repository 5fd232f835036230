"""Caller playout: planned start times, hesitation pauses, and the outgoing line chain."""

from __future__ import annotations

import numpy as np
import pytest

from callers.audio import FRAME_MS, STT_RATE, WIRE_RATE
from callers.line import CallerLine, GilbertElliott
from callers.media import Playout, utterance_from_pcm
from callers.noise import NoiseBed, measured_snr_db

RATE = 22050


def tone(seconds: float, rate: int = RATE, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def silence(seconds: float, rate: int = RATE) -> np.ndarray:
    return np.zeros(int(seconds * rate), np.int16)


def play(playout: Playout, t0: float = 0.0, max_frames: int = 1000) -> list[np.ndarray]:
    frames = []
    for i in range(max_frames):
        if not playout.speaking:
            break
        frames.append(playout.next_frame(t0 + i * FRAME_MS)[0])
    return frames


async def test_planned_start_is_kept_to_the_sample_not_the_frame():
    utterance = utterance_from_pcm(tone(0.5), RATE, "beep")
    first = utterance.voiced[0]
    events = []
    playout = Playout(on_event=lambda kind, t, u: events.append((kind, t)))
    utterance.start_at_ms = 107.0  # between frames 100 and 120
    playout.say(utterance)
    frames = play(playout)
    start = next(t for kind, t in events if kind == "speech_start")
    assert start == pytest.approx(107.0 + first / WIRE_RATE * 1000, abs=0.1)
    sent = np.concatenate(frames)
    # Nothing before the planned time: the first sample sits 107 ms (5136 samples) in.
    assert not sent[: 107 * 48 - 3].any()
    assert sent[107 * 48 + first + 48 * 5:].any()


async def test_a_late_start_plays_at_once():
    utterance = utterance_from_pcm(tone(0.3), RATE, "beep")
    utterance.start_at_ms = -500.0
    events = []
    playout = Playout(on_event=lambda kind, t, u: events.append((kind, t)))
    playout.say(utterance)
    play(playout, t0=1000.0)
    assert events[0][1] == pytest.approx(1000.0 + utterance.voiced[0] / WIRE_RATE * 1000)


async def test_hesitation_splits_the_utterance_into_two_parts_with_a_pause_between():
    pcm = np.concatenate([tone(0.3), silence(0.6), tone(0.5)])
    pause = (int(0.3 * RATE), int(0.9 * RATE))
    utterance = utterance_from_pcm(pcm, RATE, "um ... Smith", pause_at=[pause])
    assert len(utterance.spans) == 2
    events = []
    playout = Playout(on_event=lambda kind, t, u: events.append((kind, round(t))))
    playout.say(utterance)
    play(playout)
    kinds = [k for k, _ in events]
    assert kinds == ["speech_start", "speech_end", "pause_start", "pause_end", "speech_start",
                     "speech_end"]
    times = dict(zip(["s1", "e1", "ps", "pe", "s2", "e2"], [t for _, t in events]))
    assert times["e1"] == times["ps"] and times["pe"] == times["s2"]
    assert times["s2"] - times["e1"] == pytest.approx(600, abs=15)  # the pause, to a 10 ms window
    assert utterance.start_ms == pytest.approx(times["s1"], abs=1)
    assert utterance.end_ms == pytest.approx(times["e2"], abs=1)


async def test_stop_inside_a_pause_ends_the_pause_not_the_speech():
    pcm = np.concatenate([tone(0.3), silence(1.0), tone(0.5)])
    utterance = utterance_from_pcm(pcm, RATE, "um ... Smith",
                                   pause_at=[(int(0.3 * RATE), int(1.3 * RATE))])
    events = []
    playout = Playout(on_event=lambda kind, t, u: events.append(kind))
    playout.say(utterance)
    for i in range(30):  # 600 ms: inside the pause
        playout.next_frame(i * FRAME_MS)
    playout.stop(600.0)
    assert events == ["speech_start", "speech_end", "pause_start", "pause_end"]


async def test_line_delay_moves_reported_times_to_when_audio_leaves():
    utterance = utterance_from_pcm(tone(0.3), RATE, "beep")
    events = []
    playout = Playout(on_event=lambda kind, t, u: events.append((kind, t)), delay_ms=8.25)
    playout.say(utterance)
    play(playout)
    assert events[0][1] == pytest.approx(8.25 + utterance.voiced[0] / WIRE_RATE * 1000)


def test_caller_line_mixes_noise_at_the_persona_snr():
    speech = tone(4.0, WIRE_RATE, hz=300) // 2
    bed = NoiseBed("pink", seed=3, rate=WIRE_RATE)
    from callers.noise import active_rms
    bed.set_snr(10.0, active_rms(speech, WIRE_RATE))
    line = CallerLine(WIRE_RATE, noise=bed)
    out = np.concatenate([line.process(speech[i:i + 960])[0]
                          for i in range(0, speech.size - 959, 960)])
    noise = out.astype(np.float64) - speech[: out.size]
    assert measured_snr_db(speech[: out.size], noise, WIRE_RATE) == pytest.approx(10.0, abs=1.0)


def test_caller_line_drops_frames_in_bursts_and_keeps_a_16k_copy_of_what_was_sent():
    line = CallerLine(WIRE_RATE, band_limit=True,
                      loss=GilbertElliott.from_loss_pct(20, seed=1))
    frame = tone(0.02, WIRE_RATE, hz=1000)
    outs = [line.process(frame) for _ in range(500)]
    lost = [not f48.any() for f48, _ in outs[5:]]
    assert 0.12 < sum(lost) / len(lost) < 0.28
    assert line.frames_lost >= sum(lost)
    assert all(f48.size == 960 and f16.size == 320 for f48, f16 in outs)
    assert line.delay_ms == pytest.approx(396 / 48, abs=0.1)  # the band-pass's group delay
    # The recording hears the same gaps: inside a burst (after the resampler's few-sample
    # spill) the 16 kHz copy is silent too.
    inside = [i for i in range(6, 500) if not outs[i - 1][0].any() and not outs[i][0].any()]
    assert inside
    assert all(np.abs(outs[i][1][16:]).max() < 50 for i in inside)
    assert sum(f.size for _, f in outs) == STT_RATE * 10
