"""Speech segments from 20 ms frames with webrtcvad, with a hangover so short pauses don't split."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import webrtcvad

from callers.audio import (
    FRAME_MS,
    SOUND_LEVEL_DBFS,
    SOUND_WINDOW_MS,
    STT_RATE,
    loud_windows,
    rms_dbfs,
    samples_per_frame,
)

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
# The VAD decides on whole 20 ms frames; a segment's start and end are then refined to the
# sample, the way the caller's own speech is bounded (callers.audio.sound_bounds): the first
# and last 5 ms window louder than -45 dBFS. The start moves back into the frames before the
# first VAD frame while the sound there is continuous (a soft onset, "f" of "fifty"), the end
# forward over the loud tail the VAD no longer calls speech ("...order." was cut 58 ms short);
# both by at most EDGE_MS, so a noise floor above the level moves a bound by no more than that.
EDGE_MS = 100
_EDGE_FRAMES = EDGE_MS // FRAME_MS
_WINDOW = STT_RATE * SOUND_WINDOW_MS // 1000
BRIDGE_MS = 30  # a dip below the level shorter than this does not end the sound
_BRIDGE = STT_RATE * BRIDGE_MS // 1000


@dataclass
class SpeechSegment:
    """One stretch of speech: its times on the session clock and its 16 kHz audio (with pre-roll)."""

    start_ms: float
    end_ms: float
    audio: np.ndarray
    # The speech in it is exactly the speech of the segment's last "pause" event: nothing was
    # voiced after that pause, so what was transcribed then is this segment's transcript.
    as_paused: bool = False


@dataclass
class VadEvent:
    kind: str  # "start" | "end" | "pause" (the speech so far, when early_ms is set)
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
        early_ms: int | None = None,
    ) -> None:
        self._vad = webrtcvad.Vad(aggressiveness)
        self._start_frames = start_frames
        self._hangover_frames = max(1, hangover_ms // FRAME_MS)
        # early_ms of silence inside a segment: a "pause" event with the speech so far, so a
        # listener can start transcribing before the hangover decides the segment has ended
        # (whisper's text for the same speech does not depend on the trailing silence). That
        # silence counts from the end of the sound (the last voiced frame above
        # START_LEVEL_DBFS), not from webrtcvad's last voiced frame ~120 ms later: its tail.
        # (The hangover keeps counting from webrtcvad's: shorter, the agent's sentence breaks
        # would end its turn; benchmarks/early_stt.py.)
        self._early_frames = (None if early_ms is None
                              else min(max(1, early_ms // FRAME_MS), self._hangover_frames - 1))
        self._max_frames = int(max_segment_s * 1000 / FRAME_MS)
        self._recent: deque[tuple[float, np.ndarray, bool]] = deque(
            maxlen=max(start_frames, preroll_ms // FRAME_MS)
        )
        self._frames: list[np.ndarray] = []
        self._times: list[float] = []  # t_ms of each frame in _frames
        self._last_loud = 0  # index in _frames of the last loud voiced frame
        self._voiced_cache = (-1, 0.0)  # (len(_frames), voiced_ms) last computed
        self._start_ms = 0.0
        self._last_voiced_end_ms = 0.0
        self._peak_dbfs = float("-inf")
        self._silent_run = 0
        self._quiet_run = 0  # frames since the last voiced one above START_LEVEL_DBFS
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
        self._times.append(t_ms)
        self._silent_run += 1
        self._quiet_run += 1
        if voiced:
            self._silent_run = 0
            level = rms_dbfs(frame)
            self._peak_dbfs = max(self._peak_dbfs, level)
            if level >= START_LEVEL_DBFS:
                self._quiet_run = 0
            if level >= min(END_LEVEL_DBFS, self._peak_dbfs - END_RANGE_DB):
                self._last_voiced_end_ms = t_ms + FRAME_MS
                self._last_loud = len(self._frames) - 1
        if self._silent_run >= self._hangover_frames or len(self._frames) >= self._max_frames:
            return [self._finish()]
        if self._early_frames and self._quiet_run == self._early_frames:
            return [self._pause()]
        return []

    @property
    def voiced_ms(self) -> float:
        """The open segment's length so far: its start to the end of the sound of its last loud
        voiced frame (what its SpeechSegment would span if it ended now), so trailing hangover
        silence never counts. 0 outside speech."""
        if not self.in_speech:
            return 0.0
        if self._voiced_cache[0] != len(self._frames):
            end = self._refined_end(self._last_voiced_end_ms)
            self._voiced_cache = (len(self._frames), end - self._start_ms)
        return self._voiced_cache[1]

    def flush(self) -> list[VadEvent]:
        """End an open segment (the stream stopped)."""
        return [self._finish()] if self.in_speech else []

    def _begin(self, frame_start_ms: float) -> VadEvent:
        self.in_speech = True
        self._frames = [f for _, f, _ in self._recent]  # pre-roll keeps the first phoneme
        self._times = [t for t, _, _ in self._recent]
        self._last_loud = len(self._frames) - 1
        self._voiced_cache = (-1, 0.0)
        first = len(self._frames) - self._start_frames  # the first frame of the VAD run
        self._start_ms = self._refined_start(first, frame_start_ms)
        self._last_voiced_end_ms = self._recent[-1][0] + FRAME_MS
        self._peak_dbfs = max(rms_dbfs(f) for _, f, _ in self._recent)
        self._silent_run = self._quiet_run = 0
        self._recent.clear()
        return VadEvent("start", self._start_ms)

    def _pause(self) -> VadEvent:
        end_ms = self._refined_end(self._last_voiced_end_ms)
        return VadEvent("pause", end_ms,
                        SpeechSegment(self._start_ms, end_ms, np.concatenate(self._frames)))

    def _finish(self) -> VadEvent:
        self.in_speech = False
        end_ms = self._refined_end(self._last_voiced_end_ms)
        audio = np.concatenate(self._frames) if self._frames else np.zeros(0, np.int16)
        self._frames, self._times = [], []
        as_paused = self._early_frames is not None and self._quiet_run >= self._early_frames
        segment = SpeechSegment(self._start_ms, end_ms, audio, as_paused=as_paused)
        return VadEvent("end", end_ms, segment)

    def _contiguous(self, lo: int, hi: int, keep: int) -> tuple[float, np.ndarray]:
        """Frames lo..hi-1 around frame keep as one clip and its start time, cut where their
        times are not 20 ms apart (the receive clock re-anchored between them)."""
        lo, hi = max(0, lo), min(hi, len(self._frames))
        for i in range(keep, lo, -1):
            if abs(self._times[i] - self._times[i - 1] - FRAME_MS) > 1.0:
                lo = i
                break
        for i in range(keep + 1, hi):
            if abs(self._times[i] - self._times[i - 1] - FRAME_MS) > 1.0:
                hi = i
                break
        return self._times[lo], np.concatenate(self._frames[lo:hi])

    def _refined_start(self, first: int, frame_ms: float) -> float:
        """The first sample of the sound the VAD run begins in: the start of the earliest loud
        5 ms window that is continuous with the first loud window of the run's first frame."""
        lo = max(0, first - _EDGE_FRAMES)
        t0, clip = self._contiguous(lo, first + self._start_frames, keep=first)
        loud = loud_windows(clip, STT_RATE)
        at = int(round((frame_ms - t0) * STT_RATE / 1000))  # the first frame, in clip samples
        hits = np.flatnonzero(loud[at:])
        if hits.size == 0:
            return frame_ms
        loud_at = np.flatnonzero(loud[: at + int(hits[0]) + 1])
        # back over the sound before it, across dips shorter than _BRIDGE samples
        breaks = np.flatnonzero(np.diff(loud_at) > _BRIDGE)
        j = int(loud_at[breaks[-1] + 1]) if breaks.size else int(loud_at[0])
        return t0 + j * 1000 / STT_RATE

    def _refined_end(self, frame_end_ms: float) -> float:
        """The end of the sound the last loud voiced frame is part of: the end of the last loud
        5 ms window continuous with the last loud window of that frame."""
        last = self._last_loud
        if not self._frames:
            return frame_end_ms
        t0, clip = self._contiguous(last - 1, last + 1 + _EDGE_FRAMES, keep=last)
        loud = loud_windows(clip, STT_RATE)
        at = int(round((frame_end_ms - t0) * STT_RATE / 1000))  # the frame's end, in samples
        hits = np.flatnonzero(loud[: max(0, at - _WINDOW + 1)])  # windows inside the frame
        hits = hits[hits >= at - FRAME_SAMPLES - _WINDOW + 1]
        if hits.size == 0:
            return frame_end_ms
        loud_at = np.flatnonzero(loud[int(hits[-1]):]) + int(hits[-1])
        # on over the loud tail, across dips shorter than _BRIDGE samples
        breaks = np.flatnonzero(np.diff(loud_at) > _BRIDGE)
        j = int(loud_at[breaks[0]]) if breaks.size else int(loud_at[-1])
        return t0 + (j + _WINDOW) * 1000 / STT_RATE
