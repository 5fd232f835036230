"""The run's shared speech deployments on Ray Serve (`speech: {stt: serve, tts: serve}`):
started before the caller hosts, deleted when the run ends; callers.speech.serve_speech is
the hosts' side. Needs callfleet[serve] (Ray's serve extra); imported only when a run asks for it.

Whisper takes requests in @serve.batch batches, decoded together through the short window of
callers.speech.stt_batch (padding to the longest segment, a loop decoded again alone); on a GPU
(num_gpus > 0) it runs CUDA float16, where batches pay. Piper speaks a batch's lines one after
another (espeak-ng is not thread-safe); its replicas are how it scales. No HTTP proxy is started:
hosts call the deployments through handles, inside the cluster.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
import ray
from ray import serve

from callers.audio import STT_RATE
from callers.speech.serve_speech import ServeDeploymentConfig, ServeSpeechConfig
from callers.speech.stt_batch import MAX_BATCH_S, BatchedTranscriber, BatchStats
from callers.speech.tts import Synthesizer

log = logging.getLogger(__name__)

CONTROLLER = ("SERVE_CONTROLLER_ACTOR", "serve")  # Serve's controller actor: name, namespace


class WhisperReplica:
    """Whisper tiny.en (the bundled model) on one replica."""

    def __init__(self, num_gpus: float, max_batch_size: int, batch_wait_ms: float,
                 num_cpus: float = 1.0) -> None:
        # CTranslate2 gets the cores the replica reserved (one at least).
        self.stt = BatchedTranscriber(device="cuda" if num_gpus > 0 else "cpu",
                                      cpu_threads=max(1, int(num_cpus)))
        self.transcribe_batch.set_max_batch_size(max_batch_size)
        self.transcribe_batch.set_batch_wait_timeout_s(batch_wait_ms / 1000)
        self.stt.decode_batch([(np.zeros(STT_RATE, np.int16), None)])  # the first decode is slow
        self.stt.stats = BatchStats()

    async def transcribe(self, audio16k: np.ndarray, prompt: str | None) -> str:
        if audio16k.size > MAX_BATCH_S * STT_RATE:  # longer than Whisper's window: alone
            return (await self.stt.alone.transcribe(audio16k, prompt)).text
        return await self.transcribe_batch(audio16k, prompt)

    @serve.batch  # sizes set per replica in __init__
    async def transcribe_batch(self, audios: list[np.ndarray],
                               prompts: list[str | None]) -> list[str]:
        items = list(zip(audios, prompts, strict=True))
        return [t.text for t in await asyncio.to_thread(self.stt.decode_batch, items)]

    def stats(self) -> dict[str, Any]:
        return self.stt.stats.as_dict()


class PiperReplica:
    """Piper voices on one replica: the bundled one, and any model path asked for (loaded on
    first use; it must exist on this node)."""

    def __init__(self, max_batch_size: int, batch_wait_ms: float) -> None:
        self.voices = {None: Synthesizer()}
        self.synthesize_batch.set_max_batch_size(max_batch_size)
        self.synthesize_batch.set_batch_wait_timeout_s(batch_wait_ms / 1000)
        self.lines = 0

    def _voice(self, model: str | None) -> Synthesizer:
        if model not in self.voices:
            self.voices[model] = Synthesizer(model)
        return self.voices[model]

    async def describe(self, model: str | None) -> tuple[int, str]:
        voice = await asyncio.to_thread(self._voice, model)
        return voice.sample_rate, voice.voice_id

    async def synthesize(self, text: str, rate: float, variant: int,
                         model: str | None) -> np.ndarray:
        return await self.synthesize_batch(text, rate, variant, model)

    @serve.batch
    async def synthesize_batch(self, texts: list[str], rates: list[float], variants: list[int],
                               models: list[str | None]) -> list[np.ndarray]:
        out = []
        for text, rate, variant, model in zip(texts, rates, variants, models, strict=True):
            voice = await asyncio.to_thread(self._voice, model)
            out.append(await voice.synthesize(text, rate, variant))
        self.lines += len(out)
        return out

    def stats(self) -> dict[str, Any]:
        return {"lines": self.lines}


def _deployment(cls: type, options: ServeDeploymentConfig, name: str, **args: Any):
    return serve.deployment(
        cls, name=name, num_replicas=options.replicas,
        ray_actor_options={"num_cpus": options.num_cpus, "num_gpus": options.num_gpus},
        # Enough requests in hand per replica to fill a few batches; the rest queue at the
        # callers' handles.
        max_ongoing_requests=max(16, 4 * options.max_batch_size),
    ).bind(**args)


def app_names(run_id: str) -> dict[str, str]:
    return {"stt": f"callfleet-stt-{run_id}", "tts": f"callfleet-tts-{run_id}"}


class SpeechService:
    """The run's Serve applications: start() deploys (and waits for the replicas to load their
    models), stop() deletes them; Serve itself is shut down only if this run started it on a
    cluster that outlives the run (ray_ends_with_run: a local Ray takes Serve down with it,
    and shutting Serve first only makes Ray print a controller task's failure)."""

    def __init__(self, config: ServeSpeechConfig, run_id: str, *, stt: bool, tts: bool,
                 ray_ends_with_run: bool = False) -> None:
        self.config = config
        self.names = {k: v for k, v in app_names(run_id).items() if {"stt": stt, "tts": tts}[k]}
        self.ray_ends_with_run = ray_ends_with_run
        self._started_serve = False

    def hosts_view(self) -> dict[str, Any]:
        """What a caller host needs to reach the deployments (plain data)."""
        return {"apps": dict(self.names), "timeout_s": self.config.timeout_s}

    def start(self) -> None:
        logging.getLogger("ray.serve").setLevel(logging.WARNING)  # not a line per deploy
        try:
            ray.get_actor(*CONTROLLER)  # a cluster's own Serve: ours joins it, and leaves it up
        except ValueError:
            self._started_serve = True
        serve.start(proxy_location="Disabled")
        c = self.config
        apps = []
        if "stt" in self.names:
            apps.append((_deployment(WhisperReplica, c.stt, "whisper",
                                     num_cpus=c.stt.num_cpus, num_gpus=c.stt.num_gpus,
                                     max_batch_size=c.stt.max_batch_size,
                                     batch_wait_ms=c.stt.batch_wait_ms), self.names["stt"]))
        if "tts" in self.names:
            apps.append((_deployment(PiperReplica, c.tts, "piper",
                                     max_batch_size=c.tts.max_batch_size,
                                     batch_wait_ms=c.tts.batch_wait_ms), self.names["tts"]))
        for app, name in apps:
            serve.run(app, name=name, route_prefix=None, blocking=False)

    def stats(self) -> dict[str, Any]:
        """Each application's replica stats (one replica's: a sample), for the run summary."""
        out = {}
        for kind, name in self.names.items():
            try:
                out[kind] = serve.get_app_handle(name).stats.remote().result(timeout_s=10)
            except Exception as e:
                out[kind] = {"error": type(e).__name__}
        return out

    def stop(self) -> None:
        for name in self.names.values():
            try:
                serve.delete(name)
            except Exception as e:
                log.warning("could not delete Serve application %s: %s", name, type(e).__name__)
        if self._started_serve and not self.ray_ends_with_run:
            serve.shutdown()
