"""Audio basics: rates, 20 ms framing, resampling through PyAV, and WAV output."""

from __future__ import annotations

import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

STT_RATE = 16_000  # Whisper and webrtcvad both work at 16 kHz
WIRE_RATE = 48_000  # what we hand to aiortc (Opus runs at 48 kHz; PCMU is resampled by aiortc)
FRAME_MS = 20


def samples_per_frame(rate: int) -> int:
    return rate * FRAME_MS // 1000


def resample(pcm: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Resample a whole mono int16 clip with libswresample (PyAV)."""
    pcm = np.ascontiguousarray(pcm, dtype=np.int16)
    if src_rate == dst_rate or pcm.size == 0:
        return pcm.copy()
    stream = StreamResampler(dst_rate)
    return np.concatenate([stream.push(pcm, src_rate), stream.flush()])


class StreamResampler:
    """Stateful mono int16 resampler for a continuous stream of chunks or av.AudioFrames."""

    def __init__(self, dst_rate: int) -> None:
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=dst_rate)
        self._pts = 0

    def push(self, pcm: np.ndarray, rate: int) -> np.ndarray:
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        return self.push_frame(frame)

    def push_frame(self, frame: av.AudioFrame) -> np.ndarray:
        # Our own pts keep libswresample from "compensating" for gaps in aiortc's timestamps.
        frame.pts = self._pts
        frame.time_base = Fraction(1, frame.sample_rate)
        self._pts += frame.samples
        return _frames_to_array(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        return _frames_to_array(self._resampler.resample(None))


def _frames_to_array(frames: list[av.AudioFrame]) -> np.ndarray:
    if not frames:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.int16)


def rms_dbfs(pcm: np.ndarray) -> float:
    """Level of int16 audio in dB relative to full scale (-inf for silence)."""
    if pcm.size == 0:
        return float("-inf")
    rms = np.sqrt(np.mean(pcm.astype(np.float64) ** 2))
    return float(20 * np.log10(rms / 32768)) if rms > 0 else float("-inf")


# Where sound starts and ends, the same way on both sides of a call (the caller's own speech as
# sent, the agent's as received, and the reference agent's turn log): the first and last 5 ms
# window louder than -45 dBFS. Windows slide sample by sample, so a bound does not depend on
# where a 20 ms frame or 10 ms block happened to begin. At -40 dBFS on 10 ms blocks a soft
# ending ("...fifty dollars.") was cut 150-200 ms before the agent stopped hearing it.
SOUND_LEVEL_DBFS = -45.0
SOUND_WINDOW_MS = 5


def loud_windows(pcm: np.ndarray, rate: int, level_dbfs: float = SOUND_LEVEL_DBFS,
                 window_ms: float = SOUND_WINDOW_MS) -> np.ndarray:
    """For every window start i, whether pcm[i : i + window] is louder than level_dbfs (RMS)."""
    win = max(1, int(rate * window_ms / 1000))
    if pcm.size < win:
        return np.zeros(0, bool)
    energy = np.concatenate([[0.0], np.cumsum(pcm.astype(np.float64) ** 2)])
    window_energy = energy[win:] - energy[:-win]
    return window_energy > win * (32768 * 10 ** (level_dbfs / 20)) ** 2


def sound_bounds(pcm: np.ndarray, rate: int, level_dbfs: float = SOUND_LEVEL_DBFS,
                 window_ms: float = SOUND_WINDOW_MS) -> tuple[int, int]:
    """First sample of the first loud window and the end (exclusive) of the last; (0, 0) if none."""
    loud = np.flatnonzero(loud_windows(pcm, rate, level_dbfs, window_ms))
    if loud.size == 0:
        return 0, 0
    return int(loud[0]), int(loud[-1]) + max(1, int(rate * window_ms / 1000))


# The caller's speech ends crisply: Piper lets a line fade out (a final "s", a breath, a lone
# click) for up to ~120 ms at -38..-50 dBFS, right at the -45 dBFS bound, where Opus coding
# moves the last loud window by tens of ms either way (seen at the agent: -120..+6 ms against
# the end callfleet recorded). Cut at the end of the last window above -40 dBFS with a 5 ms
# fade, the end is where both sides hear it: +2..+6 ms after Opus
# (tests/test_crisp_end.py). What is cut is the faint tail, 30 dB under the speech.
CRISP_END_DBFS = -40.0
CRISP_FADE_MS = 5.0


def crisp_end_ms(band16: np.ndarray) -> float | None:
    """Where a crisp end cuts 16 kHz speech (ms from its start); None if nothing is that loud."""
    loud = np.flatnonzero(loud_windows(band16, STT_RATE, CRISP_END_DBFS))
    if loud.size == 0:
        return None
    return (int(loud[-1]) + STT_RATE * SOUND_WINDOW_MS // 1000) * 1000 / STT_RATE


def fade_out_at(pcm: np.ndarray, rate: int, at_ms: float,
                fade_ms: float = CRISP_FADE_MS) -> np.ndarray:
    """pcm faded linearly to zero over fade_ms from at_ms, silent after it (a copy)."""
    i, n = int(rate * at_ms / 1000), max(1, int(rate * fade_ms / 1000))
    out = pcm.copy()
    tail = out[i : i + n]
    tail[:] = (tail * np.linspace(1.0, 0.0, n)[: tail.size]).astype(np.int16)
    out[i + n :] = 0
    return out


def voiced_bounds(pcm: np.ndarray, rate: int,
                  threshold_dbfs: float = SOUND_LEVEL_DBFS) -> tuple[int, int]:
    """First and last sample of the sound (5 ms windows above threshold): TTS silence trimmed."""
    return sound_bounds(pcm, rate, threshold_dbfs)


def write_stereo_wav(path: Path, left: np.ndarray, right: np.ndarray, rate: int) -> None:
    """Write two mono int16 tracks as one stereo WAV, padding the shorter with silence."""
    n = max(left.size, right.size)
    stereo = np.zeros((n, 2), dtype=np.int16)
    stereo[: left.size, 0] = left
    stereo[: right.size, 1] = right
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(stereo.tobytes())
