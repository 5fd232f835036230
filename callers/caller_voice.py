"""The caller's voice: the persona's TTS voice, hesitations, and the line it speaks through."""

from __future__ import annotations

import zlib

import numpy as np

from callers.audio import WIRE_RATE, resample, voiced_bounds
from callers.line import CallerLine, GilbertElliott
from callers.media import Utterance, utterance_from_pcm
from callers.noise import NoiseBed, active_rms, render_async
from callers.persona import Persona
from callers.speech.tts import TextToSpeech

LEAD_MS = 30  # voice kept before the first loud window when gluing parts together
# Spoken once per call to measure the persona's speech level for the noise SNR.
# A fixed sentence of ordinary length: the voice's level does not depend on the scenario.
LEVEL_TEXT = "Hello, my name is on the account, and I am calling about a question I have."


class CallerVoice:
    """Speaks text as the persona: its voice model, rate and timbre, hesitations included."""

    def __init__(self, persona: Persona, tts: TextToSpeech) -> None:  # a CachedSynthesizer
        self.persona = persona
        self.tts = tts

    async def _pcm(self, text: str) -> np.ndarray:
        voice = self.persona.voice
        return await self.tts.synthesize(text, voice.speaking_rate, voice.variant)

    async def prepare(self, text: str) -> None:
        """Synthesize text now (into the TTS cache) for an utterance made later."""
        await self._pcm(text)

    async def utterance(self, text: str, *, mode: str = "turn",
                        hesitation: tuple[str, float] | None = None) -> Utterance:
        """The utterance for text; a hesitation puts "filler, <pause>" before it."""
        rate = self.tts.sample_rate
        pcm = _trim_lead(await self._pcm(text), rate)
        if hesitation is None:
            return utterance_from_pcm(pcm, rate, text, mode=mode, crisp_end=True)
        filler, pause_ms = hesitation
        head = _trim_lead(await self._pcm(filler), rate)
        head = head[: voiced_bounds(head, rate)[1]]  # the pause starts where the filler ends
        tail = pcm
        pause = np.zeros(int(rate * pause_ms / 1000), np.int16)
        glued = np.concatenate([head, pause, tail])
        pause_at = [(head.size, head.size + pause.size)]
        return utterance_from_pcm(glued, rate, f"{filler} {text}", mode=mode,
                                  pause_at=pause_at, crisp_end=True)

    async def speech_rms(self) -> float:
        """Active speech level of this voice at the wire rate (what the noise SNR is set against)."""
        pcm = await self._pcm(LEVEL_TEXT)
        return active_rms(resample(pcm, self.tts.sample_rate, WIRE_RATE), WIRE_RATE)


def _trim_lead(pcm: np.ndarray, rate: int) -> np.ndarray:
    """Drop Piper's leading silence (random, 0-350 ms): the caller speaks when it planned to."""
    return pcm[max(0, voiced_bounds(pcm, rate)[0] - rate * LEAD_MS // 1000):]


def persona_seed(persona: Persona) -> int:
    """A stable seed per persona id: its noise bed is rendered once per process, not per call."""
    return zlib.crc32(persona.id.encode())


async def caller_line(persona: Persona, seed: int, voice: CallerVoice,
                      babble_tts: TextToSpeech) -> CallerLine | None:
    """The persona's environment and phone line as a CallerLine, or None for a clean line.
    babble_tts speaks the few babble sentences of a noise bed, once per process (callers.noise):
    Piper, or the TTS service with `speech.tts: openai` (a handful of requests, not per call)."""
    env, line = persona.environment, persona.line
    if env.noise == "none" and not line.band_limit and line.packet_loss_pct == 0:
        return None
    noise = None
    if env.noise != "none":
        bed_seed = persona_seed(persona)
        await render_async(env.noise, bed_seed, WIRE_RATE, synthesize=babble_tts)  # cached
        noise = NoiseBed(env.noise, seed=bed_seed, rate=WIRE_RATE, synthesize=babble_tts)
        noise.set_snr(env.snr_db, await voice.speech_rms())
    loss = (GilbertElliott.from_loss_pct(line.packet_loss_pct, seed=seed)
            if line.packet_loss_pct > 0 else None)
    return CallerLine(WIRE_RATE, noise=noise, band_limit=line.band_limit, loss=loss)
