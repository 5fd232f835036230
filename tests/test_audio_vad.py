"""Audio basics, speech segmentation on real synthesized speech, and the outgoing playout clock."""

import wave

import numpy as np
import pytest

from callers.audio import STT_RATE, WIRE_RATE, resample, voiced_bounds, write_stereo_wav
from callers.media import Playout, place_on_timeline, utterance_from_pcm
from callers.speech.vad import FRAME_SAMPLES, SpeechSegmenter

FRAME_MS = 20
TOLERANCE_MS = 60


def tone(seconds: float, rate: int, freq: float = 440.0, amplitude: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def silence(ms: float, rate: int = STT_RATE) -> np.ndarray:
    return np.zeros(int(ms * rate / 1000), np.int16)


def segment(audio: np.ndarray, t0_ms: float = 0.0, **kwargs):
    """Feed 16 kHz audio in 20 ms frames stamped t0 + i*20 ms; return (start, end) pairs."""
    segmenter = SpeechSegmenter(**kwargs)
    events = []
    for i in range(audio.size // FRAME_SAMPLES):
        frame = audio[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES]
        events += segmenter.push(frame, t0_ms + i * FRAME_MS)
    events += segmenter.flush()
    starts = [e.t_ms for e in events if e.kind == "start"]
    ends = [e for e in events if e.kind == "end"]
    assert len(starts) == len(ends), "every start must be closed by an end"
    return [(e.segment.start_ms, e.segment.end_ms, e) for e in ends], starts


# --- real speech from the bundled Piper voice -----------------------------------------------


@pytest.fixture(scope="module")
def speech16(synth):
    """One sentence of real speech at 16 kHz, with Piper's own leading/trailing silence.

    Chosen to end on a stop consonant: a sentence ending in a faint fricative ("...dollars.")
    hovers around the -40 dBFS of voiced_bounds() and has no sharp end to compare against.
    """
    pcm = synth.synthesize_sync("I need a refund for a double charge on my card.")
    assert synth.sample_rate == 22050
    return resample(pcm, synth.sample_rate, STT_RATE)


@pytest.fixture(scope="module")
def two_phrases16(synth):
    """Two short sentences, each trimmed to its voiced span (16 kHz).

    Trimmed at -40 dBFS, not at the -45 dBFS sound level: "...John Smith." is followed, 40 ms
    after its end, by 80 ms of breath at -42 to -47 dBFS that is sound but not speech.
    """
    out = []
    for text in ("My name is John Smith.", "I was charged twice for my order."):
        pcm = resample(synth.synthesize_sync(text), synth.sample_rate, STT_RATE)
        a, b = voiced_bounds(pcm, STT_RATE, threshold_dbfs=-40.0)
        out.append(pcm[a:b])
    return out


# --- audio.py --------------------------------------------------------------------------------


@pytest.mark.parametrize("dst_rate", [WIRE_RATE, STT_RATE])
def test_resample_from_piper_rate_keeps_duration(dst_rate):
    clip = tone(1.5, 22050)
    out = resample(clip, 22050, dst_rate)
    assert out.dtype == np.int16
    assert abs(out.size - 1.5 * dst_rate) <= 4


def test_resample_keeps_the_tone_frequency_and_level():
    out = resample(tone(1.0, 22050, freq=1000.0), 22050, STT_RATE)
    spectrum = np.abs(np.fft.rfft(out.astype(np.float64)))
    peak_hz = np.argmax(spectrum) * STT_RATE / out.size
    assert abs(peak_hz - 1000.0) < 5
    assert 7000 < np.abs(out[1000:-1000]).max() < 9000


def test_resample_same_rate_and_empty_are_copies():
    clip = tone(0.1, STT_RATE)
    same = resample(clip, STT_RATE, STT_RATE)
    assert np.array_equal(same, clip) and same is not clip
    assert resample(np.zeros(0, np.int16), 22050, WIRE_RATE).size == 0


def test_voiced_bounds_trims_silence_around_a_tone():
    rate = STT_RATE
    clip = np.concatenate([silence(500), tone(1.0, rate), silence(700)])
    first, last = voiced_bounds(clip, rate)
    win = rate // 100  # 10 ms windows
    assert abs(first - int(0.5 * rate)) <= win
    assert abs(last - int(1.5 * rate)) <= win


def test_voiced_bounds_of_silence_and_quiet_noise_is_empty():
    rng = np.random.default_rng(0)
    quiet = rng.normal(0, 30, STT_RATE).astype(np.int16)  # about -60 dBFS
    assert voiced_bounds(silence(1000), STT_RATE) == (0, 0)
    assert voiced_bounds(quiet, STT_RATE) == (0, 0)


def test_write_stereo_wav_puts_left_and_right_in_their_channels(tmp_path):
    rate = STT_RATE
    left = tone(0.5, rate, freq=440.0)
    right = np.concatenate([silence(300), tone(0.5, rate, freq=880.0, amplitude=4000)])
    path = tmp_path / "call.wav"
    write_stereo_wav(path, left, right, rate)
    with wave.open(str(path), "rb") as wav:
        assert wav.getnchannels() == 2
        assert wav.getsampwidth() == 2
        assert wav.getframerate() == rate
        n = wav.getnframes()
        data = np.frombuffer(wav.readframes(n), dtype=np.int16).reshape(-1, 2)
    assert n == right.size  # the longer track sets the length
    assert np.array_equal(data[: left.size, 0], left)
    assert not data[left.size :, 0].any()  # the shorter track is padded with silence
    assert np.array_equal(data[:, 1], right)
    assert not data[: int(0.3 * rate), 1].any()  # right starts 300 ms in, not on the left


# --- vad.py on real speech -----------------------------------------------------------------


def test_segmenter_finds_one_segment_matching_the_voiced_span(speech16):
    lead_ms, t0 = 500, 10_000.0
    audio = np.concatenate([silence(lead_ms), speech16, silence(1000)])
    first, last = voiced_bounds(speech16, STT_RATE)
    expected_start = t0 + lead_ms + first / 16
    expected_end = t0 + lead_ms + last / 16

    segments, starts = segment(audio, t0)

    assert len(segments) == 1
    start, end, event = segments[0]
    assert abs(start - expected_start) <= TOLERANCE_MS
    assert abs(end - expected_end) <= TOLERANCE_MS
    assert starts == [start]
    assert event.t_ms == end
    # The segment's audio (with pre-roll) covers the whole utterance for the transcriber.
    assert event.segment.audio.dtype == np.int16
    assert event.segment.audio.size / 16 >= (expected_end - expected_start)


def test_short_pause_inside_speech_does_not_split_the_segment(two_phrases16):
    a, b = two_phrases16
    audio = np.concatenate([silence(400), a, silence(200), b, silence(1000)])
    segments, _ = segment(audio, hangover_ms=300)
    assert len(segments) == 1
    start, end, _ = segments[0]
    expected_end = 400 + (a.size + b.size) / 16 + 200
    assert abs(start - 400) <= TOLERANCE_MS
    assert abs(end - expected_end) <= TOLERANCE_MS


def test_long_pause_inside_speech_splits_into_two_segments(two_phrases16):
    a, b = two_phrases16
    audio = np.concatenate([silence(400), a, silence(600), b, silence(1000)])
    segments, _ = segment(audio, hangover_ms=300)
    assert len(segments) == 2
    (s1, e1, _), (s2, e2, _) = segments
    a_end = 400 + a.size / 16
    b_start = a_end + 600
    assert abs(s1 - 400) <= TOLERANCE_MS
    assert abs(e1 - a_end) <= TOLERANCE_MS
    assert abs(s2 - b_start) <= TOLERANCE_MS
    assert abs(e2 - (b_start + b.size / 16)) <= TOLERANCE_MS


def push_all(segmenter: SpeechSegmenter, audio: np.ndarray) -> list:
    events = []
    for i in range(audio.size // FRAME_SAMPLES):
        events += segmenter.push(audio[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES], i * FRAME_MS)
    return events + segmenter.flush()


def test_an_early_pause_hands_over_the_speech_the_segment_ends_with(two_phrases16):
    a, b = two_phrases16
    audio = np.concatenate([silence(400), a, silence(200), b, silence(1000)])
    events = push_all(SpeechSegmenter(hangover_ms=300, early_ms=100), audio)
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and set(kinds[1:-1]) == {"pause"}, kinds
    last_pause, end = events[-2].segment, events[-1].segment
    assert end.as_paused
    assert (last_pause.start_ms, last_pause.end_ms) == (end.start_ms, end.end_ms)
    # the same speech, at least 200 ms less trailing silence (the 300 ms hangover less the
    # 100 ms pause, and webrtcvad's tail)
    assert np.array_equal(end.audio[: last_pause.audio.size], last_pause.audio)
    assert (end.audio.size - last_pause.audio.size) / 16 >= 200
    assert not np.any(end.audio[last_pause.audio.size :])


def events_at_ms(segmenter: SpeechSegmenter, audio: np.ndarray) -> list:
    """(when, event): each event with the end of the frame that completed it."""
    events = []
    for i in range(audio.size // FRAME_SAMPLES):
        frame = audio[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES]
        events += [((i + 1) * FRAME_MS, e) for e in segmenter.push(frame, i * FRAME_MS)]
    return events


def test_the_early_pause_counts_from_the_end_of_the_sound(speech16):
    audio = np.concatenate([silence(300), speech16, silence(1000)])
    events = events_at_ms(SpeechSegmenter(hangover_ms=300, early_ms=100), audio)
    (pause_at, pause), (end_at, end) = [(t, e) for t, e in events if e.kind != "start"][-2:]
    assert pause.kind == "pause" and end.kind == "end" and end.segment.as_paused
    # 100 ms after the sound's end (its last loud frame; the end is refined within the next),
    # give or take a frame, not after webrtcvad's own ~120 ms tail of "speech"
    assert abs(pause_at - end.segment.end_ms - 100) <= 2 * FRAME_MS, pause_at
    # the segment still ends 300 ms after webrtcvad's last voiced frame
    assert end_at - pause_at >= 200


def test_a_segment_cut_while_voiced_is_not_as_paused(speech16):
    audio = np.concatenate([silence(300), speech16])
    events = push_all(SpeechSegmenter(hangover_ms=300, early_ms=100, max_segment_s=0.6), audio)
    ends = [e.segment for e in events if e.kind == "end"]
    assert ends and not ends[0].as_paused  # cut at 0.6 s mid-speech: its text is not known yet
    assert not any(e.segment.as_paused for e in push_all(SpeechSegmenter(), audio)
                   if e.kind == "end")  # without early_ms there are no pauses at all


def test_pure_silence_gives_no_segments():
    segments, starts = segment(silence(3000))
    assert segments == [] and starts == []


def test_low_white_noise_gives_no_segments():
    rng = np.random.default_rng(7)
    noise = np.clip(rng.normal(0, 60, 3 * STT_RATE), -32768, 32767).astype(np.int16)  # ~ -55 dBFS
    segments, starts = segment(noise)
    assert segments == [] and starts == []


def test_flush_closes_a_segment_still_open_when_the_stream_stops(speech16):
    first, last = voiced_bounds(speech16, STT_RATE)
    audio = np.concatenate([silence(300), speech16[:last]])  # stream ends mid-speech
    segmenter = SpeechSegmenter()
    for i in range(audio.size // FRAME_SAMPLES):
        segmenter.push(audio[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES], i * FRAME_MS)
    assert segmenter.in_speech
    events = segmenter.flush()
    assert [e.kind for e in events] == ["end"]
    assert not segmenter.in_speech
    assert segmenter.flush() == []


# --- media.py: playout clock and recording timeline -----------------------------------------


async def test_playout_reports_voiced_start_and_end_at_frame_time_plus_offset():
    rate = 22050
    pcm = np.concatenate([silence(330, rate), tone(0.8, rate), silence(250, rate)])
    utterance = utterance_from_pcm(pcm, rate, "beep")
    first, last = utterance.voiced
    assert abs(first / WIRE_RATE - 0.33) <= 0.011
    assert abs(last / WIRE_RATE - 1.13) <= 0.011

    events = []
    playout = Playout(on_event=lambda kind, t, u: events.append((kind, t, u)))
    done = playout.say(utterance)
    t0 = 5000.0
    frames = []
    i = 0
    while playout.speaking:
        frames.append(playout.next_frame(t0 + i * FRAME_MS))
        i += 1

    expected_start = t0 + first / WIRE_RATE * 1000
    expected_end = t0 + last / WIRE_RATE * 1000
    assert [(k, round(t, 6)) for k, t, _ in events] == [
        ("speech_start", round(expected_start, 6)),
        ("speech_end", round(expected_end, 6)),
    ]
    assert all(u is utterance for _, _, u in events)
    assert utterance.start_ms == pytest.approx(expected_start)
    assert utterance.end_ms == pytest.approx(expected_end)
    # Every sample went out, in order, 20 ms at a time, at both rates.
    assert i == -(-utterance.pcm48.size // 960)
    sent48 = np.concatenate([f48 for f48, _ in frames])
    assert np.array_equal(sent48[: utterance.pcm48.size], utterance.pcm48)
    assert all(f48.size == 960 and f16.size == 320 for f48, f16 in frames)
    assert done.done() and done.result() is utterance
    silent48, silent16 = playout.next_frame(t0 + i * FRAME_MS)
    assert not silent48.any() and not silent16.any()


async def test_playout_stop_ends_speech_at_the_stop_time_and_marks_interrupted():
    rate = 22050
    utterance = utterance_from_pcm(tone(2.0, rate), rate, "long")
    events = []
    playout = Playout(on_event=lambda kind, t, u: events.append((kind, t)))
    done = playout.say(utterance)
    for i in range(10):
        playout.next_frame(i * FRAME_MS)
    playout.stop(200.0)
    assert events == [("speech_start", 0.0), ("speech_end", 200.0)]
    assert utterance.interrupted and done.done()
    assert not playout.speaking


def test_place_on_timeline_puts_chunks_at_their_times():
    rate = STT_RATE
    a = np.full(320, 1000, np.int16)
    b = np.full(320, -2000, np.int16)
    track = place_on_timeline([(100.0, a), (500.0, b)], rate)
    assert track.size == int(0.5 * rate) + 320
    assert not track[:1600].any()
    assert np.array_equal(track[1600:1920], a)
    assert not track[1920:8000].any()
    assert np.array_equal(track[8000:8320], b)
    assert place_on_timeline([], rate).size == 0
