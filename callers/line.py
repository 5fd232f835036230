"""Phone-line effects on the caller's outgoing audio: telephone band limit and bursty loss.

Band limit: a linear-phase FIR band-pass (windowed sinc, Hamming window) passing the
telephone band 300-3400 Hz (flat within ~0.1 dB; -6 dB at 200 and 3500 Hz; below 100 Hz
and above 3600 Hz attenuated by > 50 dB), in numpy only (no scipy). `band_limit` filters
a whole clip with an FFT convolution and compensates the filter delay (output aligned with
input, same length); `BandLimiter` filters a stream of frames with the same taps, carrying
the filter state across frames (its output is delayed by `delay_samples`). Streaming costs
~0.02 ms per 20 ms frame at 8-16 kHz and ~0.2 ms at 48 kHz (793 taps): filter before
resampling to the wire rate.

Loss: `GilbertElliott` is the two-state bursty loss model, decided once per 20 ms frame.
"""

from __future__ import annotations

import random

import numpy as np

from callers.audio import STT_RATE, StreamResampler

TELEPHONE_LOW_HZ = 300.0
TELEPHONE_HIGH_HZ = 3400.0
TRANSITION_HZ = 200.0  # width of each filter edge


def telephone_taps(rate: int, low_hz: float = TELEPHONE_LOW_HZ, high_hz: float = TELEPHONE_HIGH_HZ,
                   transition_hz: float = TRANSITION_HZ) -> np.ndarray:
    """Band-pass FIR taps: lowpass minus lowpass, Hamming-windowed (~53 dB stop band).

    The pass band is flat from low_hz to high_hz: the -6 dB cut-offs sit half a transition
    outside it (200 and 3500 Hz), and the stop band starts a whole transition outside it.
    """
    low_hz = max(low_hz - transition_hz / 2, 0.0)
    high_hz = min(high_hz + transition_hz / 2, 0.5 * rate - transition_hz / 2)
    numtaps = int(np.ceil(3.3 * rate / transition_hz)) | 1  # odd: integer delay, linear phase
    m = np.arange(numtaps) - (numtaps - 1) / 2

    def lowpass(fc: float) -> np.ndarray:
        return 2 * fc / rate * np.sinc(2 * fc / rate * m)

    taps = (lowpass(high_hz) - lowpass(low_hz)) * np.hamming(numtaps)
    # Unity gain in the middle of the pass band.
    centre = np.sqrt(low_hz * high_hz)
    response = abs(np.sum(taps * np.exp(-2j * np.pi * centre / rate * np.arange(numtaps))))
    return taps / response


_TAPS: dict[int, np.ndarray] = {}


def _taps(rate: int) -> np.ndarray:
    taps = _TAPS.get(rate)
    if taps is None:
        taps = _TAPS[rate] = telephone_taps(rate)
    return taps


def _to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def band_limit(pcm: np.ndarray, rate: int) -> np.ndarray:
    """A whole mono int16 clip through the 300-3400 Hz telephone band, same length, no delay."""
    pcm = np.asarray(pcm)
    if pcm.size == 0:
        return pcm.astype(np.int16)
    taps = _taps(rate)
    n = pcm.size + taps.size - 1
    size = 1 << (n - 1).bit_length()
    full = np.fft.irfft(np.fft.rfft(pcm.astype(np.float64), size) * np.fft.rfft(taps, size), size)
    delay = (taps.size - 1) // 2
    return _to_int16(full[delay: delay + pcm.size])


