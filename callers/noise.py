"""Background noise generated from code (no audio files): colours, babble, street and cafe beds.

Every generator returns mono int16 at the requested rate, is seeded (a numpy Generator from
the seed: same seed, same noise) and renders a *circular* buffer: its end joins its start
without a click, so a NoiseBed can loop it for a call of any length at the cost of a slice
per 20 ms frame. Rendered beds are cached per (kind, seed, rate, seconds) inside this module,
so a host running a thousand callers renders each bed once.

SNR, as used everywhere in callfleet:

    SNR_dB = 10 * log10(P_speech / P_noise)

P_speech is the *active* speech power: the mean power of the 10 ms windows of the speech
clip whose level is within ACTIVE_RANGE_DB (30 dB) of the clip's loudest window, so pauses
between words and the silence Piper leaves around a sentence do not lower it (a simplified
ITU-T P.56 active level). P_noise is the mean power of the noise over the same windows
("the noise heard while the caller speaks"). For a whole-call bed whose gain is fixed once
per call, `NoiseBed.set_snr` uses the bed's long-term power instead. Over a 5 s utterance
that matches the local power within 0.6 dB for white, pink, brown, babble and cafe (measured;
babble is levelled by a slow AGC); street has passing cars and horns that raise the noise
under an utterance by up to ~2 dB, as a street does. `mix_at_snr` scales the noise segment
it is given, so it is exact (up to int16 rounding and clipping).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from callers.audio import resample, samples_per_frame

KINDS = ("white", "pink", "brown", "babble", "street", "cafe")
NEEDS_SPEECH = frozenset({"babble", "street", "cafe"})  # these need a synthesizer
BED_SECONDS = 12.0  # length of a rendered (looped) bed
BED_LEVEL_DBFS = -26.0  # RMS level beds are rendered at; the mix gain sets the real level
ACTIVE_RANGE_DB = 30.0  # speech windows within this range of the loudest count as active
WINDOW_S = 0.010

# Babble sentences: neutral, varied in length, none containing persona-like facts.
BABBLE_SENTENCES = (
    "I told her we would meet at the station around noon.",
    "The weather has been strange all week, hasn't it?",
    "Could you pass me the menu when you are done with it?",
    "They finally fixed the road outside the old library.",
    "My brother is moving to the coast next spring.",
    "We should really try that new bakery on the corner.",
    "I think the meeting got pushed to Thursday afternoon.",
    "Honestly the second film was better than the first one.",
    "She said the train was late again this morning.",
    "Do you remember where we parked the car last time?",
    "The kids want to go camping when school is over.",
    "I have been reading a long book about old sailing ships.",
)

# synthesize(text) -> (pcm int16, sample rate): the narrow interface babble needs.
SynthesizeFn = Callable[[str], tuple[np.ndarray, int]]


# --- measuring ---------------------------------------------------------------------------


def _window_powers(pcm: np.ndarray, rate: int) -> np.ndarray:
    win = max(1, int(rate * WINDOW_S))
    n = pcm.size // win
    blocks = np.asarray(pcm[: n * win], dtype=np.float64).reshape(n, win)
    return np.mean(blocks**2, axis=1)


def active_mask(speech: np.ndarray, rate: int, range_db: float = ACTIVE_RANGE_DB) -> np.ndarray:
    """Per-sample bool mask of the active 10 ms windows of speech (see the module docstring)."""
    win = max(1, int(rate * WINDOW_S))
    powers = _window_powers(speech, rate)
    mask = np.zeros(speech.size, dtype=bool)
    if powers.size == 0 or powers.max() <= 0:
        return mask
    loud = powers > powers.max() * 10 ** (-range_db / 10)
    mask[: powers.size * win] = np.repeat(loud, win)
    return mask


def active_power(speech: np.ndarray, rate: int) -> float:
    """Mean power (int16 units squared) of the active part of speech; 0.0 for silence."""
    mask = active_mask(speech, rate)
    if not mask.any():
        return 0.0
    return float(np.mean(np.asarray(speech, dtype=np.float64)[mask] ** 2))


def active_rms(speech: np.ndarray, rate: int) -> float:
    """RMS of the active part of speech: the speech level SNR is defined against."""
    return float(np.sqrt(active_power(speech, rate)))


def noise_gain_for_snr(speech_rms: float, noise_rms: float, snr_db: float) -> float:
    """The factor to multiply noise by so that 20*log10(speech_rms / (gain*noise_rms)) = snr_db."""
    if noise_rms <= 0 or speech_rms <= 0:
        return 0.0
    return float(speech_rms / (noise_rms * 10 ** (snr_db / 20)))


def measured_snr_db(speech: np.ndarray, noise: np.ndarray, rate: int) -> float:
    """SNR of speech against the noise added to it, over speech's active windows."""
    mask = active_mask(speech, rate)
    p_s = float(np.mean(np.asarray(speech, dtype=np.float64)[mask] ** 2))
    p_n = float(np.mean(np.asarray(noise[: speech.size], dtype=np.float64)[mask] ** 2))
    return 10 * np.log10(p_s / p_n)


