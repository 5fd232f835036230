"""Text to speech on any OpenAI-compatible `/v1/audio/speech` endpoint (OpenAI, speaches,
Kokoro-FastAPI, vLLM-served TTS...): the callers' words are spoken by a shared service instead
of a Piper thread on every media host.

The key stays in the environment variable the config names (as for the LLM brain and STT). A
failed or slow request is retried once, each try bounded by timeout_s, then fails the call as
`tts_unavailable` with what went wrong (never the response body or the key): a caller that
cannot speak cannot test the agent, and must not hang.
"""

from __future__ import annotations

import io
import wave
from typing import Literal

import numpy as np
from pydantic import Field

from callers.audio import resample
from callers.llm_brain import EndpointConfig
from callers.speech.openai_speech import OpenAISpeechClient

SPEED_RANGE = (0.25, 4.0)  # what OpenAI's speech endpoint accepts


class OpenAITTSConfig(EndpointConfig):
    """Where the speech service is: base_url (…/v1), model (tts-1, gpt-4o-mini-tts, kokoro...),
    voice (alloy, af_heart...), api_key_env, timeout_s per request. response_format wav carries
    its own rate; pcm is raw 16-bit mono at sample_rate (OpenAI's is 24 kHz). Audio comes back
    resampled to sample_rate either way."""

    voice: str = Field(min_length=1, max_length=200)
    response_format: Literal["wav", "pcm"] = "wav"
    sample_rate: int = Field(default=24_000, ge=8_000, le=48_000, strict=True)
    timeout_s: float = Field(default=10.0, gt=0, le=120, allow_inf_nan=False)


class OpenAISynthesizer(OpenAISpeechClient):
    """callers.speech.tts.TextToSpeech over HTTP; one client per process, created in its event loop.

    A rate is sent as the request's speed; a variant (Piper's timbre) has no equivalent in a
    service voice and is not sent, nor part of the cache key.
    """

    reason = "tts_unavailable"
    section = "speech.openai_tts"
    config: OpenAITTSConfig

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def voice_id(self) -> str:
        """Which voice, in cache keys: the service, model and voice (no key)."""
        return f"{self.config.base_url}|{self.config.model}|{self.config.voice}"

    def cache_key(self, text: str, rate: float = 1.0, variant: int = 0) -> tuple:
        return (self.voice_id, text, _speed(rate), self.sample_rate)

    async def synthesize(self, text: str, rate: float = 1.0, variant: int = 0) -> np.ndarray:
        config = self.config
        response = await self.request(lambda client: client.audio.speech.create(
            model=config.model, input=text, voice=config.voice,
            response_format=config.response_format, speed=_speed(rate)))
        body = response.content
        try:
            pcm, rate_in = (_read_wav(body) if config.response_format == "wav"
                            else (_int16(body), config.sample_rate))
        except (wave.Error, EOFError, ValueError) as e:
            raise self.failed(f"answered audio that is not 16-bit mono "
                              f"{config.response_format} ({e})") from None
        return resample(pcm, rate_in, config.sample_rate) if rate_in != config.sample_rate \
            else pcm


def _speed(rate: float) -> float:
    return round(min(max(rate, SPEED_RANGE[0]), SPEED_RANGE[1]), 3)


def _int16(data: bytes) -> np.ndarray:
    # A streamed body may end mid-sample; the odd byte is dropped, not an error.
    return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.int16)


def _read_wav(data: bytes) -> tuple[np.ndarray, int]:
    """(mono int16 samples, rate) of a WAV body. A streamed WAV's header may give an unknown
    (maximal) length: the data then runs to the end of the body."""
    with wave.open(io.BytesIO(data), "rb") as wav:
        if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
            raise ValueError(f"{wav.getnchannels()} channel(s) of {8 * wav.getsampwidth()} bits")
        return _int16(wav.readframes(wav.getnframes())), wav.getframerate()
