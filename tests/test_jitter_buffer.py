"""The SIP receive path's jitter buffer: order restored, gaps filled, stamps on the stream's
timeline whatever the jitter."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest

from callers.transports.sip.jitter_buffer import HOLD_S, JitterBuffer


class Feed:
    """A jitter buffer on a settable clock, recording what it plays."""

    def __init__(self) -> None:
        self.t = 100.0
        self.played: list[tuple[int, float]] = []  # (first sample value, stamp)
        self.buffer = JitterBuffer(lambda pcm, stamp: self.played.append((int(pcm[0]), stamp)),
                                   now=lambda: self.t)

    def send(self, n: int, arrival: float, base_ts: int = 0) -> None:
        self.t = arrival
        # packet n carries samples of value n + 1 (silence fills are 0)
        self.buffer.push(n & 0xFFFF, (base_ts + n * 160) & 0xFFFFFFFF,
                         np.full(160, n + 1, np.int16), arrival)


async def test_overtaken_packets_are_played_in_their_order_and_nothing_is_concealed():
    feed = Feed()
    for n, late in [(0, 0), (2, 0), (1, 0.025), (3, 0), (5, 0), (4, 0.030), (6, 0)]:
        feed.send(n, 100 + n * 0.02 + late)
    assert [v for v, _ in feed.played] == [1, 2, 3, 4, 5, 6, 7]
    assert feed.buffer.concealed == 0 and feed.buffer.late == 0
    feed.buffer.close()


async def test_a_lost_packet_is_silence_after_the_hold_and_a_straggler_is_late():
    feed = Feed()
    for n in (0, 1, 3):
        feed.send(n, 100 + n * 0.02)
    assert [v for v, _ in feed.played] == [1, 2]  # 3 waits for 2
    feed.t = 100 + 3 * 0.02 + HOLD_S + 0.001
    feed.buffer._drain()  # what the buffer's timer does once the hold has passed
    assert [v for v, _ in feed.played] == [1, 2, 0, 4]
    stamps = [s for _, s in feed.played]
    assert np.diff(stamps) == pytest.approx([0.02] * 3, abs=1e-6)  # silence in its place
    feed.send(2, 100 + 0.2)
    assert feed.buffer.late == 1 and len(feed.played) == 4
    assert feed.buffer.concealed == 1
    feed.buffer.close()


async def test_the_hold_runs_on_the_event_loop_without_another_packet():
    played = []
    buffer = JitterBuffer(lambda pcm, stamp: played.append(int(pcm[0])))
    loop = asyncio.get_running_loop()
    for n in (0, 2):
        buffer.push(n, n * 160, np.full(160, n + 1, np.int16), loop.time())
    assert played == [1]
    await asyncio.sleep(HOLD_S + 0.03)
    assert played == [1, 0, 3]
    buffer.close()


async def test_jitter_does_not_move_stamps_which_carry_the_median_delay():
    feed, rng = Feed(), random.Random(5)
    sends = [(100 + n * 0.02 + 0.100 + rng.uniform(-0.03, 0.03), n) for n in range(500)]
    for arrival, n in sorted(sends):  # +-30 ms around 100 ms: neighbours overtake each other
        feed.send(n, arrival, base_ts=4_000_000_000)  # the timestamps wrap on the way
    assert [v for v, _ in feed.played] == list(range(1, 501))
    assert feed.buffer.concealed == 0 and feed.buffer.late == 0
    stamps = np.array([s for _, s in feed.played][50:])  # after the first second
    delay = stamps - (100 + np.arange(50, 500) * 0.02)
    assert np.median(delay) == pytest.approx(0.100, abs=0.004)
    # the median of the last second moves a few ms at a time, against +-30 ms of jitter
    assert np.abs(np.diff(stamps) - 0.02).max() < 0.005
    feed.buffer.close()


async def test_a_sender_that_stalls_is_heard_late_after_a_few_packets():
    feed = Feed()
    for n in range(100):
        feed.send(n, 100 + n * 0.02 + (0.3 if n >= 60 else 0))  # 300 ms behind from packet 60
    delay = [s - (100 + n * 0.02) for n, (_, s) in enumerate(feed.played)]
    assert delay[59] == pytest.approx(0, abs=1e-6)
    assert all(d == pytest.approx(0.3, abs=1e-6) for d in delay[62:])
    feed.buffer.close()


async def test_a_new_source_plays_what_was_held_and_starts_a_new_timeline():
    feed = Feed()
    for n in (0, 2):  # 1 missing: 2 is held
        feed.send(n, 100 + n * 0.02)
    feed.buffer.reset()  # the SSRC changed
    assert [v for v, _ in feed.played] == [1, 0, 3]  # the gap filled, the held one played
    feed.t = 105.0
    feed.buffer.push(40_000, 7_000_000, np.full(160, 9, np.int16), 105.0)
    assert feed.played[-1] == (9, pytest.approx(105.0))  # its own anchor, at once
    feed.buffer.close()
