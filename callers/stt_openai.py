"""Speech to text on any OpenAI-compatible `/v1/audio/transcriptions` endpoint (speaches,
vLLM's Whisper, OpenAI itself): the agent's segments leave the host as 16 kHz WAV, so a shared
(GPU) service can do the decoding for many media hosts.

The key stays in the environment variable the config names (as for the LLM brain). A failed or
slow request is retried once within the call's budget, then fails the call as
`stt_unavailable` with what went wrong (never the response body or the key): a call that
cannot hear the agent cannot be graded, and must not hang.
"""

from __future__ import annotations

import asyncio
import io
import os
import time
import wave

import numpy as np
import openai
from pydantic import Field

from callers.audio import STT_RATE
from callers.errors import CallFailed, ConfigError
from callers.llm_brain import LLMConfig, describe_error, retryable
from callers.stt import Transcript

ATTEMPTS = 2


class OpenAISTTConfig(LLMConfig):
    """Where the transcription service is: base_url (…/v1), model (e.g. Systran/faster-whisper-
    tiny.en for speaches, whisper-1 for OpenAI), api_key_env, timeout_s per request."""

    timeout_s: float = Field(default=5.0, gt=0, le=120, allow_inf_nan=False)
    temperature: float = Field(default=0.0, ge=0, le=1)  # the most likely words


def wav_bytes(audio16k: np.ndarray) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(STT_RATE)
        wav.writeframes(np.ascontiguousarray(audio16k, dtype="<i2").tobytes())
    return out.getvalue()


class OpenAITranscriber:
    """callers.stt.SpeechToText over HTTP; one client per process, created in its event loop."""

    def __init__(self, config: OpenAISTTConfig, client=None) -> None:
        self.config = config
        self._client = client
        self.requests = 0
        if client is None and not os.environ.get(config.api_key_env):
            raise ConfigError(f"speech.openai: environment variable {config.api_key_env} (the "
                              f"API key for {config.base_url}) is not set")

    def _get_client(self):
        if self._client is None:
            self._client = openai.AsyncOpenAI(
                base_url=self.config.base_url, api_key=os.environ.get(self.config.api_key_env),
                max_retries=0, timeout=self.config.timeout_s)
        return self._client

    async def transcribe(self, audio16k: np.ndarray, prompt: str | None = None) -> Transcript:
        began = time.perf_counter()
        body = wav_bytes(audio16k)
        error: BaseException | None = None
        for _ in range(ATTEMPTS):
            self.requests += 1
            try:
                async with asyncio.timeout(self.config.timeout_s):
                    result = await self._get_client().audio.transcriptions.create(
                        model=self.config.model, file=("segment.wav", body, "audio/wav"),
                        language="en", response_format="json",
                        temperature=self.config.temperature,
                        **({"prompt": prompt} if prompt else {}))
            except (TimeoutError, openai.OpenAIError) as e:
                error = e
                if isinstance(e, TimeoutError) or retryable(e):
                    continue
                break
            text = getattr(result, "text", None)
            if not isinstance(text, str):
                raise CallFailed("stt_unavailable", f"{self.config.base_url} answered "
                                 "without a text field")
            return Transcript(text.strip(), time.perf_counter() - began)
        what = ("no answer in time" if isinstance(error, TimeoutError)
                else describe_error(error))
        raise CallFailed("stt_unavailable", f"{self.config.base_url}: {what}")

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                asyncio.get_running_loop().create_task(client.close())
            except RuntimeError:  # no loop: the process is ending
                pass
