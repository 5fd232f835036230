"""The caller's voice with real Piper: hesitations, the persona's noise at its SNR, voices."""

from __future__ import annotations

import numpy as np
import pytest

from callers.audio import WIRE_RATE
from callers.caller_voice import CallerVoice, caller_line
from callers.noise import measured_snr_db
from callers.persona import Persona, find_persona
from callers.session import CallerModels
from callers.speech.tts import bundled_voice_paths


def persona(**changes) -> Persona:
    return find_persona("cooperative-john").model_copy(update=changes)


async def test_hesitation_is_a_pause_of_the_planned_length_between_filler_and_answer(synth):
    voice = CallerVoice(persona(), synth)
    utterance = await voice.utterance("Smith.", hesitation=("Um,", 450.0))
    assert utterance.text == "Um, Smith."
    (_, end_filler), (start_answer, _) = utterance.spans
    gap_ms = (start_answer - end_filler) / WIRE_RATE * 1000
    # the pause plus the answer's kept lead-in (30 ms); the filler's end, found to the sample,
    # can move by a few samples when the glued clip is resampled to the wire rate
    assert 450 - 0.5 <= gap_ms <= 450 + 60


async def test_replies_start_with_the_voice_not_piper_silence(synth):
    utterance = await CallerVoice(persona(), synth).utterance("Two hundred fifty dollars.")
    assert utterance.voiced[0] / WIRE_RATE * 1000 <= 40


async def test_a_clean_persona_has_no_line_and_a_street_caller_is_mixed_at_its_snr(synth):
    voice = CallerVoice(persona(), synth)
    assert await caller_line(persona(), 1, voice, synth) is None
    street = find_persona("street-anna")
    line = await caller_line(street, 1, CallerVoice(street, synth), synth)
    speech = (await CallerVoice(street, synth).utterance(
        "My name is Anna Lee, and I am calling about a stolen card.")).pcm48
    frames = [speech[i:i + 960] for i in range(0, speech.size - 959, 960)]
    sent = np.concatenate([line.process(f)[0] for f in frames])
    noise = sent.astype(np.float64) - speech[: sent.size]
    snr = measured_snr_db(speech[: sent.size], noise, WIRE_RATE)
    # The noise level is set once per voice, against a reference sentence; Piper's timbre noise
    # is unseeded, so one other sentence measured 13.7-16.2 dB against 15 over 8 renders.
    assert snr == pytest.approx(street.environment.snr_db, abs=2.0)


async def test_bad_line_persona_gets_band_limit_and_bursty_loss(synth):
    thomas = find_persona("bad-line-thomas")
    line = await caller_line(thomas, 3, CallerVoice(thomas, synth), synth)
    assert line.band is not None and line.noise is None
    assert line.loss.expected_loss_pct == pytest.approx(2.0)


async def test_a_persona_voice_model_is_loaded_once_per_process(synth):
    models = CallerModels(stt=None, tts=synth)
    assert await models.voice(None) is synth
    model, _ = bundled_voice_paths()
    other = await models.voice(str(model))
    assert other is not synth and await models.voice(str(model)) is other
    assert (await other.synthesize("Hello.")).size > 0
    other.close()