class BandLimiter:
    """Streaming telephone band limit: frames in, frames out, delayed by delay_samples."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.taps = _taps(rate)
        self.delay_samples = (self.taps.size - 1) // 2
        self._history = np.zeros(self.taps.size - 1)  # the last inputs the filter still needs

    def process(self, frame: np.ndarray) -> np.ndarray:
        """Filter the next int16 frame (any length); returns the same number of samples."""
        x = np.concatenate([self._history, np.asarray(frame, dtype=np.float64)])
        self._history = x[x.size - self._history.size:]
        return _to_int16(np.convolve(x, self.taps, mode="valid"))


class GilbertElliott:
    """Two-state bursty packet loss (Gilbert-Elliott), one decision per 20 ms frame.

    States good and bad; each frame the state may change (good->bad with p_good_to_bad,
    bad->good with p_bad_to_good), then the frame is lost with loss_in_bad or loss_in_good.
    With loss_in_bad=1 a loss burst lasts 1/p_bad_to_good frames on average.

    aiortc has no hook to drop an RTP packet on send, so the caller applies a drop by sending
    that frame as silence: the agent hears the gap a lost packet leaves (without its PLC/FEC
    concealment, and the RTCP loss counters do not see it). Seeded: same seed, same losses.
    """

    def __init__(self, p_good_to_bad: float, p_bad_to_good: float, loss_in_bad: float = 1.0,
                 loss_in_good: float = 0.0, seed: int = 0) -> None:
        for name, p in (("p_good_to_bad", p_good_to_bad), ("p_bad_to_good", p_bad_to_good),
                        ("loss_in_bad", loss_in_bad), ("loss_in_good", loss_in_good)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {p}")
        self.p_good_to_bad = p_good_to_bad
        self.p_bad_to_good = p_bad_to_good
        self.loss_in_bad = loss_in_bad
        self.loss_in_good = loss_in_good
        self.bad = False
        self._rng = random.Random(seed)

    @classmethod
    def from_loss_pct(cls, pct: float, mean_burst_frames: float = 3.0,
                      seed: int = 0) -> GilbertElliott:
        """A model losing pct % of frames in bursts of mean_burst_frames on average."""
        if not 0.0 <= pct < 100.0:
            raise ValueError(f"loss must be in [0, 100) %, got {pct}")
        if mean_burst_frames < 1.0:
            raise ValueError(f"mean_burst_frames must be >= 1, got {mean_burst_frames}")
        p_bg = 1.0 / mean_burst_frames
        pi_bad = pct / 100.0
        p_gb = pi_bad * p_bg / (1.0 - pi_bad)  # stationary P(bad) = p_gb / (p_gb + p_bg)
        return cls(min(p_gb, 1.0), p_bg, 1.0, 0.0, seed)

    @property
    def expected_loss_pct(self) -> float:
        """Long-run percentage of frames lost."""
        total = self.p_good_to_bad + self.p_bad_to_good
        pi_bad = self.p_good_to_bad / total if total > 0 else float(self.bad)
        return 100.0 * (pi_bad * self.loss_in_bad + (1.0 - pi_bad) * self.loss_in_good)

    def drop(self) -> bool:
        """Advance one frame; True if this frame is lost (send silence instead)."""
        r = self._rng.random()
        if self.bad:
            if r < self.p_bad_to_good:
                self.bad = False
        elif r < self.p_good_to_bad:
            self.bad = True
        loss = self.loss_in_bad if self.bad else self.loss_in_good
        if loss >= 1.0:
            return True
        if loss <= 0.0:
            return False
        return self._rng.random() < loss

    def __repr__(self) -> str:
        return (f"GilbertElliott(p_good_to_bad={self.p_good_to_bad:.4g}, "
                f"p_bad_to_good={self.p_bad_to_good:.4g}, loss_in_bad={self.loss_in_bad:g}, "
                f"loss_in_good={self.loss_in_good:g})")


class CallerLine:
    """Everything between the caller's mouth and the wire, on 48 kHz frames.

    Room noise is mixed first (it reaches the microphone with the voice), then the phone's
    band limit, then network loss (a lost frame leaves a silent gap). The 16 kHz copy for the
    recording is what was sent, resampled.
    """

    def __init__(self, rate: int, *, noise=None, band_limit: bool = False,
                 loss: GilbertElliott | None = None) -> None:
        self.noise = noise  # a callers.noise.NoiseBed at `rate`, or None
        self.band = BandLimiter(rate) if band_limit else None
        self.loss = loss
        self.rate = rate
        self.delay_ms = self.band.delay_samples / rate * 1000 if self.band else 0.0
        self.frames_lost = 0
        self._down = StreamResampler(STT_RATE)
        self._pending16 = np.zeros(0, np.int16)

    def process(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One outgoing frame through the line: (frame for the wire, its 16 kHz copy)."""
        if self.noise is not None:
            frame = self.noise.mix(frame)
        if self.band is not None:
            frame = self.band.process(frame)
        if self.loss is not None and self.loss.drop():
            frame = np.zeros_like(frame)
            self.frames_lost += 1
        return frame, self._to16(frame)

    def _to16(self, frame: np.ndarray) -> np.ndarray:
        """Exactly one frame's worth of 16 kHz audio (the resampler's first output is short)."""
        want = frame.size * STT_RATE // self.rate
        pending = np.concatenate([self._pending16, self._down.push(frame, self.rate)])
        if pending.size < want:
            pending = np.concatenate([np.zeros(want - pending.size, np.int16), pending])
        self._pending16 = pending[want:]
        return pending[:want]
