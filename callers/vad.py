"""Speech segments from 20 ms frames with webrtcvad, with a hangover so short pauses don't split."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import webrtcvad

from callers.audio import FRAME_MS, STT_RATE, rms_dbfs, samples_per_frame

FRAME_SAMPLES = samples_per_frame(STT_RATE)
# webrtcvad keeps calling frames "speech" for ~120-270 ms after the voice has faded (its own
# internal hangover), which made every speech end that much late. The end of a segment is
# therefore the last VAD-voiced frame that is also loud: above the level voiced_bounds() uses
# for the caller's own speech (-40 dBFS), or within END_RANGE_DB of the segment's loudest
# frame for a quiet agent. Only the end *time* is gated; splitting still follows the VAD.
END_LEVEL_DBFS = -40.0
END_RANGE_DB = 25.0
# webrtcvad also calls the first ~100 ms of any noise "speech" while its noise model adapts
# (at stream start, or when line noise follows digital silence): a segment only starts on
# frames that are both VAD-voiced and above this floor.
START_LEVEL_DBFS = -50.0


@dataclass
class SpeechSegment:
    """One stretch of speech: its times on the session clock and its 16 kHz audio (with pre-roll)."""

    start_ms: float
    end_ms: float
    audio: np.ndarray


@dataclass
class VadEvent:
    kind: str  # "start" | "end"
    t_ms: float
    segment: SpeechSegment | None = None


class SpeechSegmenter:
    """Turns a stream of 16 kHz int16 frames into speech start/end events."""

    def __init__(
        self,
        *,
        aggressiveness: int = 2,
        start_frames: int = 3,
        hangover_ms: int = 300,
        preroll_ms: int = 200,
        max_segment_s: float = 30.0,
    ) -> None:
        self._vad = webrtcvad.Vad(aggressiveness)
        self._start_frames = start_frames
        self._hangover_frames = max(1, hangover_ms // FRAME_MS)
        self._max_frames = int(max_segment_s * 1000 / FRAME_MS)
        self._recent: deque[tuple[float, np.ndarray, bool]] = deque(
            maxlen=max(start_frames, preroll_ms // FRAME_MS)
        )
        self._frames: list[np.ndarray] = []
        self._start_ms = 0.0
        self._last_voiced_end_ms = 0.0
        self._peak_dbfs = float("-inf")
        self._silent_run = 0
        self.in_speech = False

    def push(self, frame: np.ndarray, t_ms: float) -> list[VadEvent]:
        """Feed one 20 ms frame that starts at t_ms; returns the events it completes."""
        voiced = self._vad.is_speech(frame.tobytes(), STT_RATE)
        if not self.in_speech:
            loud = voiced and rms_dbfs(frame) >= START_LEVEL_DBFS
            self._recent.append((t_ms, frame, loud))
            run = list(self._recent)[-self._start_frames :]
            if len(run) == self._start_frames and all(v for _, _, v in run):
                return [self._begin(run[0][0])]
            return []
        self._frames.append(frame)
        if voiced:
            self._silent_run = 0
            level = rms_dbfs(frame)
            self._peak_dbfs = max(self._peak_dbfs, level)
            if level >= min(END_LEVEL_DBFS, self._peak_dbfs - END_RANGE_DB):
                self._last_voiced_end_ms = t_ms + FRAME_MS
        else:
            self._silent_run += 1
        if self._silent_run >= self._hangover_frames or len(self._frames) >= self._max_frames:
            return [self._finish()]
        return []

    @property
    def voiced_ms(self) -> float:
        """The open segment's length so far: its start to its last loud voiced frame (what its
        SpeechSegment would span if it ended now), so trailing hangover silence never counts.
        0 outside speech."""
        return self._last_voiced_end_ms - self._start_ms if self.in_speech else 0.0

    def flush(self) -> list[VadEvent]:
        """End an open segment (the stream stopped)."""
        return [self._finish()] if self.in_speech else []

    def _begin(self, start_ms: float) -> VadEvent:
        self.in_speech = True
        self._start_ms = start_ms
        self._frames = [f for _, f, _ in self._recent]  # pre-roll keeps the first phoneme
        self._last_voiced_end_ms = self._recent[-1][0] + FRAME_MS
        self._peak_dbfs = max(rms_dbfs(f) for _, f, _ in self._recent)
        self._silent_run = 0
        self._recent.clear()
        return VadEvent("start", start_ms)

    def _finish(self) -> VadEvent:
        self.in_speech = False
        audio = np.concatenate(self._frames) if self._frames else np.zeros(0, np.int16)
        self._frames = []
        segment = SpeechSegment(self._start_ms, self._last_voiced_end_ms, audio)
        return VadEvent("end", self._last_voiced_end_ms, segment)
