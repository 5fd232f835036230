"""The reference agent's own account of each turn's timing, on its own clock (--turn-log FILE).

Against it, callfleet's response latencies can be checked turn by turn: the agent knows when
the caller's sound last reached it and when its reply left, with no VAD in between. Both ends
are defined as on the caller's side (callers.audio.sound_bounds): the end of the last 5 ms
window above -45 dBFS of the caller's audio as received, and the first 5 ms window above
-45 dBFS of the reply as it leaves the agent's outgoing track.

One JSON object per line:
  {"kind": "call_start", "call_id", "transport", "traceparent"} as the call starts
      (reference_agent/received_trace.py: the caller's W3C traceparent, null if none or bad)
  {"kind": "turn", "call_id", "turn", "t0_monotonic", "last_caller_sound_ms",
   "endpointed_ms", "reply_start_ms", "gap_ms"}
  {"kind": "call", "call_id", "t0_monotonic", "turns", "receive_buffer_ms", ...} at call end
Times are ms on the call's clock, which started at t0_monotonic (time.monotonic(), seconds;
on one machine the same clock as the caller's).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from callers.audio import FRAME_MS, STT_RATE, SOUND_WINDOW_MS, loud_windows

_WINDOW = STT_RATE * SOUND_WINDOW_MS // 1000


class TurnLog:
    """JSON lines appended and flushed one by one; shared by every call of an agent process."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry)
        with self._lock:
            if not self._file.closed:
                self._file.write(line + "\n")
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


def read_turn_log(path: Path | str) -> list[dict[str, Any]]:
    """Every entry of a turn log, in order; a torn last line (a killed agent) is skipped."""
    entries = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries


class LastSound:
    """The end of the last 5 ms window above -45 dBFS in a stream of stamped 16 kHz frames."""

    def __init__(self) -> None:
        self.ms: float | None = None
        self._prev: tuple[float, np.ndarray] | None = None

    def push(self, t_ms: float, frame: np.ndarray) -> None:
        clip, t0 = frame, t_ms
        if self._prev is not None and abs(t_ms - self._prev[0] - FRAME_MS) <= 1.0:
            # windows that straddle the previous frame and this one
            clip, t0 = np.concatenate([self._prev[1][-_WINDOW:], frame]), t_ms - SOUND_WINDOW_MS
        self._prev = (t_ms, frame)
        loud = np.flatnonzero(loud_windows(clip, STT_RATE))
        if loud.size:
            end = t0 + (int(loud[-1]) + _WINDOW) * 1000 / STT_RATE
            self.ms = end if self.ms is None else max(self.ms, end)
