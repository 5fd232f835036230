"""Speech on Ray Serve deployments shared by every host of the cluster (`speech: {stt: serve}`,
`{tts: serve}`; orchestration/speech_service.py starts them for the run): the clients that
implement SpeechToText and TextToSpeech over a DeploymentHandle.

A request carries everything its answer depends on (the segment and its prompt; the text, rate
and variant), so a replica keeps no state of any call. Each try is bounded by timeout_s and a
failed or slow one is tried once more; then the call fails as `stt_unavailable` or
`tts_unavailable` with what went wrong: a call that cannot hear or speak cannot be graded, and
must not hang. Ray is imported here only when a client is made: callers/ needs no Ray otherwise.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np

from callers.errors import CallFailed
from callers.stt import Transcript

ATTEMPTS = 2


def _serve():
    try:
        from ray import serve
    except ModuleNotFoundError as e:
        raise ImportError("speech: serve needs Ray Serve: pip install 'callfleet[serve]'") from e
    return serve


class ServeSpeechClient:
    """Base of one speech deployment's client; a subclass names its failure reason.

    settings: what orchestration/speech_service.py hands the hosts: app, deployment, timeout_s
    (and the voice's sample_rate and voice_id for TTS). Made off the event loop: looking the
    deployment up asks Serve's controller, and fails here if the run's app is not there.
    """

    reason = ""  # a FAILURE_REASONS entry: stt_unavailable, tts_unavailable

    def __init__(self, settings: dict[str, Any], handle: Any = None) -> None:
        self.settings = settings
        self.app, self.timeout_s = settings["app"], float(settings["timeout_s"])
        self.requests = 0
        self._handle = handle or _serve().get_deployment_handle(settings["deployment"],
                                                                self.app)

    def failed(self, what: str) -> CallFailed:
        return CallFailed(self.reason, f"Ray Serve app {self.app}: {what}")

    async def request(self, method: str, *args: Any) -> Any:
        """handle.method.remote(*args), tried again once after a timeout or a Ray error."""
        from ray.exceptions import RayError
        from ray.serve.exceptions import RayServeException

        error: BaseException | None = None
        for _ in range(ATTEMPTS):
            self.requests += 1
            response = None
            try:
                # a handle's first request finds Serve's controller: that too can fail
                response = getattr(self._handle, method).remote(*args)
                async with asyncio.timeout(self.timeout_s):
                    return await response
            except (TimeoutError, asyncio.CancelledError) as e:
                if response is not None:  # the replica need not finish what nobody waits for
                    response.cancel()
                if isinstance(e, asyncio.CancelledError):  # the call ended: not ours to keep
                    raise
                error = e
            except (RayError, RayServeException) as e:
                error = e
        raise self.failed("no answer in time" if isinstance(error, TimeoutError)
                          else f"{type(error).__name__}: {str(error)[:200]}")

    def close(self) -> None:
        """Nothing to release: the deployment belongs to the run."""


class ServeTranscriber(ServeSpeechClient):
    """callers.stt.SpeechToText on the run's STT deployment: a replica decodes the segments
    of every host's calls that reach it together, in one batch."""

    reason = "stt_unavailable"

    async def transcribe(self, audio16k: np.ndarray, prompt: str | None = None) -> Transcript:
        began = time.perf_counter()
        text = await self.request("transcribe", np.ascontiguousarray(audio16k, np.int16),
                                  prompt or None)
        return Transcript(text, time.perf_counter() - began)


class ServeSynthesizer(ServeSpeechClient):
    """callers.tts.TextToSpeech on the run's TTS deployment (one Piper voice for every persona,
    as with a TTS service: personas' Piper model paths do not apply)."""

    reason = "tts_unavailable"

    @property
    def sample_rate(self) -> int:
        return int(self.settings["sample_rate"])

    @property
    def voice_id(self) -> str:
        """Which voice, in cache keys: the replica's Piper model."""
        return f"serve:{self.settings['voice_id']}"

    def cache_key(self, text: str, rate: float = 1.0, variant: int = 0) -> tuple:
        return (self.voice_id, text, round(rate, 4), variant, self.sample_rate)

    async def synthesize(self, text: str, rate: float = 1.0, variant: int = 0) -> np.ndarray:
        # a copy: what Ray hands back is a read-only view of its object store
        return np.array(await self.request("synthesize", text, rate, variant), dtype=np.int16)
