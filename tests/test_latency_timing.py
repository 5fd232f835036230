"""Latency that matches what was heard: receive stamps from packet arrivals, sound bounds at
-45 dBFS on both sides, VAD edges refined to the sample, the agent's turn log, and pairing."""

from __future__ import annotations

import asyncio
import json
from fractions import Fraction

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from callers import media
from callers.audio import STT_RATE, WIRE_RATE, loud_windows, sound_bounds
from callers.media import (
    ArrivalAnchor,
    Playout,
    ReceiveStats,
    received_frames,
    utterance_from_pcm,
)
from callers.audio import FRAME_MS
from callers.speech.vad import FRAME_SAMPLES, SpeechSegmenter
from evaluation.latency_check import accuracy_summary, pair_turns
from reference_agent.turn_log import LastSound, TurnLog, read_turn_log

LEVEL = 32768 * 10 ** (-45 / 20)  # -45 dBFS as an RMS amplitude


def tone(ms: float, rate: int, amplitude: float = 8000.0, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(ms * rate / 1000)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def brute_bounds(pcm: np.ndarray, rate: int) -> tuple[int, int]:
    """The -45 dBFS 5 ms window bounds, one window at a time."""
    win = rate // 200
    loud = [i for i in range(pcm.size - win + 1)
            if np.sqrt(np.mean(pcm[i:i + win].astype(np.float64) ** 2)) > LEVEL]
    return (loud[0], loud[-1] + win) if loud else (0, 0)


# --- the receive path: stamps from packet arrivals -------------------------------------------

def test_anchor_is_the_least_delayed_packet_not_the_first():
    anchor = ArrivalAnchor()
    rng = np.random.default_rng(3)
    base = 1000.0
    delays = rng.uniform(0, 40, 200)
    delays[[0]] = 35.0  # the first packet was late: the old anchor kept that for the call
    delays[17] = 0.0  # the fastest one
    offsets = []
    for k, d in enumerate(delays):
        anchor.add(k * 20.0, base + k * 20.0 + d)
        offsets.append(anchor.offset_ms)
    assert offsets[0] == pytest.approx(base + 35.0)
    assert all(o == pytest.approx(base) for o in offsets[17:])
    assert all(b <= a for a, b in zip(offsets, offsets[1:], strict=False))  # only ever earlier


def test_anchor_follows_a_sender_that_stalled_after_the_window():
    anchor = ArrivalAnchor(window_ms=1000)
    for k in range(100):
        anchor.add(k * 20.0, k * 20.0 + 5.0)
    for k in range(100, 300):  # from here every packet is 200 ms later for good
        anchor.add(k * 20.0, k * 20.0 + 205.0)
    assert anchor.offset_ms == pytest.approx(205.0)


class FakeClock:
    t0 = 0.0  # monotonic seconds: arrivals below are on the same scale

    def __init__(self) -> None:
        self.now_ms = 0.0

    def ms(self) -> float:
        return self.now_ms


class FakeArrivals:
    def __init__(self, times_s: dict[int, float]) -> None:
        self.times_s = times_s

    def arrival(self, pts):
        return self.times_s.get(pts)


class FakeTrack:
    """Decoded 48 kHz frames from a list of (recv_ms, pts, samples); the clock follows recv."""

    def __init__(self, clock: FakeClock, frames) -> None:
        self.clock, self.frames = clock, list(frames)

    async def recv(self) -> av.AudioFrame:
        if not self.frames:
            raise MediaStreamError
        recv_ms, pts, pcm = self.frames.pop(0)
        self.clock.now_ms = recv_ms
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = WIRE_RATE
        frame.pts, frame.time_base = pts, Fraction(1, WIRE_RATE)
        return frame


async def _received(track, clock, stats=None):
    return [(t, f) async for t, f in received_frames(track, clock, stats)]


async def test_frames_are_stamped_at_their_earliest_packet_arrival_not_the_first_frame():
    rng = np.random.default_rng(5)
    n, start_ms = 100, 5000.0
    jitter = rng.uniform(0, 15, n)  # within LATE_ALLOWANCE_MS: our own loop reading late
    jitter[0], jitter[40] = 15.0, 0.0  # first packet late; packet 40 on time
    arrivals = {k * 960: (start_ms + k * 20 + jitter[k]) / 1000 for k in range(n)}
    silent = np.zeros(960, np.int16)
    # recv() hands each frame out 80 ms after its packet (aiortc's 4-packet prefetch) plus a
    # busy-loop delay that varies per frame
    frames = [(start_ms + k * 20 + jitter[k] + 80 + rng.uniform(0, 10), k * 960, silent)
              for k in range(n)]
    clock = FakeClock()
    track = FakeTrack(clock, frames)
    media._ARRIVALS[track] = FakeArrivals(arrivals)
    stats = ReceiveStats()
    out = await _received(track, clock, stats)
    assert len(out) >= n - 1  # the resampler holds a few samples back
    # From the on-time packet on, every 20 ms frame sits exactly on the stream's grid.
    for k, (t, frame) in enumerate(out[40:], start=40):
        assert t == pytest.approx(start_ms + k * 20, abs=1e-6)
        assert frame.size == FRAME_SAMPLES
    # Before it, stamps are never later than the frame's own packet arrival.
    assert all(t <= start_ms + k * 20 + jitter[k] + 1e-6 for k, (t, _) in enumerate(out))
    summary = stats.summary()
    assert 80 <= summary["receive_buffer_ms"] <= 90  # measured recv - arrival, not assumed
    assert summary["receive_frames_assumed_buffer"] == 0


async def test_audio_from_a_sender_that_stalled_is_stamped_when_it_could_be_heard():
    """The agent's loop stalls 150 ms just as its reply starts, then sends the backlog in a
    burst: that audio cannot have been heard before it arrived; the extra delay then relaxes
    at RELAX_MS per frame and the stamps keep rising."""
    clock = FakeClock()
    n, stall_at, stall_ms = 60, 30, 150.0
    loud = np.full(960, 3000, np.int16)
    arrive = {}
    for k in range(n):
        on_time = 1000 + k * 20
        late = stall_ms - (k - stall_at) * 20 if k >= stall_at else 0.0
        arrive[k] = on_time + max(0.0, late)  # the backlog arrives at once, then on time
    frames = [(arrive[k] + 80, k * 960, loud) for k in range(n)]
    track = FakeTrack(clock, frames)
    media._ARRIVALS[track] = FakeArrivals({k * 960: a / 1000 for k, a in arrive.items()})
    out = await _received(track, clock)
    times = [t for t, _ in out]
    assert times[:stall_at] == pytest.approx([1000 + k * 20 for k in range(stall_at)])
    # the first frame after the stall: its arrival less the allowance
    assert times[stall_at] == pytest.approx(arrive[stall_at] - media.LATE_ALLOWANCE_MS)
    assert all(b - a >= FRAME_MS - media.RELAX_MS - 1e-6 for a, b in zip(times, times[1:]))
    assert times[-1] == pytest.approx(1000 + (len(times) - 1) * 20)  # back on schedule


async def test_lost_packets_are_silence_on_the_grid_and_stamps_stay_true():
    clock = FakeClock()
    loud = np.full(960, 3000, np.int16)
    kept = [k for k in range(20) if k not in (8, 9, 10)]  # three packets lost
    frames = [(1000 + k * 20 + 80, k * 960, loud) for k in kept]
    track = FakeTrack(clock, frames)
    media._ARRIVALS[track] = FakeArrivals({k * 960: (1000 + k * 20) / 1000 for k in kept})
    out = await _received(track, clock)
    times = [t for t, _ in out]
    assert times == pytest.approx([1000 + k * 20 for k in range(len(times))])
    assert len(out) >= 19
    assert not out[9][1][40:280].any()  # the lost 60 ms is silent, in place
    assert out[12][1][40:280].min() > 2000


async def test_without_packet_arrivals_the_assumed_buffer_and_the_earliest_recv_are_used():
    clock = FakeClock()
    silent = np.zeros(960, np.int16)
    recvs = [2000 + k * 20 + (30 if k < 5 else 0) for k in range(20)]
    track = FakeTrack(clock, [(r, k * 960, silent) for k, r in enumerate(recvs)])
    stats = ReceiveStats()
    out = await _received(track, clock, stats)
    assert [t for t, _ in out[5:]] == pytest.approx(
        [2000 + k * 20 - media.RECEIVE_BUFFER_MS for k in range(5, len(out))])
    assert stats.summary()["receive_buffer_ms"] is None
    assert stats.summary()["receive_frames_assumed_buffer"] == 20


async def test_real_aiortc_loopback_stamps_match_the_sent_times():
    """Packet arrivals from a real RTCRtpReceiver: a tone's onset and end as received sit a
    few ms (the Opus codec delay) after the sender's marks, the same for every tone."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    from callers.loopback import loopback_only
    from callers.media import Clock, OutgoingAudioTrack

    clock, marks = Clock(), []
    playout = Playout(on_event=lambda kind, t, u: marks.append((kind, t)))
    sender = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    sender.addTrack(OutgoingAudioTrack(playout, clock))
    got = asyncio.get_running_loop().create_future()
    receiver.on("track", got.set_result)
    with loopback_only():
        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        await receiver.setLocalDescription(await receiver.createAnswer())
    await sender.setRemoteDescription(receiver.localDescription)
    track = await asyncio.wait_for(got, 10)
    stats, heard = ReceiveStats(), []

    async def listen():
        async for t, f in received_frames(track, clock, stats):
            heard.append((t, f))

    listening = asyncio.create_task(listen())
    rng = np.random.default_rng(2)
    try:
        for _ in range(4):
            await asyncio.sleep(0.25)
            lead = np.zeros(int(rng.integers(0, 960)), np.int16)  # a sub-frame start
            pcm = np.concatenate([lead, tone(150, WIRE_RATE), np.zeros(960, np.int16)])
            await playout.say(utterance_from_pcm(pcm, WIRE_RATE, "beep", record=False))
        await asyncio.sleep(0.3)
    finally:
        listening.cancel()
        await sender.close()
        await receiver.close()
    t0 = heard[0][0]
    track16 = media.place_on_timeline([(t - t0, f) for t, f in heard], STT_RATE)
    starts = [t for kind, t in marks if kind == "speech_start"]
    ends = [t for kind, t in marks if kind == "speech_end"]
    errors = []
    for s, e in zip(starts, ends, strict=True):
        lo = int((s - 60 - t0) * 16)
        first, last = sound_bounds(track16[lo:int((e + 60 - t0) * 16)], STT_RATE)
        errors += [t0 + (lo + first) / 16 - s, t0 + (lo + last) / 16 - e]
    assert all(0 <= err <= 15 for err in errors), errors
    assert max(errors) - min(errors) <= 10, errors
    summary = stats.summary()
    assert summary["receive_frames_assumed_buffer"] == 0  # every frame matched its packet
    assert 60 <= summary["receive_buffer_ms"] <= 120


# --- where sound ends: -45 dBFS, 5 ms windows, on both sides -----------------------------------

def test_sound_bounds_are_the_first_and_last_5ms_window_above_minus_45_dbfs():
    rate = STT_RATE
    rng = np.random.default_rng(1)
    body = tone(300, rate)
    decay = (tone(200, rate) * np.exp(-np.arange(3200) / 500)).astype(np.int16)  # soft ending
    clip = np.concatenate([np.zeros(1234, np.int16), body, decay, np.zeros(4000, np.int16)])
    clip = (clip + rng.normal(0, 5, clip.size)).astype(np.int16)  # a faint floor, -76 dBFS
    assert sound_bounds(clip, rate) == brute_bounds(clip, rate)
    first, last = sound_bounds(clip, rate)
    assert 1234 - 80 <= first <= 1234
    assert last > 1234 + body.size + 1000  # well into the decay, not cut at its start


async def test_the_callers_turn_end_is_the_last_loud_window_of_the_audio_as_sent():
    rate = 22050
    decay = (tone(250, rate, freq=180) * np.exp(-np.arange(int(0.25 * rate)) / 1200))
    pcm = np.concatenate([np.zeros(3000, np.int16), tone(400, rate, freq=180),
                          decay.astype(np.int16), np.zeros(5000, np.int16)])
    utterance = utterance_from_pcm(pcm, rate, "fifty dollars.")
    # checked in the 16 kHz band both sides hear (utterance.pcm16: the audio as sent, resampled)
    _, expected_end16 = brute_bounds(utterance.pcm16, STT_RATE)
    expected_end = expected_end16 * 3
    events = []
    playout = Playout(on_event=lambda kind, t, u: events.append((kind, t)))
    playout.say(utterance)
    i = 0
    while playout.speaking:
        playout.next_frame(1000.0 + i * 20)
        i += 1
    end_ms = dict(events)["speech_end"]
    assert end_ms == pytest.approx(1000.0 + expected_end / WIRE_RATE * 1000)
    # At -40 dBFS on 10 ms blocks, as before, the turn ended tens of ms earlier.
    from callers.audio import voiced_bounds
    assert (expected_end - voiced_bounds(utterance.pcm48, WIRE_RATE, -40.0)[1]) / 48 > 30


def test_sound_above_8khz_that_a_16khz_listener_never_receives_does_not_extend_the_turn():
    rate = WIRE_RATE
    hiss = tone(100, rate, amplitude=1000, freq=11_000)  # -30 dBFS, all of it above 8 kHz
    pcm = np.concatenate([tone(300, rate, freq=300), hiss, np.zeros(4800, np.int16)])
    utterance = utterance_from_pcm(pcm, rate, "yes.")
    assert abs(utterance.voiced[1] / rate * 1000 - 300) <= 6


# --- the VAD's edges, refined to the sample ------------------------------------------------

@pytest.mark.parametrize("onset_ms", [500.0, 507.3, 513.9, 519.95])
def test_vad_start_and_end_are_refined_to_within_5ms(onset_ms):
    rate = STT_RATE
    onset = int(onset_ms * rate / 1000)
    speech = tone(600, rate, amplitude=6000, freq=300) + tone(600, rate, amplitude=3000, freq=900)
    fade = (tone(120, rate, freq=300) * np.exp(-np.arange(1920) / 300)).astype(np.int16)
    audio = np.concatenate([np.zeros(onset, np.int16), speech, fade, np.zeros(rate, np.int16)])
    first, last = brute_bounds(audio, rate)
    segmenter = SpeechSegmenter(hangover_ms=300)
    events = []
    for i in range(audio.size // FRAME_SAMPLES):
        events += segmenter.push(audio[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES], 100.0 + i * 20)
    events += segmenter.flush()
    start = next(e.t_ms for e in events if e.kind == "start")
    end = next(e for e in events if e.kind == "end")
    assert abs(start - (100.0 + onset_ms)) <= 5.0
    assert start == pytest.approx(100.0 + first / 16)  # the first loud window, to the sample
    assert end.t_ms == pytest.approx(100.0 + last / 16)
    assert end.segment.start_ms == start and end.segment.end_ms == end.t_ms


def test_vad_edges_do_not_reach_past_the_edge_limit_into_a_noise_floor():
    rate = STT_RATE
    rng = np.random.default_rng(4)
    noise = rng.normal(0, 250, 3 * rate).astype(np.int16)  # -42 dBFS: above the sound level
    audio = noise.copy()
    audio[rate:2 * rate] += tone(1000, rate, amplitude=9000, freq=300)
    segmenter = SpeechSegmenter(hangover_ms=300)
    events = []
    for i in range(audio.size // FRAME_SAMPLES):
        events += segmenter.push(audio[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES], i * 20.0)
    events += segmenter.flush()
    (seg,) = [e.segment for e in events if e.kind == "end" and e.segment.start_ms < 1500
              < e.segment.end_ms]
    # The noise is as loud as the sound level, so the edges run on into it, but no further
    # than EDGE_MS from the frames the VAD chose (3 frames to start, 1 loud one at the end).
    assert 1000 - 100 - 3 * 20 <= seg.start_ms <= 1000
    assert 2000 <= seg.end_ms <= 2000 + 20 + 100


# --- the reference agent's turn log ----------------------------------------------------------

def test_last_sound_is_the_end_of_the_last_loud_window_across_frames():
    audio = np.concatenate([np.zeros(3000, np.int16), tone(300, STT_RATE),
                            np.zeros(2000, np.int16)])
    audio[7790:7810] = 0  # a dip: windows straddling frames still see the sound around it
    last = LastSound()
    for i in range(audio.size // 320):
        last.push(40.0 + i * 20, audio[i * 320:(i + 1) * 320])
    assert last.ms == pytest.approx(40.0 + brute_bounds(audio, STT_RATE)[1] / 16)


async def test_agent_logs_when_its_reply_left_and_what_it_last_heard(tmp_path):
    from reference_agent.call import AgentCall, AgentKnobs, SpeechModels

    class PC:
        connectionState = "new"

        def addTrack(self, track):
            pass

        def on(self, *args):
            pass

    log = TurnLog(tmp_path / "turns.jsonl")
    agent = AgentCall(PC(), SpeechModels(None, None), AgentKnobs(), turn_log=log, call_id="c1")
    pcm = np.concatenate([np.zeros(2000, np.int16), tone(300, WIRE_RATE)])
    reply = utterance_from_pcm(pcm, WIRE_RATE, "Thanks.", mode="prompt", record=False)
    agent._log_reply(reply, 1234.5, 1900.0)
    agent.playout.say(reply)
    for i in range(20):
        agent.playout.next_frame(3000.0 + i * 20)
    log.close()
    (entry,) = read_turn_log(tmp_path / "turns.jsonl")
    first = reply.voiced[0]
    assert entry["kind"] == "turn" and entry["call_id"] == "c1" and entry["turn"] == 1
    assert entry["reply_start_ms"] == pytest.approx(3000.0 + first / 48, abs=0.01)
    assert entry["gap_ms"] == pytest.approx(entry["reply_start_ms"] - 1234.5, abs=0.01)
    assert entry["t0_monotonic"] == agent.clock.t0
    assert entry["send_late_ms"] == 0.0  # no frame went out through the track here


def test_turn_log_option_reaches_the_agent():
    from pathlib import Path

    from orchestration.cli import build_parser

    args = build_parser().parse_args(["agent", "--turn-log", "t.jsonl"])
    assert args.turn_log == Path("t.jsonl")
    assert build_parser().parse_args(["agent"]).turn_log is None


# --- pairing callfleet's latencies with the agent's gaps ---------------------------------------

def test_pairs_each_response_with_the_agents_entry_for_it():
    caller_t0, agent_t0 = 100.0, 100.25  # the agent's clock started 250 ms later
    events = [
        {"kind": "agent_speech_start", "t_ms": 500.0}, {"kind": "agent_speech_end", "t_ms": 2000.0},
        {"kind": "caller_speech_start", "t_ms": 3000.0}, {"kind": "caller_speech_end", "t_ms": 4000.0},
        {"kind": "caller_turn_end", "t_ms": 4000.0},
        {"kind": "agent_speech_start", "t_ms": 6100.0}, {"kind": "agent_speech_end", "t_ms": 7000.0},
        {"kind": "caller_speech_start", "t_ms": 8000.0}, {"kind": "caller_speech_end", "t_ms": 9000.0},
        {"kind": "caller_turn_end", "t_ms": 9000.0},
        {"kind": "agent_speech_start", "t_ms": 11_050.0},
        {"kind": "agent_speech_end", "t_ms": 12_000.0},
    ]
    entries = [  # on the agent's clock: caller times - 250 ms
        {"kind": "turn", "turn": 1, "t0_monotonic": agent_t0, "last_caller_sound_ms": 3755.0,
         "reply_start_ms": 5842.0, "gap_ms": 2087.0},
        {"kind": "turn", "turn": 2, "t0_monotonic": agent_t0, "last_caller_sound_ms": 8760.0,
         "reply_start_ms": 10_790.0, "gap_ms": 2030.0},
    ]
    pairs = pair_turns({"call_id": "x", "events": events}, entries, caller_t0)
    assert [(p.turn, p.latency_ms, p.gap_ms) for p in pairs] == [(1, 2100.0, 2087.0),
                                                                  (2, 2050.0, 2030.0)]
    assert [p.uplink_ms for p in pairs] == [5.0, 10.0]
    assert [p.downlink_ms for p in pairs] == [8.0, 10.0]
    assert [p.error_ms for p in pairs] == [13.0, 20.0]
    summary = accuracy_summary(pairs)
    assert summary["turns"] == 2 and summary["error_ms"]["median"] == 16.5
    json.dumps(summary)  # JSON-able for the results file


def test_loud_windows_match_a_direct_computation():
    rng = np.random.default_rng(9)
    pcm = (rng.normal(0, 1, 4000) * np.linspace(0, 600, 4000)).astype(np.int16)
    win = STT_RATE // 200
    direct = [np.sqrt(np.mean(pcm[i:i + win].astype(np.float64) ** 2)) > LEVEL
              for i in range(pcm.size - win + 1)]
    assert loud_windows(pcm, STT_RATE).tolist() == direct
    assert loud_windows(pcm[:10], STT_RATE).size == 0
