"""Speech as Ray Serve deployments shared by every CallerHost of the cluster (`speech: {stt:
serve}`, `{tts: serve}`): the run starts them before its hosts and deletes them at its end.

STT: each replica gathers the segments that reach it within batch_wait_timeout_s (up to
max_batch_size) with `@serve.batch` and decodes them in one CTranslate2 batch
(callers.stt_batch.BatchedTranscriber.decode_all), on a GPU when given one. Hosts then do only
media. TTS: each replica is one Piper voice on one synthesis thread (espeak-ng is not
thread-safe); requests are not batched but queue on that thread, first come first served, so
each returns as soon as its own synthesis ends. Hosts still cache what they are given
(callers.tts_cache), so a phrase crosses the network once per host.

No HTTP: the apps have no route (route_prefix=None), Serve runs without proxies, and hosts
reach the deployments through handles (callers.serve_speech). Each run names its apps after
its run id, so two runs on one cluster neither share nor delete each other's.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
from ray import serve

from callers.audio import STT_RATE
from callers.stt_batch import BatchedTranscriber, BatchStats
from callers.tts import Synthesizer
from orchestration.priority import restore_priority

if TYPE_CHECKING:  # the replicas import this module: they need no config (nor openai)
    from orchestration.config import ServeSpeechConfig, SpeechConfig

log = logging.getLogger(__name__)

STT_DEPLOYMENT = "SpeechToText"
TTS_DEPLOYMENT = "TextToSpeech"
TTS_QUEUE = 64  # requests a TTS replica holds (they queue on its one thread)


@serve.deployment(name=STT_DEPLOYMENT)
class WhisperReplica:
    """Whisper; decodes the segments of one `@serve.batch` together."""

    def __init__(self, cpu_threads: int, device: str, max_batch_size: int,
                 batch_wait_timeout_s: float) -> None:
        restore_priority()  # a call waits on this decode in real time
        self.whisper = BatchedTranscriber(cpu_threads=cpu_threads, device=device)
        # A process's first decode is several times slower: not on the first call's turn.
        self.whisper.decode_all([(np.zeros(STT_RATE, np.int16), None)])
        self.whisper.stats = BatchStats()
        self.transcribe.set_max_batch_size(max_batch_size)
        self.transcribe.set_batch_wait_timeout_s(batch_wait_timeout_s)
        self.batch_sizes: Counter[int] = Counter()  # size -> batches of that size
        self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stt-serve")

    @serve.batch
    async def transcribe(self, audios: list[np.ndarray], prompts: list[str | None]) -> list[str]:
        self.batch_sizes[len(audios)] += 1
        loop = asyncio.get_running_loop()
        texts = await loop.run_in_executor(self._decoder, self.whisper.decode_all,
                                           list(zip(audios, prompts, strict=True)))
        return [t.text for t in texts]

    async def stats(self) -> dict[str, Any]:
        """How many batches of each size were decoded so far, and BatchedTranscriber's
        counts."""
        return {"batch_sizes": dict(self.batch_sizes), **self.whisper.stats.as_dict()}


@serve.deployment(name=TTS_DEPLOYMENT)
class PiperReplica:
    """The bundled Piper voice on one synthesis thread; requests queue on it in order."""

    def __init__(self, intra_op_threads: int) -> None:
        restore_priority()
        self.piper = Synthesizer(intra_op_threads=intra_op_threads)
        self.piper.synthesize_sync("Hello, how can I help you?")  # the slow first one

    async def voice(self) -> dict[str, Any]:
        return {"sample_rate": self.piper.sample_rate, "voice_id": self.piper.voice_id}

    async def synthesize(self, text: str, rate: float, variant: int) -> np.ndarray:
        return await self.piper.synthesize(text, rate, variant)


def _applications(options: ServeSpeechConfig, served: list[str]) -> dict[str, Any]:
    """side -> its bound Serve application."""
    threads = max(1, round(options.num_cpus))
    # Deleted when the run ends, its hosts gone: no request left to drain (Serve's default
    # checks every 2 s).
    shutdown = {"graceful_shutdown_wait_loop_s": 0.2, "graceful_shutdown_timeout_s": 5}
    apps: dict[str, Any] = {}
    if "stt" in served:
        apps["stt"] = WhisperReplica.options(
            num_replicas=options.num_replicas, **shutdown,
            # one batch decoding while the next gathers
            max_ongoing_requests=2 * options.max_batch_size,
            ray_actor_options={"num_cpus": options.num_cpus, "num_gpus": options.num_gpus},
        ).bind(threads, "cuda" if options.num_gpus > 0 else "cpu", options.max_batch_size,
               options.batch_wait_timeout_s)
    if "tts" in served:
        apps["tts"] = PiperReplica.options(
            num_replicas=options.num_replicas, max_ongoing_requests=TTS_QUEUE, **shutdown,
            ray_actor_options={"num_cpus": options.num_cpus},
        ).bind(threads)
    return apps


def start_speech_service(speech: SpeechConfig, run_id: str) -> dict[str, dict[str, Any]]:
    """Deploy the sides `speech` serves (blocking until their replicas are up) and return what
    hosts need to reach them: side -> {app, deployment, timeout_s (, sample_rate, voice_id)}.
    Nothing served: {}. On failure, whatever was deployed is deleted again."""
    served = speech.served()
    if not served:
        return {}
    options = speech.serve_options()
    serve.start(proxy_location="Disabled", http_options={"host": "127.0.0.1"},
                logging_config={"log_level": "WARNING"})
    settings = {side: {"app": f"callfleet-{side}-{run_id}", "timeout_s": options.timeout_s,
                       "deployment": STT_DEPLOYMENT if side == "stt" else TTS_DEPLOYMENT}
                for side in served}
    try:
        apps = _applications(options, served)
        # Together: the replicas load their models at the same time.
        handles = dict(zip(apps, serve.run_many(
            [serve.RunTarget(app, name=settings[side]["app"], route_prefix=None)
             for side, app in apps.items()]), strict=True))
        if "tts" in handles:  # the voice's rate and identity, asked once for every host
            settings["tts"].update(handles["tts"].voice.remote().result(timeout_s=60))
    except BaseException:
        stop_speech_service(settings)
        raise
    return settings


def stop_speech_service(settings: dict[str, dict[str, Any]]) -> None:
    """Delete the run's apps (their replicas stop); Serve itself too once no app is left."""
    if not settings:
        return
    for side in settings.values():
        try:
            serve.delete(side["app"])
        except Exception:  # the run is ending: say so, and delete the rest
            log.exception("deleting Ray Serve app %s failed", side["app"])
    try:
        if not serve.status().applications:
            serve.shutdown()
    except Exception:
        log.exception("shutting Ray Serve down failed")
