"""Noise beds mixed at a measured SNR, noise colours, the telephone band and bursty loss."""

from __future__ import annotations

import numpy as np
import pytest

from callers import noise
from callers.audio import resample
from callers.line import BandLimiter, GilbertElliott, band_limit

RATE = 16_000
SNRS = (0.0, 10.0, 20.0)


@pytest.fixture(scope="module")
def speech(synth):
    """Real Piper speech with half a second of silence around it, at RATE."""
    pcm = synth.synthesize_sync(
        "Hello, I'm calling about a refund for a double charge. It was two hundred fifty dollars.")
    pcm = resample(pcm, synth.sample_rate, RATE)
    pad = np.zeros(RATE // 2, np.int16)
    return np.concatenate([pad, pcm, pad])


def snr_of(speech: np.ndarray, added_noise: np.ndarray) -> float:
    """The documented definition, written out again: speech power over its 10 ms windows
    within 30 dB of the loudest one, noise power over the same windows."""
    win = RATE // 100
    n = speech.size // win
    s = speech[: n * win].astype(np.float64).reshape(n, win)
    z = added_noise[: n * win].astype(np.float64).reshape(n, win)
    p = np.mean(s**2, axis=1)
    active = p > p.max() / 1000
    return float(10 * np.log10(np.mean(s[active] ** 2) / np.mean(z[active] ** 2)))


def bed(kind: str, synth, seed: int = 7, seconds: float = noise.BED_SECONDS) -> np.ndarray:
    return noise.render(kind, seed, RATE, seconds,
                        synthesize=synth if kind in noise.NEEDS_SPEECH else None)


@pytest.mark.parametrize("kind", noise.KINDS)
def test_mixed_at_snr_within_1db(kind, synth, speech):
    rendered = bed(kind, synth)
    assert rendered.dtype == np.int16 and rendered.size == int(noise.BED_SECONDS * RATE)
    for snr in SNRS:
        # A slice from the middle of the bed, as a call would hear it.
        segment = rendered[RATE: RATE + speech.size]
        mixed = noise.mix_at_snr(speech, segment, snr, RATE)
        added = mixed.astype(np.int32) - speech.astype(np.int32)
        assert abs(snr_of(speech, added) - snr) <= 1.0, (kind, snr)


@pytest.mark.parametrize("kind", ["white", "pink", "brown", "babble", "cafe"])
def test_streamed_bed_at_snr_within_1db(kind, synth, speech):
    """The call path: one gain per call from the bed's long-term level, 20 ms frames mixed.

    street is left out on purpose: a passing car or a horn under the utterance raises the
    noise by up to ~2 dB over the bed's average (measured 1.7 dB worst of 15), as a street does.
    """
    for seed, snr in zip((1, 2, 3), SNRS, strict=True):
        noise_bed = noise.NoiseBed(kind, seed=seed, rate=RATE,
                                   synthesize=synth if kind in noise.NEEDS_SPEECH else None)
        frame = noise_bed.frame_samples
        padded = np.concatenate([speech, np.zeros(-speech.size % frame, np.int16)])
        noise_bed.set_snr(snr, noise.active_rms(speech, RATE))
        mixed = np.concatenate([noise_bed.mix(padded[i: i + frame])
                                for i in range(0, padded.size, frame)])
        added = mixed.astype(np.int32) - padded.astype(np.int32)
        assert abs(snr_of(speech, added) - snr) <= 1.0, (kind, snr)


def band_density_db(x: np.ndarray, lo: float, hi: float) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(x.size, 1 / RATE)
    return float(10 * np.log10(np.mean(spectrum[(f >= lo) & (f < hi)])))


@pytest.mark.parametrize(("kind", "min_tilt_db"), [("white", None), ("pink", 6.0),
                                                   ("brown", 15.0)])
def test_colours_slope_down(kind, min_tilt_db):
    x = noise.render(kind, 1, RATE)
    tilt = band_density_db(x, 100, 500) - band_density_db(x, 2000, 4000)
    if min_tilt_db is None:
        assert abs(tilt) < 1.0  # white is flat
    else:
        assert tilt > min_tilt_db


@pytest.mark.parametrize("kind", noise.KINDS)
def test_seeded(kind, synth):
    first = bed(kind, synth, seed=11, seconds=3.0).copy()
    noise.clear_cache()
    again = bed(kind, synth, seed=11, seconds=3.0)
    other = bed(kind, synth, seed=12, seconds=3.0)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert bed(kind, synth, seed=11, seconds=3.0) is again  # cached per (kind, seed, rate)


def test_noise_bed_loops_seamlessly():
    noise_bed = noise.NoiseBed("pink", seed=5, rate=RATE, seconds=1.0)
    noise_bed.gain = 1.0
    start = noise_bed._pos
    frames = np.concatenate([noise_bed.next_frame() for _ in range(120)])  # 2.4 loops
    expected = np.take(noise_bed.buffer, np.arange(start, start + frames.size), mode="wrap")
    assert np.array_equal(frames, expected)
    # The loop point is no louder a step than any other sample-to-sample step.
    buf = noise_bed.buffer.astype(np.int32)
    assert abs(buf[0] - buf[-1]) <= np.max(np.abs(np.diff(buf)))


def test_babble_needs_a_synthesizer():
    with pytest.raises(ValueError, match="synthesizer"):
        noise.render("babble", 1, RATE, 1.0)
    with pytest.raises(ValueError, match="unknown noise kind"):
        noise.render("rain", 1, RATE)


def test_babble_accepts_a_plain_callable():
    t = np.arange(8000) / 8000

    def synthesize(text: str):
        tone = np.sin(2 * np.pi * (150 + len(text)) * t) * np.sin(np.pi * 3 * t) ** 2
        return (8000 * tone).astype(np.int16), 8000

    x = noise.render("babble", 1, RATE, 2.0, synthesize=synthesize)
    assert x.size == 2 * RATE and np.std(x) > 100


def tone_gain_db(freq: float, rate: int, streamed: bool = False) -> float:
    t = np.arange(rate) / rate
    x = (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    if streamed:
        limiter = BandLimiter(rate)
        step = rate // 50
        y = np.concatenate([limiter.process(x[i: i + step]) for i in range(0, x.size, step)])
    else:
        y = band_limit(x, rate)
    mid = slice(rate // 4, 3 * rate // 4)  # away from the filter's edges
    return float(20 * np.log10(np.std(y[mid].astype(float)) / np.std(x[mid].astype(float))))


@pytest.mark.parametrize("rate", [16_000, 48_000])
@pytest.mark.parametrize("streamed", [False, True])
def test_band_limit(rate, streamed):
    assert tone_gain_db(100, rate, streamed) <= -12
    assert tone_gain_db(6000, rate, streamed) <= -12
    assert abs(tone_gain_db(1000, rate, streamed)) <= 2
    assert abs(tone_gain_db(3000, rate, streamed)) <= 2


def test_band_limit_at_8k_and_alignment():
    assert tone_gain_db(100, 8000) <= -12 and abs(tone_gain_db(1000, 8000)) <= 2
    x = np.zeros(4000, np.int16)
    x[2000] = 10000
    y = band_limit(x, 8000)
    assert y.size == x.size and int(np.argmax(np.abs(y))) == 2000  # no delay added


def test_gilbert_elliott_bursty_two_percent():
    model = GilbertElliott.from_loss_pct(2.0, mean_burst_frames=3, seed=42)
    assert model.expected_loss_pct == pytest.approx(2.0)
    drops = np.array([model.drop() for _ in range(100_000)])
    assert abs(drops.mean() * 100 - 2.0) <= 0.5
    # Run lengths of consecutive losses.
    edges = np.diff(np.concatenate([[0], drops.astype(np.int8), [0]]))
    runs = np.nonzero(edges == -1)[0] - np.nonzero(edges == 1)[0]
    assert runs.mean() > 1.5
    again = GilbertElliott.from_loss_pct(2.0, mean_burst_frames=3, seed=42)
    assert [again.drop() for _ in range(1000)] == drops[:1000].tolist()


def test_gilbert_elliott_general_model():
    model = GilbertElliott(0.01, 0.2, loss_in_bad=0.5, loss_in_good=0.01, seed=1)
    expected = 100 * (0.01 / 0.21 * 0.5 + 0.2 / 0.21 * 0.01)
    assert model.expected_loss_pct == pytest.approx(expected)
    measured = 100 * np.mean([model.drop() for _ in range(100_000)])
    assert abs(measured - expected) <= 0.5
    assert GilbertElliott.from_loss_pct(0.0, seed=1).drop() is False
    with pytest.raises(ValueError):
        GilbertElliott(1.5, 0.1)


async def test_render_async_speaks_on_the_tts_thread(synth):
    """Inside a session: babble sentences go through Synthesizer.synthesize (its one thread)."""
    noise.clear_cache()
    x = await noise.render_async("cafe", 21, RATE, 2.0, synthesize=synth)
    assert x.size == 2 * RATE and x is noise.render("cafe", 21, RATE, 2.0, synthesize=synth)
