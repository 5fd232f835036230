"""A small jitter buffer for one RTP audio stream: packets back in order, gaps filled, and each
packet placed on the stream's own timeline.

Jitter reorders packets (at 20 ms per packet, +-30 ms of jitter swaps neighbours often), and
a receiver that plays only what arrives in order loses every overtaken packet; one that plays
what arrives, as it arrives, squeezes lost packets out of time. Here:

- a packet that overtook others waits at most HOLD_S for them; then their gap is played as
  silence (counted as concealed), and a packet arriving after its place was played is late;
- each packet is stamped where the stream puts it: its RTP timestamp, anchored on our clock
  by the median transit of the last ANCHOR_PACKETS packets, so jitter does not move turn ends
  and the stamps carry the path's typical delay. A transit that stays more than HOLD_S off
  that median (the sender stalled, or restarted its timestamps) moves the anchor at once.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import deque
from collections.abc import Callable

import numpy as np

# Three 20 ms packets: covers +-30 ms of jitter, the depth of a phone's small fixed buffer.
HOLD_S = 0.060
ANCHOR_PACKETS = 50  # one second of stream
REANCHOR_AFTER = 3  # packets in a row off the median by more than HOLD_S
MAX_FILL_SAMPLES = 8000  # 1 s at 8 kHz: a longer gap (a pause, a blackhole) is not filled
PACKET_SAMPLES = 160  # silence is played in 20 ms packets, as the audio it stands for
MAX_HELD = 50  # packets waiting behind a gap: more, and the gap is given up at once


def _unwrap(value: int, last: int | None, bits: int) -> int:
    """value (mod 2**bits) as the integer nearest last: sequence numbers and timestamps wrap."""
    if last is None:
        return value
    span = 1 << bits
    return last + ((value - last + span // 2) % span) - span // 2


class JitterBuffer:
    """play(pcm8k, stamp_s) gets the stream in order: each packet's audio, or silence for a
    gap, with the time.monotonic() second it is heard at."""

    def __init__(self, play: Callable[[np.ndarray, float], None], clock_rate: int = 8000,
                 hold_s: float = HOLD_S, now: Callable[[], float] = time.monotonic) -> None:
        self.play = play
        self.now = now
        self.rate = clock_rate
        self.hold_s = hold_s
        self.concealed = 0  # packets filled with silence
        self.late = 0  # packets that arrived after their place was played
        self._held: dict[int, tuple[int, np.ndarray, float]] = {}  # seq -> (ts, pcm, arrival)
        self._next: int | None = None  # extended sequence number to play next
        self._last_seq: int | None = None
        self._last_ts: int | None = None
        self._end_ts: int | None = None  # where the audio played so far ends
        self._transits: deque[float] = deque(maxlen=ANCHOR_PACKETS)
        self._median = 0.0  # of _transits: the stream's anchor on our clock
        self._off = 0
        self._timer: asyncio.TimerHandle | None = None

    def push(self, sequence: int, timestamp: int, pcm8k: np.ndarray, arrival_s: float) -> None:
        seq = self._last_seq = _unwrap(sequence, self._last_seq, 16)
        ts = self._last_ts = _unwrap(timestamp, self._last_ts, 32)
        if self._next is not None and seq < self._next:
            self.late += 1  # its place was played (or filled with silence) already
            return
        if seq in self._held:
            return  # a duplicate
        self._anchor(ts, arrival_s)
        if self._next is None:
            self._next = seq
        self._held[seq] = (ts, pcm8k, arrival_s)
        self._drain()

    def reset(self) -> None:
        """A new source: play what is held, then start over."""
        self._drain(give_up=True)
        self.close()
        self.__init__(self.play, self.rate, self.hold_s, self.now)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    # --- internals ----------------------------------------------------------------------

    def _anchor(self, ts: int, arrival_s: float) -> None:
        transit = arrival_s - ts / self.rate
        if self._transits and abs(transit - self._median) > self.hold_s:
            self._off += 1
            if self._off >= REANCHOR_AFTER:
                self._transits.clear()
                self._off = 0
        else:
            self._off = 0
        self._transits.append(transit)
        self._median = statistics.median(self._transits)  # once a packet, not per stamp

    def _stamp(self, ts: int) -> float:
        return ts / self.rate + self._median

    def _drain(self, give_up: bool = False) -> None:
        while self._held:
            if self._next in self._held:
                ts, pcm, _ = self._held.pop(self._next)
                self._emit(ts, pcm)
                self._next += 1
                continue
            first = min(self._held)
            waited = self.now() - min(a for _, _, a in self._held.values())
            if not give_up and waited < self.hold_s and len(self._held) < MAX_HELD:
                self._wake_in(self.hold_s - waited)
                return
            ts = self._held[first][0]
            gap = ts - self._end_ts if self._end_ts is not None else 0
            if 0 < gap <= MAX_FILL_SAMPLES:
                for start in range(self._end_ts, ts, PACKET_SAMPLES):
                    self._emit(start, np.zeros(min(PACKET_SAMPLES, ts - start), np.int16))
            self.concealed += first - self._next
            self._next = first

    def _emit(self, ts: int, pcm: np.ndarray) -> None:
        self._end_ts = ts + pcm.size
        self.play(pcm, self._stamp(ts))

    def _wake_in(self, delay_s: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(delay_s, self._drain)
