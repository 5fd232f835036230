"""Speech to text on any OpenAI-compatible `/v1/audio/transcriptions` endpoint (speaches,
vLLM's Whisper, OpenAI itself): the agent's segments leave the host as 16 kHz WAV, so a shared
(GPU) service can do the decoding for many media hosts.

The key stays in the environment variable the config names (as for the LLM brain). A failed or
slow request is retried once within the call's budget, then fails the call as
`stt_unavailable` with what went wrong (never the response body or the key): a call that
cannot hear the agent cannot be graded, and must not hang.
"""

from __future__ import annotations

import io
import time
import wave

import numpy as np
from pydantic import Field

from callers.audio import STT_RATE
from callers.llm_brain import LLMConfig
from callers.speech.openai_speech import OpenAISpeechClient
from callers.speech.stt import Transcript


class OpenAISTTConfig(LLMConfig):
    """Where the transcription service is: base_url (…/v1), model (e.g. Systran/faster-whisper-
    tiny.en for speaches, whisper-1 for OpenAI), api_key_env, timeout_s per request."""

    timeout_s: float = Field(default=5.0, gt=0, le=120, allow_inf_nan=False)
    temperature: float = Field(default=0.0, ge=0, le=1)  # the most likely words


def wav_bytes(audio: np.ndarray, rate: int = STT_RATE) -> bytes:
    """Mono int16 audio as a WAV file."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.ascontiguousarray(audio, dtype="<i2").tobytes())
    return out.getvalue()


class OpenAITranscriber(OpenAISpeechClient):
    """stt.SpeechToText over HTTP; one client per process, created in its event loop."""

    reason = "stt_unavailable"
    section = "speech.openai"
    config: OpenAISTTConfig

    async def transcribe(self, audio16k: np.ndarray, prompt: str | None = None, *,
                         needed_in_s: float | None = None) -> Transcript:
        began = time.perf_counter()
        body = wav_bytes(audio16k)
        result = await self.request(lambda client: client.audio.transcriptions.create(
            model=self.config.model, file=("segment.wav", body, "audio/wav"),
            language="en", response_format="json", temperature=self.config.temperature,
            **({"prompt": prompt} if prompt else {})))
        text = getattr(result, "text", None)
        if not isinstance(text, str):
            raise self.failed("answered without a text field")
        return Transcript(text.strip(), time.perf_counter() - began)