def _to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float, rate: int) -> np.ndarray:
    """speech plus noise scaled to snr_db (active speech vs noise over the same windows).

    noise must be at least as long as speech; its first speech.size samples are used.
    The result is int16, clipped at full scale.
    """
    if noise.size < speech.size:
        raise ValueError(f"noise has {noise.size} samples, speech needs {speech.size}")
    mask = active_mask(speech, rate)
    s = np.asarray(speech, dtype=np.float64)
    n = np.asarray(noise[: speech.size], dtype=np.float64)
    if not mask.any():
        return np.asarray(speech, dtype=np.int16).copy()
    gain = noise_gain_for_snr(float(np.sqrt(np.mean(s[mask] ** 2))),
                              float(np.sqrt(np.mean(n[mask] ** 2))), snr_db)
    return _to_int16(s + gain * n)


# --- colours -----------------------------------------------------------------------------


def _normalise(x: np.ndarray, level_dbfs: float = BED_LEVEL_DBFS) -> np.ndarray:
    """Float signal scaled to level_dbfs RMS (int16 units), peaks kept below full scale."""
    rms = float(np.sqrt(np.mean(x**2)))
    if rms == 0:
        return x
    x = x * (32768 * 10 ** (level_dbfs / 20) / rms)
    peak = float(np.max(np.abs(x)))
    return x * (32000 / peak) if peak > 32000 else x


