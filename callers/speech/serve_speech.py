"""Speech on shared Ray Serve deployments (`speech: {stt: serve, tts: serve}`): the caller's side.

The run starts one Whisper and one Piper application on the cluster
(orchestration/speech_service.py); every host of every node sends its agent segments and its
lines there through a deployment handle, so a GPU node (or a few CPU replicas) can do the
decoding for many media hosts. Everything that selects the result travels in the request
(audio and prompt; text, voice, rate and variant), so a call replays the same whoever serves
it.

A request that fails or takes longer than timeout_s is tried once more, then the call fails as
`stt_unavailable` / `tts_unavailable` with what went wrong: a call that cannot hear or speak
cannot be graded, and must not hang.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from callers.errors import CallFailed
from callers.speech.stt import Transcript

ATTEMPTS = 2
INSTALL_HINT = "pip install 'callfleet[serve]'"


def serve_installed() -> bool:
    """Ray's serve extra is installed (Ray itself always is; FastAPI comes with the extra)."""
    return importlib.util.find_spec("fastapi") is not None


class ServeDeploymentConfig(BaseModel):
    """One deployment's size: replicas, and what each one reserves on its node (num_gpus > 0
    runs Whisper on CUDA in float16). Requests wait up to batch_wait_ms for others to join a
    batch of at most max_batch_size. The defaults are for CPU replicas, where a batch saves
    nothing and its segments all wait for its last (stt_batch); on a GPU Whisper's batches pay
    (8-16, a few tens of ms). Piper speaks a batch's lines one after another."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    replicas: int = Field(default=1, ge=1, le=1000, strict=True)
    num_cpus: float = Field(default=1.0, ge=0, le=256, allow_inf_nan=False)
    num_gpus: float = Field(default=0.0, ge=0, le=16, allow_inf_nan=False)
    max_batch_size: int = Field(default=1, ge=1, le=256, strict=True)
    batch_wait_ms: float = Field(default=0.0, ge=0, le=1000, allow_inf_nan=False)


class ServeSpeechConfig(BaseModel):
    """speech.serve: the STT and TTS deployments, and how long a caller waits for one answer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stt: ServeDeploymentConfig = ServeDeploymentConfig()
    tts: ServeDeploymentConfig = ServeDeploymentConfig()
    timeout_s: float = Field(default=10.0, gt=0, le=120, allow_inf_nan=False)


class ServeClient:
    """One deployment handle; a subclass names its failure reason. The handle's methods are
    called as handle.<method>.remote(...) (a fake in tests has the same shape)."""

    reason = ""

    def __init__(self, handle: Any, app: str, timeout_s: float) -> None:
        self.handle = handle
        self.app = app
        self.timeout_s = timeout_s
        self.requests = 0

    async def request(self, method: str, *args: Any) -> Any:
        """handle.method.remote(*args), tried again once after a timeout or an error."""
        error: BaseException | None = None
        for _ in range(ATTEMPTS):
            self.requests += 1
            response = getattr(self.handle, method).remote(*args)
            try:
                async with asyncio.timeout(self.timeout_s):
                    return await response
            except TimeoutError as e:
                _cancel(response)
                error = e
            except Exception as e:  # Ray's errors: the replica died, raised, or shed load
                error = e
        what = ("no answer in time" if isinstance(error, TimeoutError)
                else f"{type(error).__name__}: {first_line(error)}")
        raise CallFailed(self.reason, f"Ray Serve application {self.app}: {what}")

    def close(self) -> None:
        pass  # the run tears the deployments down


def first_line(error: BaseException | None) -> str:
    """A Ray error's first line (its traceback follows), bounded."""
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else ""


def _cancel(response: Any) -> None:
    cancel: Callable[[], Any] | None = getattr(response, "cancel", None)
    if cancel is not None:
        cancel()


class ServeTranscriber(ServeClient):
    """callers.speech.stt.SpeechToText on the run's Whisper deployment."""

    reason = "stt_unavailable"

    async def transcribe(self, audio16k: np.ndarray, prompt: str | None = None, *,
                         needed_in_s: float | None = None) -> Transcript:
        began = time.perf_counter()
        # the deployment decodes the most urgent request it holds first, as stt: batched does
        text = await self.request("transcribe", audio16k, prompt, needed_in_s)
        return Transcript(text, time.perf_counter() - began)


class ServeSynthesizer(ServeClient):
    """callers.speech.tts.TextToSpeech on the run's Piper deployment, in one voice: the bundled one
    (model None) or a Piper model path, which must exist on the deployment's nodes. Made with
    connect(), which asks the deployment for the voice's rate and identity."""

    reason = "tts_unavailable"

    def __init__(self, handle: Any, app: str, timeout_s: float, model: str | None = None,
                 sample_rate: int = 0, voice_id: str = "") -> None:
        super().__init__(handle, app, timeout_s)
        self.model = model
        self.sample_rate = sample_rate
        self.voice_id = voice_id

    @classmethod
    async def connect(cls, handle: Any, app: str, timeout_s: float,
                      model: str | None = None) -> ServeSynthesizer:
        synth = cls(handle, app, timeout_s, model)
        synth.sample_rate, synth.voice_id = await synth.request("describe", model)
        return synth

    async def in_voice(self, model: str | None) -> ServeSynthesizer:
        """The same deployment speaking in another voice."""
        return await ServeSynthesizer.connect(self.handle, self.app, self.timeout_s, model)

    async def synthesize(self, text: str, rate: float = 1.0, variant: int = 0) -> np.ndarray:
        return await self.request("synthesize", text, rate, variant, self.model)
