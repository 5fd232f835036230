"""CallerHost: one async Ray actor per core, running many CallSessions on its event loop."""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from callers.brain import Brain, default_facts
from callers.errors import CallFailed
from callers.llm_brain import LLMBrain
from callers.persona import Persona, resolve_persona
from callers.priority import lower_this_thread, lowered_on_purpose
from callers.record import CallRecord
from callers.scenario import (DEFAULT_SCENARIO, CallFacts, Scenario, facts_for,
                              resolve_scenario)
from callers.script import brain_for
from callers.session import CallerModels, CallSession, SessionLimits, load_caller_models
from callers.transport import Target
from evaluation.audio_quality import score_record, skipped
from orchestration.config import LLMBrainConfig, brain_config

LAG_PROBE_S = 0.05


class LoopLagMonitor:
    """Measures how late the event loop wakes up: a host that can't keep time says so."""

    def __init__(self) -> None:
        self.samples: deque[tuple[float, float]] = deque(maxlen=100_000)  # (monotonic, lag ms)
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._probe(), name="loop-lag-probe")

    async def _probe(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(LAG_PROBE_S)
            now = time.monotonic()
            self.samples.append((now, max(0.0, (now - before - LAG_PROBE_S) * 1000)))

    def p99_since(self, since: float) -> float | None:
        lags = [lag for t, lag in self.samples if t >= since]
        return round(float(np.percentile(lags, 99)), 2) if lags else None


def restore_priority() -> None:
    """Undo Ray's nice 15 for worker processes, on every thread of this process.

    A caller paces 20 ms frames in real time; at nice 15 it loses the CPU to any agent
    process on the same machine and its pacing goes hundreds of ms late (measured: p99
    300-700 ms with 3 calls beside the reference agent, 0 ms at nice 0). Speech inference
    threads stay below the media (callers/priority.py).
    """
    for tid in os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else []:
        try:
            if not lowered_on_purpose(os.getpriority(os.PRIO_PROCESS, int(tid))):
                os.setpriority(os.PRIO_PROCESS, int(tid), 0)
        except (PermissionError, ProcessLookupError, OSError):
            pass  # not root: lowering niceness is not allowed; generator health will show it


def make_brain(section: dict[str, Any] | None, persona: Persona, seed: int,
               facts: CallFacts | None = None) -> Brain:
    """A fresh brain for one call from the spec's brain section (None = scripted)."""
    config = brain_config(section)
    facts = facts or default_facts(persona)
    if isinstance(config, LLMBrainConfig) and not facts.scenario.script:
        return LLMBrain(persona, seed, config, facts=facts)  # reads the key, here only
    return brain_for(persona, seed, facts)  # a scripted scenario decides nothing


def ray_node_id() -> str | None:
    """The Ray node this process runs on (None outside Ray): which machine a call ran on."""
    import ray  # here: callers and benchmarks use hosts without Ray too

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


def freeze_start_up() -> None:
    """Put what start-up made (models, modules, Ray: ~160k objects) out of the collector's
    reach, so that the garbage of finished calls does not pile up between full collections.

    A call's objects form reference cycles (callbacks, cancelled tasks' tracebacks) and live
    through young collections while it runs, so the call in flight at each second-generation
    collection (about every 14th call here) reaches the oldest generation and is freed only by
    a full collection. CPython runs one once the oldest generation's newcomers reach a quarter
    of what it held after the last one; counting start-up's objects there, that did not happen
    in 950 sequential calls, and each call left waiting held ~1 MB (its audio, a PyAV
    resampler and that resampler's 2 libavutil threads): +71 MB RSS and +132 threads over
    1,000 calls (benchmarks/soak.py, results/soak.json). Frozen, they are neither counted nor
    scanned: a full collection comes after ten second-generation ones (~150 calls) and costs
    only what came since (results/soak_gc_freeze_200.json: RSS flat from call 150 on).
    """
    gc.collect()  # start-up's own garbage goes first, not into the frozen set
    gc.freeze()
    gc.collect()  # the quarter is now reckoned against what is not frozen (nothing yet)


def _score_niced(record: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    lower_this_thread()  # yields the core to the calls still pacing on it
    return score_record(record, run_dir)


class CallerHostImpl:
    """Loads the speech models once; places calls given as plain dict specs."""

    def __init__(self, run_dir: str, null_call_s: float | None = None,
                 stt: str = "local", stt_openai: dict[str, Any] | None = None,
                 tts: str = "piper", tts_openai: dict[str, Any] | None = None,
                 serve: dict[str, Any] | None = None) -> None:
        """stt: the run config's speech.stt ("none": no Whisper is loaded; script scenarios;
        "openai": stt_openai, its speech.openai section, says where the service is); tts:
        its speech.tts ("openai": tts_openai, its speech.openai_tts section); serve: where
        the run's Ray Serve speech deployments are, for stt or tts serve."""
        restore_priority()
        self.run_dir = Path(run_dir)
        self.null_call_s = null_call_s
        self.stt = stt
        self.stt_openai = stt_openai
        self.tts = tts
        self.tts_openai = tts_openai
        self.serve = serve
        self.models: CallerModels | None = None
        self.personas: dict[str, Persona] = {}
        self.scenarios: dict[str, Scenario] = {}
        self.lag = LoopLagMonitor()
        self.active = 0
        self._loading = asyncio.Lock()
        self.node_id = ray_node_id()
        # One thread scores finished calls' audio (evaluation/audio_quality.py), one at a time.
        self._scoring = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mos")

    async def ready(self) -> dict[str, Any]:
        """Load models (unless null calls); returns this host's identity."""
        self.lag.start()
        restore_priority()  # again: threads created since __init__
        if self.null_call_s is None:
            async with self._loading:
                if self.models is None:
                    self.models = await load_caller_models(
                        stt=self.stt, openai=self.stt_openai,
                        tts=self.tts, openai_tts=self.tts_openai, serve=self.serve)
                    if self.node_id is not None:  # a process of its own (a Ray actor)
                        freeze_start_up()
        return {"pid": os.getpid(), "node": os.uname().nodename, "node_id": self.node_id}

    async def place(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Run one call to its end and return its CallRecord as a dict (never raises)."""
        self.lag.start()
        began = time.monotonic()
        self.active += 1
        try:
            if self.null_call_s is not None:
                record = await self._null_call(spec)
            else:
                record = await self._real_call(spec)
        except Exception as e:  # last line of defence: a record, not an exception
            # A named failure before the call (a speech service the host could not reach
            # while loading) keeps its reason.
            named = isinstance(e, CallFailed)
            record = CallRecord(call_id=spec["call_id"], persona=spec["persona"],
                                scenario=spec.get("scenario", ""), seed=spec["seed"],
                                status="failed",
                                failure_reason=e.reason if named else "caller_error",
                                failure_detail=e.detail if named
                                else f"{type(e).__name__}: {e}").to_dict()
        finally:
            self.active -= 1
        record["generator"] = {**(record.get("generator") or {}),
                               "loop_lag_ms_p99": self.lag.p99_since(began),
                               "host_pid": os.getpid(), "host_node_id": self.node_id}
        record["phase"] = spec.get("phase")
        return record

    async def _real_call(self, spec: dict[str, Any]) -> dict[str, Any]:
        await self.ready()
        assert self.models is not None
        persona = self.personas.get(spec["persona"])
        if persona is None:
            persona = self.personas[spec["persona"]] = resolve_persona(spec["persona"])
        name = spec.get("scenario") or DEFAULT_SCENARIO
        scenario = self.scenarios.get(name)
        if scenario is None:
            scenario = self.scenarios[name] = resolve_scenario(name)
        facts = facts_for(scenario, persona.facts, persona.id)
        brain = make_brain(spec.get("brain"), persona, spec["seed"], facts)
        try:
            session = CallSession(
                persona, spec["seed"], Target(**spec["target"]), self.models,
                call_id=spec["call_id"],
                audio_path=(self.run_dir / "audio" / f"{spec['call_id']}.wav"
                            if spec.get("audio", True) else None),  # --no-audio
                limits=SessionLimits(max_call_s=spec.get("max_call_s", 240.0)),
                brain=brain, concurrency_at_start=spec.get("concurrency_at_start", 1),
            )
            record = (await session.run()).to_dict()
        finally:
            await brain.aclose()  # one HTTP client per call, closed with it
        record["audio_quality"] = await self._audio_quality(spec, record)
        return record

    async def _audio_quality(self, spec: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
        """MOS of the agent's speech, once the call is over: here, where the recording was
        written (a cluster's driver may not see it), one host per core scoring in parallel;
        in a low-priority thread, off the loop that paces this host's other calls."""
        if not spec.get("audio_quality", True):
            return skipped("off")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._scoring, _score_niced, record, self.run_dir)

    async def _null_call(self, spec: dict[str, Any]) -> dict[str, Any]:
        """No media: a timed wait through the same scheduler and result path."""
        record = CallRecord(call_id=spec["call_id"], persona=spec["persona"], seed=spec["seed"],
                            scenario=spec.get("scenario", ""),
                            concurrency_at_start=spec.get("concurrency_at_start", 1),
                            started_at=time.time())
        await asyncio.sleep(self.null_call_s or 0.0)
        record.status, record.duration_s = "completed", self.null_call_s or 0.0
        return record.to_dict()

    async def usage(self) -> dict[str, float]:
        """CPU seconds used and resident memory of this host process (for benchmarks)."""
        ru = resource.getrusage(resource.RUSAGE_SELF)
        with open("/proc/self/statm") as f:
            rss_pages = int(f.read().split()[1])
        return {"cpu_s": ru.ru_utime + ru.ru_stime,
                "rss_mb": rss_pages * os.sysconf("SC_PAGE_SIZE") / 2**20, "active": self.active}

    async def thread_cpu(self) -> dict[int, tuple[str, float]]:
        """CPU seconds of each live thread of this process (for benchmarks/capacity.py)."""
        return thread_cpu_s()

    async def resources(self, by_type: bool = False) -> dict[str, Any]:
        """usage(), and what a long-lived host must not accumulate call after call: open file
        descriptors, asyncio tasks on this loop, Python and native threads, live Python
        objects (benchmarks/soak.py); by_type: the objects counted per type name too."""
        held: dict[str, Any] = {**await self.usage(), **held_resources()}
        if by_type:
            held["gc_objects_by_type"] = dict(Counter(type(o).__name__ for o in gc.get_objects()))
        return held


def held_resources() -> dict[str, int]:
    """This process's open fds, its loop's asyncio tasks (the caller's own included), its
    Python threads and native threads (Ray's, onnxruntime's too), gc-tracked objects."""
    def count(path: str) -> int:
        return len(os.listdir(path)) if os.path.isdir(path) else -1  # -1: no /proc here

    return {"fds": count("/proc/self/fd"), "tasks": len(asyncio.all_tasks()),
            "threads": threading.active_count(), "native_threads": count("/proc/self/task"),
            "gc_objects": len(gc.get_objects())}


def thread_cpu_s() -> dict[int, tuple[str, float]]:
    """Each live thread of this process by native id: its Python thread name and the CPU
    seconds it has used. Threads Python did not start are "speech-native" when they run at
    the inference priority (CTranslate2's and onnxruntime's, callers/priority.py), else
    "native" (Ray's)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    threads = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # the name may hold spaces
        except OSError:
            continue  # the thread ended meanwhile
        utime, stime, nice = int(fields[11]), int(fields[12]), int(fields[16])  # 14, 15, 19
        native = "speech-native" if lowered_on_purpose(nice) else "native"
        threads[int(tid)] = (names.get(int(tid), native), (utime + stime) / tick)
    return threads