def _shaped(n: int, rate: int, rng: np.random.Generator, exponent: float,
            highpass_hz: float = 20.0) -> np.ndarray:
    """White Gaussian noise with power spectrum ~ 1/f**exponent, circular (loops seamlessly)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / rate)
    shape = np.zeros_like(f)
    keep = f >= highpass_hz  # below it: removed (no DC drift, no inaudible rumble)
    shape[keep] = f[keep] ** (-exponent / 2)
    return np.fft.irfft(spectrum * shape, n)


def _white(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(n)


def _pink(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    return _shaped(n, rate, rng, 1.0)


def _brown(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    # Integrated white noise has a 1/f^2 spectrum; shaping in the frequency domain gives the
    # same colour without the random walk's drift, high-passed at 20 Hz.
    return _shaped(n, rate, rng, 2.0)


def white(seconds: float, rate: int, seed: int) -> np.ndarray:
    """White Gaussian noise: flat spectrum."""
    return _render_colour(_white, seconds, rate, seed)


def pink(seconds: float, rate: int, seed: int) -> np.ndarray:
    """Pink noise: power falls 3 dB per octave (1/f), by FFT shaping."""
    return _render_colour(_pink, seconds, rate, seed)


def brown(seconds: float, rate: int, seed: int) -> np.ndarray:
    """Brown (red) noise: power falls 6 dB per octave (1/f^2), high-passed at 20 Hz."""
    return _render_colour(_brown, seconds, rate, seed)


def _render_colour(fn: Callable, seconds: float, rate: int, seed: int) -> np.ndarray:
    n = int(round(seconds * rate))
    return _to_int16(_normalise(fn(n, rate, np.random.default_rng(seed))))


# --- babble and events -------------------------------------------------------------------


POOL_SENTENCES = 6  # babble reuses this many synthesized sentences (synthesis is the cost)
_POOLS: dict[int, tuple[Any, list[tuple[np.ndarray, int]]]] = {}


def _speech_pool(synthesize: Any) -> list[tuple[np.ndarray, int]]:
    """A few sentences spoken once per synthesizer: [(pcm, rate)], cached for every bed.

    `synthesize` is a callfleet Synthesizer (its synthesize_sync is used) or a plain callable
    `synthesize(text) -> (pcm, rate)`.
    """
    held = _POOLS.get(id(synthesize))
    if held is not None and held[0] is synthesize:
        return held[1]
    sync = getattr(synthesize, "synthesize_sync", None)
    pool = []
    for text in BABBLE_SENTENCES[:POOL_SENTENCES]:
        if sync is not None and hasattr(synthesize, "sample_rate"):
            pcm, src_rate = sync(text), int(synthesize.sample_rate)
        elif inspect.iscoroutinefunction(synthesize):
            raise TypeError("babble needs a synchronous synthesize(text) -> (pcm, rate)")
        else:
            pcm, src_rate = synthesize(text)
        pcm = np.asarray(pcm, dtype=np.int16)
        if pcm.size:
            pool.append((pcm, int(src_rate)))
    if not pool:
        raise ValueError("the synthesizer produced no audio for babble")
    _POOLS[id(synthesize)] = (synthesize, pool)  # holding it keeps its id from being reused
    return pool


def _babble(n: int, rate: int, rng: np.random.Generator, synthesize: Any,
            voices: int | None = None) -> np.ndarray:
    """4-6 voices talking continuously (short gaps), summed into a circular buffer of n samples.

    Each voice takes the pooled sentences in its own order, from a random offset, at its own
    gain and speaking rate; the speaking rate is applied by resampling, which also moves the
    pitch, so one Piper voice becomes several different-sounding ones.
    """
    pool = _speech_pool(synthesize)
    voices = voices or int(rng.integers(4, 7))
    out = np.zeros(n)
    for _ in range(voices):
        speed = float(rng.uniform(0.8, 1.25))
        gain = 10 ** (float(rng.uniform(-4.0, 0.0)) / 20)
        order = rng.permutation(len(pool))
        pos = int(rng.integers(0, n))  # random offset; the track wraps around the loop
        filled, k = 0, 0
        while filled < n:
            pcm, src_rate = pool[order[k % len(order)]]
            k += 1
            # Played `speed` times faster: as if recorded at src_rate*speed, resampled to rate.
            clip = resample(pcm, int(round(src_rate * speed)), rate).astype(np.float64)
            # Each utterance at the same active level, so the bed's loudness is steady.
            clip *= gain * 3000.0 / max(active_rms(clip, rate), 1.0)
            if clip.size > n - filled:  # the loop is full: cut the last one, without a click
                clip = clip[: n - filled] * _fade_out(n - filled, int(0.01 * rate))
            _add_wrapped(out, pos, clip)
            gap = int(rng.uniform(0.08, 0.35) * rate)
            pos = (pos + clip.size + gap) % n
            filled += clip.size + gap
    return _level_out(out, rate)


def _level_out(x: np.ndarray, rate: int, window_s: float = 1.0) -> np.ndarray:
    """Slow circular AGC: divides x by its 1 s running RMS, so a crowd of a few voices keeps
    a steady level (a gap in one voice no longer dips the bed). Syllable-rate modulation,
    which makes babble sound like speech, is far faster than the window and is kept."""
    n = x.size
    win = min(int(window_s * rate), n)
    power = x**2
    c = np.concatenate([[0.0], np.cumsum(np.concatenate([power, power[:win]]))])
    start = (np.arange(n) - win // 2) % n  # a centred window, wrapping around the loop
    local = (c[start + win] - c[start]) / win
    return x / np.sqrt(np.maximum(local, 1e-9 * (np.mean(power) or 1.0)))


def _add_wrapped(out: np.ndarray, pos: int, clip: np.ndarray) -> None:
    n = out.size
    first = min(clip.size, n - pos)
    out[pos: pos + first] += clip[:first]
    if first < clip.size:
        out[: clip.size - first] += clip[first:]


def _fade_out(length: int, fade: int) -> np.ndarray:
    env = np.ones(length)
    fade = min(fade, length)
    if fade > 0:
        env[-fade:] = np.linspace(1.0, 0.0, fade)
    return env


def _envelope(length: int, attack: int) -> np.ndarray:
    env = np.ones(length)
    a = min(attack, length // 2)
    if a > 0:
        ramp = np.linspace(0.0, 1.0, a)
        env[:a] = ramp
        env[-a:] = ramp[::-1]
    return env


def _car_pass(rate: int, rng: np.random.Generator) -> np.ndarray:
    """A passing car: low-passed noise swelling in and out over 2-4 s."""
    length = int(rng.uniform(2.0, 4.0) * rate)
    body = _shaped(length, rate, rng, 1.6, highpass_hz=40.0)
    t = np.linspace(-1.0, 1.0, length)
    swell = np.exp(-(t / 0.35) ** 2)  # loudest as it passes
    return body / (np.sqrt(np.mean(body**2)) or 1.0) * swell


def _horn(rate: int, rng: np.random.Generator) -> np.ndarray:
    """A car horn: two detuned tones with a few harmonics, 0.25-0.7 s."""
    length = int(rng.uniform(0.25, 0.7) * rate)
    t = np.arange(length) / rate
    base = float(rng.uniform(380.0, 460.0))
    tone = np.zeros(length)
    for f0 in (base, base * 1.26):  # roughly a major third, like twin horns
        for h, amp in ((1, 1.0), (2, 0.5), (3, 0.3), (4, 0.15)):
            if f0 * h < 0.45 * rate:
                tone += amp * np.sin(2 * np.pi * f0 * h * t)
    return tone / np.sqrt(np.mean(tone**2)) * _envelope(length, int(0.01 * rate))


def _clink(rate: int, rng: np.random.Generator) -> np.ndarray:
    """A cup or glass clink: a few inharmonic high partials decaying in 50-200 ms."""
    length = int(0.3 * rate)
    t = np.arange(length) / rate
    f0 = float(rng.uniform(1800.0, 3200.0))
    decay = float(rng.uniform(0.05, 0.2))
    tone = np.zeros(length)
    for ratio, amp in ((1.0, 1.0), (2.32, 0.6), (4.25, 0.35), (6.63, 0.2)):
        f = f0 * ratio
        if f < 0.45 * rate:
            tone += amp * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    return tone * np.exp(-t / decay)


def _unit(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x**2)))
    return x / rms if rms > 0 else x


def _events(out: np.ndarray, make: Callable, count: int, level: float,
            rng: np.random.Generator, rate: int) -> None:
    for _ in range(count):
        _add_wrapped(out, int(rng.integers(0, out.size)), level * make(rate, rng)[: out.size])


def _street(n: int, rate: int, rng: np.random.Generator, synthesize: Any) -> np.ndarray:
    """Street: low brown rumble, distant babble, passing-car swells, an occasional horn."""
    seconds = n / rate
    out = 1.0 * _unit(_brown(n, rate, rng))
    out += 0.5 * _unit(_babble(n, rate, rng, synthesize))
    _events(out, _car_pass, max(1, int(rng.poisson(seconds / 4))), 1.6, rng, rate)
    _events(out, _horn, int(rng.poisson(seconds / 10)), 0.8, rng, rate)
    return out


def _cafe(n: int, rate: int, rng: np.random.Generator, synthesize: Any) -> np.ndarray:
    """Cafe: babble of nearby tables with cup and cutlery clinks about once a second."""
    seconds = n / rate
    out = _unit(_babble(n, rate, rng, synthesize))
    out += 0.15 * _unit(_pink(n, rate, rng))  # room tone
    _events(out, _clink, int(rng.poisson(seconds)), 1.2, rng, rate)
    return out


# --- rendering, cache --------------------------------------------------------------------

_CACHE: dict[tuple[str, int, int, float], np.ndarray] = {}
_CACHE_LOCK = threading.Lock()
_RENDERERS: dict[str, Callable[..., np.ndarray]] = {
    "white": _white, "pink": _pink, "brown": _brown,
    "babble": _babble, "street": _street, "cafe": _cafe,
}


def render(kind: str, seed: int, rate: int, seconds: float = BED_SECONDS, *,
           synthesize: Any = None) -> np.ndarray:
    """A circular noise bed of `seconds` at `rate`, int16, BED_LEVEL_DBFS RMS (cached).

    babble, street and cafe need `synthesize`: a callfleet Synthesizer or a callable
    `synthesize(text) -> (pcm, rate)`. The cache key is (kind, seed, rate, seconds): the voice
    is not part of it, so one process should use one babble voice (clear_cache() otherwise).
    The returned array is shared and read-only.
    """
    if kind not in _RENDERERS:
        raise ValueError(f"unknown noise kind {kind!r}; expected one of {KINDS}")
    key = (kind, int(seed), int(rate), float(seconds))
    with _CACHE_LOCK:  # held while rendering: concurrent callers wait for one render
        bed = _CACHE.get(key)
        if bed is None:
            if kind in NEEDS_SPEECH and synthesize is None:
                raise ValueError(f"noise kind {kind!r} needs a synthesizer for its babble")
            rng = np.random.default_rng([int(seed), KINDS.index(kind)])
            n = int(round(seconds * rate))
            args = (synthesize,) if kind in NEEDS_SPEECH else ()
            bed = _to_int16(_normalise(_RENDERERS[kind](n, rate, rng, *args)))
            bed.setflags(write=False)
            _CACHE[key] = bed
        return bed


def babble(seconds: float, rate: int, seed: int, synthesize: Any) -> np.ndarray:
    """Several overlapping Piper voices (see _babble), circular, int16."""
    return render("babble", seed, rate, seconds, synthesize=synthesize)


def street(seconds: float, rate: int, seed: int, synthesize: Any) -> np.ndarray:
    return render("street", seed, rate, seconds, synthesize=synthesize)


def cafe(seconds: float, rate: int, seed: int, synthesize: Any) -> np.ndarray:
    return render("cafe", seed, rate, seconds, synthesize=synthesize)


async def render_async(kind: str, seed: int, rate: int, seconds: float = BED_SECONDS, *,
                       synthesize: Any = None) -> np.ndarray:
    """render() without blocking the event loop, for use inside a call session.

    Piper (espeak-ng) must only run on the Synthesizer's own single thread, so the babble
    sentences are spoken through its async `synthesize` first; the mixing then runs in a
    worker thread.
    """
    if kind in NEEDS_SPEECH and synthesize is not None:
        await _speech_pool_async(synthesize)
    return await asyncio.to_thread(render, kind, seed, rate, seconds, synthesize=synthesize)


async def _speech_pool_async(synthesize: Any) -> None:
    held = _POOLS.get(id(synthesize))
    if held is not None and held[0] is synthesize:
        return
    speak = getattr(synthesize, "synthesize", None)
    if speak is None or not inspect.iscoroutinefunction(speak):
        await asyncio.to_thread(_speech_pool, synthesize)  # a plain callable: any thread
        return
    pool = []
    for text in BABBLE_SENTENCES[:POOL_SENTENCES]:
        pcm = np.asarray(await speak(text), dtype=np.int16)
        if pcm.size:
            pool.append((pcm, int(synthesize.sample_rate)))
    if not pool:
        raise ValueError("the synthesizer produced no audio for babble")
    _POOLS[id(synthesize)] = (synthesize, pool)


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


class NoiseBed:
    """Consecutive frames of a looped, pre-rendered noise bed at a fixed gain.

    The bed starts at a seeded offset, so callers sharing a cached bed are not in phase.
    Call set_snr(snr_db, speech_rms) once the caller's speech level is known (active_rms of a
    TTS clip of that voice); until then the gain is 0 (silence).
    """

    def __init__(self, kind: str, *, seed: int, rate: int, seconds: float = BED_SECONDS,
                 synthesize: Any = None, frame_samples: int | None = None) -> None:
        self.kind = kind
        self.rate = rate
        self.buffer = render(kind, seed, rate, seconds, synthesize=synthesize)
        self.rms = float(np.sqrt(np.mean(self.buffer.astype(np.float64) ** 2)))
        self.frame_samples = frame_samples or samples_per_frame(rate)
        self.gain = 0.0
        self._pos = int(np.random.default_rng([int(seed), 99]).integers(0, self.buffer.size))

    def set_snr(self, snr_db: float, speech_rms: float) -> None:
        """Scale the bed so its long-term power is snr_db below speech_rms**2."""
        self.gain = noise_gain_for_snr(speech_rms, self.rms, snr_db)

    def read(self, n: int) -> np.ndarray:
        """The next n samples of noise (float64, gain applied)."""
        size = self.buffer.size
        idx = self._pos
        if idx + n <= size:
            chunk = self.buffer[idx: idx + n]
        else:
            chunk = np.take(self.buffer, np.arange(idx, idx + n), mode="wrap")
        self._pos = (idx + n) % size
        return chunk * self.gain

    def next_frame(self) -> np.ndarray:
        """The next frame of noise as int16."""
        return _to_int16(self.read(self.frame_samples))

    def mix(self, speech_frame: np.ndarray) -> np.ndarray:
        """speech_frame (int16, any length) plus the next noise samples, clipped to int16."""
        return _to_int16(np.asarray(speech_frame, dtype=np.float64) + self.read(speech_frame.size))
