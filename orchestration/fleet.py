"""The driver: Ray hosts, the load schedule, and durable, exactly-once accounting of results."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import ray
from ray._private import ray_constants
from ray.exceptions import GetTimeoutError, RayActorError, RayError

from callers.errors import ConfigError
from callers.persona import resolve_persona
from callers.speech.serve_speech import first_line
from callers.scenario import resolve_scenario
from callers.record import CallRecord
from callers.transport import Target
from evaluation.llm_judge import LLMJudge
from evaluation.scoring import score_call
from orchestration.config import RunConfig
from orchestration.host import CallerHostImpl
from orchestration.live_metrics import LiveMetrics
from orchestration.profile import build_steps
from orchestration.scheduler import SchedulerStats, run_schedule
from orchestration.store import RunStore
from orchestration.tracing import record_tracer

log = logging.getLogger(__name__)

HOST_READY_TIMEOUT_S = 180.0  # model loading on a busy node
CALL_GRACE_S = 60.0  # beyond a call's own limit before the driver gives up on its host


def start_ray(address: str | None = None) -> None:
    """Local runs start Ray here; cluster runs join `address` (or RAY_ADDRESS)."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    else:
        # A machine's own Ray stays on 127.0.0.1: by default its daemons listen on every
        # interface and its agents on the machine's routable address. Ray's own switch for
        # single-machine clusters (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0), read at call time by
        # ray._private.services; the daemons and workers are handed the address it gives.
        ray_constants.ENABLE_RAY_CLUSTER = False
        ray.init(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
        _local_ray.append(True)


_local_ray: list[bool] = []  # start_ray started this process's own Ray (it ends with it)


@dataclass
class HostSlot:
    actor: Any
    in_flight: int = 0
    alive: bool = True
    node_id: str | None = None  # the Ray node it runs on, once it said so


@dataclass
class HostPool:
    """CallerHosts spread over the cluster; a lost host is replaced and the run goes on."""

    run_dir: str
    null_call_s: float | None
    stt: str = "local"  # the run config's speech.stt: "none" loads no Whisper
    stt_openai: dict[str, Any] | None = None  # speech.openai, for stt: openai
    tts: str = "piper"  # the run config's speech.tts
    tts_openai: dict[str, Any] | None = None  # speech.openai_tts, for tts: openai
    serve: dict[str, Any] | None = None  # the run's Serve speech apps, for stt/tts: serve
    hosts: list[HostSlot] = field(default_factory=list)
    replaced: int = 0

    def _new_actor(self):
        remote = ray.remote(CallerHostImpl).options(
            num_cpus=1, max_concurrency=100_000, max_restarts=0, scheduling_strategy="SPREAD",
            # Ray runs actors on uvloop when it is installed (callfleet[serve] brings it):
            # hosts keep asyncio's loop, the one every capacity figure was measured on.
            runtime_env={"env_vars": {"RAY_USE_UVLOOP": "0"}},
        )
        return remote.remote(self.run_dir, self.null_call_s, self.stt, self.stt_openai,
                             self.tts, self.tts_openai, self.serve)

    async def start(self, count: int) -> None:
        self.hosts = [HostSlot(self._new_actor()) for _ in range(count)]
        ready = await asyncio.wait_for(
            asyncio.gather(*(h.actor.ready.remote() for h in self.hosts)), HOST_READY_TIMEOUT_S
        )
        for host, info in zip(self.hosts, ready, strict=True):
            host.node_id = info.get("node_id")

    def pick(self) -> HostSlot:
        alive = [h for h in self.hosts if h.alive]
        return min(alive, key=lambda h: h.in_flight)

    def replace(self, dead: HostSlot) -> None:
        if not dead.alive:
            return
        dead.alive = False
        self.hosts.append(HostSlot(self._new_actor()))  # it loads its models on first call
        self.replaced += 1

    def kill_one(self) -> None:
        """For fault tests: kill the busiest host."""
        victim = max((h for h in self.hosts if h.alive), key=lambda h: h.in_flight)
        ray.kill(victim.actor, no_restart=True)

    def shutdown(self) -> None:
        for host in self.hosts:
            try:
                ray.kill(host.actor, no_restart=True)
            except RayError:
                pass


def plan_specs(config: RunConfig, target: Target) -> list[dict[str, Any]]:
    """Every planned call as a plain spec: personas and scenarios interleaved in proportion to
    their weights, or (mix: matrix) every scenario x persona pair in turn."""
    target_fields = asdict(target)  # plain fields: the token's variable name only
    brain = config.brain.model_dump()  # the key's variable name only; hosts read the key
    total = config.load.total_calls
    if config.mix == "matrix":
        pairs = [(p, s) for s in config.scenarios for p in config.personas]
        chosen = [pairs[i % len(pairs)] for i in range(total)]
    else:
        chosen = list(zip(_interleaved(config.personas, total),
                          _interleaved(config.scenarios, total), strict=True))
    # The embedded reference agent speaks every scenario's flow: each call asks for its own.
    flows = ({name: resolve_scenario(name).flow for name in config.scenarios}
             if config.target.url == "reference" else {})
    specs = []
    for i, (persona, scenario) in enumerate(chosen):
        fields = target_fields
        if flows.get(scenario):
            fields = {**target_fields, "url": _url_for_flow(target, flows[scenario])}
        specs.append({"call_id": f"c{i:05d}-{resolve_persona(persona).id}", "persona": persona,
                      "scenario": scenario, "seed": config.seed * 100_003 + i,
                      "target": fields, "brain": brain, "max_call_s": config.fleet.max_call_s,
                      "audio": config.fleet.audio,
                      "audio_quality": config.evaluation.audio_quality})
    return specs


def _url_for_flow(target: Target, flow: str) -> str:
    """The embedded agent's URL for a call of this flow: `?flow=NAME` on its HTTP and
    WebSocket endpoints, the Request-URI's user over SIP (sip:NAME@host:port)."""
    if target.transport == "sip":
        return "sip:" + flow + "@" + target.url.partition("@")[2]
    return f"{target.url}?flow={flow}"


def _interleaved(weights: dict[str, float], n: int) -> list[str]:
    """n names in proportion to their weights: the one furthest behind its share goes next
    (deterministic, every one used)."""
    total = sum(weights.values())
    used = dict.fromkeys(weights, 0)
    out = []
    for i in range(n):
        name = max(weights, key=lambda k: weights[k] / total * (i + 1) - used[k])
        used[name] += 1
        out.append(name)
    return out


class Fleet:
    """Runs one RunConfig against one target; every record lands in the store exactly once."""

    def __init__(self, config: RunConfig, target: Target, store: RunStore,
                 live: LiveMetrics | None = None) -> None:
        self.config = config
        self.target = target
        self.store = store
        self.stats = SchedulerStats()
        self.records: dict[str, dict[str, Any]] = {}
        self.pool = HostPool(str(store.run_dir.resolve()), config.fleet.null_call_s,
                             stt=config.speech.stt, stt_openai=config.speech.openai_dict(),
                             tts=config.speech.tts, tts_openai=config.speech.openai_tts_dict())
        self.stop = asyncio.Event()
        self.speech_stats: dict[str, Any] | None = None  # the Serve replicas' own counts
        judge = config.evaluation.judge  # asked here, in the driver: only it grades
        self.judge = LLMJudge(judge) if judge is not None else None
        self._grading: set[asyncio.Task] = set()
        self.live = live  # Prometheus metrics while the run goes (None: off)
        # A trace per call to an OTLP collector (None: tracing off, nothing imported).
        self.tracer = record_tracer(config.tracing)
        self._host_of: dict[str, str] = {}  # call_id -> host label, for live metrics
        # Called once per stored record, after the store (orchestration/progress.py's tally).
        self.observers: list[Callable[[dict[str, Any]], None]] = []
        if live is not None:
            live.track(self.stats)

    async def run(self, hosts: int | None = None, spare_cores: int = 0) -> list[dict[str, Any]]:
        """Place every planned call; one host per core unless told (spare_cores left free)."""
        specs = plan_specs(self.config, self.target)
        speech = await self._start_speech_service()  # before hosts: its replicas take CPUs
        cores = int(ray.available_resources().get("CPU", 1))
        count = hosts or self.config.fleet.hosts or max(1, cores - spare_cores)
        try:
            await self.pool.start(count)
            await run_schedule(
                specs, build_steps(self.config.load),
                max_concurrency=self.config.load.max_concurrency,
                calls_per_second=self.config.load.calls_per_second,
                place=self._place, on_record=self._record, stats=self.stats, stop=self.stop,
            )
        finally:
            self.pool.shutdown()
            if speech is not None:
                self.speech_stats = await asyncio.to_thread(speech.stats)
                await asyncio.to_thread(speech.stop)
            if self._grading:  # records still with the judge are stored before we return
                await asyncio.gather(*self._grading)
            if self.judge is not None:
                self.judge.close()
            if self.tracer is not None:  # the last spans, off this loop
                await asyncio.to_thread(self.tracer.shutdown)
        return list(self.records.values())

    async def _start_speech_service(self):
        """The run's Ray Serve speech deployments (speech: stt/tts serve), or None."""
        speech = self.config.speech
        if speech.uses_serve and self.config.fleet.null_call_s is None:
            from orchestration.speech_service import SpeechService

            service = SpeechService(speech.serve, self.store.run_dir.name,
                                    stt=speech.stt == "serve", tts=speech.tts == "serve",
                                    ray_ends_with_run=bool(_local_ray))
            try:
                await asyncio.wait_for(asyncio.to_thread(service.start), HOST_READY_TIMEOUT_S)
            except TimeoutError:
                await asyncio.to_thread(service.stop)
                raise ConfigError(f"speech.serve: the speech deployments were not running "
                                  f"within {HOST_READY_TIMEOUT_S:.0f} s") from None
            except Exception as e:  # a replica failed to load, Serve would not start
                await asyncio.to_thread(service.stop)
                raise ConfigError(f"speech.serve: the speech deployments did not start: "
                                  f"{type(e).__name__}: {first_line(e)}") from None
            self.pool.serve = service.hosts_view()
            return service
        return None

    async def _place(self, spec: dict[str, Any]) -> dict[str, Any]:
        host = self.pool.pick()
        host.in_flight += 1
        label = ""
        if self.live is not None:  # by identity: HostSlots are dataclasses, equal by fields
            label = f"host-{next(i for i, h in enumerate(self.pool.hosts) if h is host)}"
            self._host_of[spec["call_id"]] = label
            self.live.call_started(label)
        timeout = spec["max_call_s"] + CALL_GRACE_S + HOST_READY_TIMEOUT_S
        try:
            return await asyncio.wait_for(host.actor.place.remote(spec), timeout)
        except RayActorError as e:
            self.pool.replace(host)
            lost = _failed(spec, "caller_host_lost", type(e).__name__)
            lost["generator"] = {"host_node_id": host.node_id}  # which node went away
            return lost
        except (TimeoutError, GetTimeoutError):
            self.pool.replace(host)
            return _failed(spec, "caller_host_lost", f"no result within {timeout:.0f} s")
        except RayError as e:
            return _failed(spec, "caller_error", f"{type(e).__name__}: {e}"[:500])
        finally:
            host.in_flight -= 1
            if self.live is not None:
                self.live.call_ended(label)

    def _record(self, record: dict[str, Any]) -> None:
        call_id = record["call_id"]
        if call_id in self.records:  # a result is counted once, whatever happens
            log.warning("duplicate result for %s ignored", call_id)
            return
        if self.judge is not None and record.get("events"):
            # The judge's round trip (up to its timeout) runs in a thread, off this loop that
            # places calls; the record is stored once graded.
            self.records[call_id] = record
            task = asyncio.get_running_loop().create_task(self._judged(record),
                                                          name=f"grade-{call_id}")
            self._grading.add(task)
            task.add_done_callback(self._grading.discard)
            return
        if record.get("events"):  # a call that never connected has nothing to grade
            score_call(record)
        self.records[call_id] = record
        self._keep(record)

    async def _judged(self, record: dict[str, Any]) -> None:
        try:
            await asyncio.to_thread(score_call, record, self.judge)
        except Exception:  # the judge never raises; whatever else did, the record is kept
            log.exception("grading %s failed", record["call_id"])
        self._keep(record)

    def _keep(self, record: dict[str, Any]) -> None:
        """Store a graded record (traced first: a record without trace ids gets them), then
        count it in the live metrics."""
        if self.tracer is not None:
            try:
                self.tracer.export(record)
            except Exception:  # a trace is a nice-to-have: the record is stored regardless
                log.exception("tracing %s failed", record["call_id"])
        self.store.append(record)
        if self.live is not None:
            self.live.observe(record, self._host_of.pop(record["call_id"], None))
        for observe in self.observers:
            try:
                observe(record)
            except Exception:  # a display's bug must not cost the run: the record is stored
                log.exception("observing %s failed", record["call_id"])


def _failed(spec: dict[str, Any], reason: str, detail: str) -> dict[str, Any]:
    record = CallRecord(call_id=spec["call_id"], persona=spec["persona"], seed=spec["seed"],
                        scenario=spec.get("scenario", ""),
                        target=spec["target"]["url"], failure_reason=reason, failure_detail=detail,
                        concurrency_at_start=spec.get("concurrency_at_start", 1))
    data = record.to_dict()
    data["phase"] = spec.get("phase")
    return data

