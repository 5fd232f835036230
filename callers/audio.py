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


def voiced_bounds(pcm: np.ndarray, rate: int, threshold_dbfs: float = -40.0) -> tuple[int, int]:
    """First and last sample of the 10 ms windows louder than threshold: TTS silence trimmed."""
    win = rate // 100
    n = pcm.size // win
    if n == 0:
        return 0, 0
    blocks = pcm[: n * win].astype(np.float64).reshape(n, win)
    level = np.sqrt(np.mean(blocks**2, axis=1))
    loud = np.nonzero(level > 32768 * 10 ** (threshold_dbfs / 20))[0]
    if loud.size == 0:
        return 0, 0
    return int(loud[0] * win), int((loud[-1] + 1) * win)


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
