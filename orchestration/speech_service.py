"""The run's shared speech deployments on Ray Serve (`speech: {stt: serve, tts: serve}`):
started before the caller hosts, deleted when the run ends; callers.speech.serve_speech is
the hosts' side. Needs callfleet[serve] (Ray's serve extra); imported only when a run asks for it.

Whisper takes requests through callers.speech.stt_batch's batcher, as `stt: batched` does in a
host: the most urgent first (the request carries when its caller's reply is due; Serve's own
@serve.batch is first come, first served), decoded together through its short window (padding
to the longest segment, a loop decoded again alone); on a GPU (num_gpus > 0) it runs CUDA
float16, where batches pay. Piper speaks a batch's lines one after
another (espeak-ng is not thread-safe); its replicas are how it scales. No HTTP proxy is started:
hosts call the deployments through handles, inside the cluster.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict
from typing import Any

import numpy as np
import ray
from ray import serve

from callers.audio import STT_RATE
from callers.speech.serve_speech import ServeDeploymentConfig, ServeSpeechConfig
from callers.speech.stt_batch import BatchedTranscriber, BatchStats
from callers.speech.tts import Synthesizer

log = logging.getLogger(__name__)

CONTROLLER = ("SERVE_CONTROLLER_ACTOR", "serve")  # Serve's controller actor: name, namespace
MAX_ONGOING = 32
STATS_ASKS = 8  # stats requests per replica at the run's end (Serve picks the replica)


class WhisperReplica:
    """Whisper tiny.en (the bundled model) on one replica."""

    def __init__(self, num_gpus: float, max_batch_size: int, batch_wait_ms: float,
                 num_cpus: float = 1.0) -> None:
        # CTranslate2 gets the cores the replica reserved (one at least).
        self.stt = BatchedTranscriber(device="cuda" if num_gpus > 0 else "cpu",
                                      cpu_threads=max(1, int(num_cpus)),
                                      window_ms=batch_wait_ms, max_batch=max_batch_size)
        self.stt.decode_batch([(np.zeros(STT_RATE, np.int16), None)])  # the first decode is slow
        self.stt.stats = BatchStats()

    async def transcribe(self, audio16k: np.ndarray, prompt: str | None,
                         needed_in_s: float | None = None) -> str:
        """A request cancelled by its caller (timed out) is dropped before its decode."""
        return (await self.stt.transcribe(audio16k, prompt, needed_in_s=needed_in_s)).text

    def stats(self) -> dict[str, Any]:
        return {"replica": _replica_id(), **asdict(self.stt.stats)}


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
        return {"replica": _replica_id(), "lines": self.lines}


def _replica_id() -> str:
    try:
        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # outside a Serve replica (a unit test)
        return "local"


def merged_stats(kind: str, per_replica: list[dict[str, Any]]) -> dict[str, Any]:
    """One deployment's counts summed over its replicas (each reported once)."""
    sums: dict[str, float] = {}
    for counts in per_replica:
        for key, value in counts.items():
            if key != "replica":
                sums[key] = sums.get(key, 0) + value
    out = BatchStats(**sums).as_dict() if kind == "stt" else sums
    return {**out, "replicas_reporting": len(per_replica)}


def _deployment(cls: type, options: ServeDeploymentConfig, name: str, **args: Any):
    return serve.deployment(
        cls, name=name, num_replicas=options.replicas,
        ray_actor_options={"num_cpus": options.num_cpus, "num_gpus": options.num_gpus},
        # Requests in hand per replica: a few batches, and enough that the most urgent among
        # them goes first (the rest queue at the callers' handles, first come first served).
        max_ongoing_requests=max(MAX_ONGOING, 4 * options.max_batch_size),
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
        """Each application's counts over its replicas, for the run summary. A handle call
        reaches one replica, chosen by Serve: asking STATS_ASKS times per replica reaches each
        one with odds ~1 - e^-8 (replicas_reporting says how many did)."""
        out = {}
        for kind, name in self.names.items():
            replicas = getattr(self.config, kind).replicas
            try:
                handle = serve.get_app_handle(name)
                asks = [handle.stats.remote() for _ in range(STATS_ASKS * replicas)]
                seen = {s["replica"]: s for s in (a.result(timeout_s=10) for a in asks)}
                out[kind] = {**merged_stats(kind, list(seen.values())), "replicas": replicas}
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
