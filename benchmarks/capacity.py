"""Capacity of the CALLERS, per caller STT backend: full callers (WebRTC + VAD + STT + TTS +
scripted brain) on ONE CallerHost pinned to core 0, against a lean reference agent (`--lean`:
no Whisper, pre-rendered prompts) pinned to core 1, so the agent is not what gives way.

Per concurrency level: calls completed, the worst call's outgoing pacing p99 and loop lag p99,
the reply-late rate (caller replies that missed their planned time, as in summary.json; also
for the 700 ms personas alone), when replies were in hand after the agent's end, the
response latency p50, the host's CPU (cores busy, % of a core per caller) and memory per caller,
the agent's CPU over the level (cores busy: it had room or not), and each core's busy share
(what else ran there), and the share of the host's core each thread group took (which stage
takes the core). A level sustains when every call completed, pacing p99 <= 20 ms and the
reply-late rate <= 5 %, for all personas and for the 700 ms ones alone; `gives_way` names what
failed. Writes this backend's entry of benchmarks/results/capacity.json (the
other backends' entries are kept).

    .venv/bin/python benchmarks/capacity.py --stt local|batched|service|serve [--arrivals A]
        [--rounds N] [LEVEL ...]
        (default levels: local 2 4 6 8; batched 4 8 12 16; service and serve 8 12 16 24; a
        level places level x N calls)

--arrivals steady (the default): calls start evenly over one call's length (level / CALL_S a
second) and a level places 3 x level calls, so it holds its concurrency as calls end and new
ones start, the way a load test at a steady rate runs. --arrivals burst: 4 calls a second, one
round (what earlier results measured): every call's greeting ends within a few seconds of the
others', and their first replies queue behind one another's decodes.

`--stt service`: the callers' STT and TTS go to an OpenAI-compatible speech service
(benchmarks/speech_server.py: Whisper and Piper, pinned to core 1 beside the agent, as a
speech node would be), so the host does media, VAD and the brain only: what a media host
carries when speech is shared. The service's CPU is reported beside the agent's.

`--stt serve`: the same, with the run's own Ray Serve deployments (`speech: {stt: serve, tts:
serve}`, one Whisper and one Piper replica reserving no Ray CPU), whose processes (and Serve's
controller) are pinned to core 1 beside the agent as soon as they exist; their CPU is core 1's
busy share less the agent's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import ray

from evaluation.summary import summarize
from callers.persona import resolve_persona
from orchestration.config import RunConfig
from orchestration.fleet import start_ray
from orchestration.local_agent import reference_agent_process
from one_host import pin_process, run_on_one_host
from results_file import RESULTS, write_result

# Replying 1500 ms (john, david), 2000 ms (maria) and 700 ms (emily) after the agent ends:
# a fast persona's reply is late first when the caller is short of CPU.
PERSONAS = {"cooperative-john": 1, "hesitant-maria": 1, "corrector-david": 1,
            "fast-talker-emily": 1}
FAST_REPLY_MS = 700
HOST_CORE, AGENT_CORE = 0, 1
CALL_S = 32.0  # a capacity call's mean length (25-37 s by persona), measured
BURST_CALLS_PER_S = 4.0
PACING_LIMIT_MS = 20.0
REPLY_LATE_LIMIT = 0.05
DEFAULT_LEVELS = {"local": [2, 4, 6, 8], "batched": [4, 8, 12, 16], "service": [8, 12, 16, 24],
                  "serve": [8, 12, 16, 24]}
SERVICE_KEY_ENV = "CAPACITY_SPEECH_KEY"  # the loopback service takes any key
TICK = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """utime + stime of process pid (all its threads), seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # fields 14 and 15 of proc(5)


def core_times() -> dict[int, tuple[int, int]]:
    """Per core: (busy, total) jiffies from /proc/stat (idle and iowait are not busy)."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *vals = line.split()
            if name.startswith("cpu") and name != "cpu":
                v = [int(x) for x in vals]
                out[int(name[3:])] = (sum(v[:8]) - v[3] - v[4], sum(v[:8]))
    return out


def other_benchmarks() -> list[str]:
    """Other benchmark processes running now (their load shares these cores)."""
    found = subprocess.run(["pgrep", "-af", "benchmarks/"], capture_output=True, text=True).stdout
    me = str(os.getpid())
    return [cmd for pid, _, cmd in (line.partition(" ") for line in found.splitlines())
            if pid != me and "capacity.py" not in cmd and not cmd.startswith("timeout ")]


def stage_ms(records: list[dict]) -> dict[str, dict]:
    """Per caller stage (stt, brain, tts): how many, median and p90 wall ms, seconds per call."""
    spans: dict[str, list[float]] = defaultdict(list)
    for r in records:
        for s in r.get("stages") or ():
            spans[s["stage"]].append(s["end_ms"] - s["start_ms"])
    return {name: {"n": len(v), "p50_ms": round(float(np.percentile(v, 50)), 1),
                   "p90_ms": round(float(np.percentile(v, 90)), 1),
                   "s_per_call": round(sum(v) / 1000 / max(1, len(records)), 2)}
            for name, v in sorted(spans.items())}


def speech_config(stt: str, service_url: str | None) -> dict:
    if stt == "serve":  # replicas reserve no Ray CPU: they are pinned to the agent's core
        replica = {"num_cpus": 0.0}
        return {"stt": "serve", "tts": "serve", "serve": {"stt": replica, "tts": replica}}
    if service_url is None:
        return {"stt": stt}
    endpoint = {"base_url": service_url, "api_key_env": SERVICE_KEY_ENV}
    return {"stt": "openai", "openai": {**endpoint, "model": "tiny.en"},
            "tts": "openai", "openai_tts": {**endpoint, "model": "piper", "voice": "joe"}}


def calls_per_second(level: int, arrivals: str) -> float:
    return round(level / CALL_S, 3) if arrivals == "steady" else BURST_CALLS_PER_S


async def measure(level: int, stt: str, base_url: str, agent_pid: int, run_dir: Path,
                  rounds: int, arrivals: str,
                  service: tuple[int, str] | None = None) -> dict:
    config = RunConfig.model_validate({
        "name": f"capacity-{stt}-{level}",
        "target": {"url": "reference"}, "personas": PERSONAS,
        "load": {"total_calls": level * rounds, "max_concurrency": level,
                 "calls_per_second": calls_per_second(level, arrivals)},
        "fleet": {"hosts": 1},
        "speech": speech_config(stt, service[1] if service else None),
    })
    others = other_benchmarks()
    service_pid = service[0] if service else None
    agent0, cores0, t0 = process_cpu_s(agent_pid), core_times(), time.monotonic()
    service0 = process_cpu_s(service_pid) if service_pid else None
    serve_pinned = asyncio.Event()
    pinning = (asyncio.create_task(pin_serve_processes(serve_pinned)) if stt == "serve"
               else None)
    try:
        run = await run_on_one_host(config, base_url, run_dir, pin_cores={HOST_CORE})
    finally:
        if pinning is not None:
            serve_pinned.set()
            serve_repinned = await pinning
    agent1, cores1, t1 = process_cpu_s(agent_pid), core_times(), time.monotonic()
    service1 = process_cpu_s(service_pid) if service_pid else None
    others += [o for o in other_benchmarks() if o not in others]
    records, busy_cores = run["records"], run["busy_cores"]
    idle, peak = run["rss_mb_idle"], run["rss_mb_peak"]
    pacing = [r["generator"].get("pacing_late_ms_p99") or 0.0 for r in records]
    lag = [r["generator"].get("loop_lag_ms_p99") or 0.0 for r in records]
    generator = summarize(records, run_id=config.name, target=base_url)["generator"]
    backends = sorted({(r.get("speech") or {}).get("stt", "?") for r in records})
    # calls in flight on average over the level (a steady level ramps up to its concurrency)
    in_flight = sum(r.get("duration_s") or 0.0 for r in records) / run["wall_s"]
    result = {
        "concurrent_callers": level,
        "calls": level * rounds,
        "calls_per_second": config.load.calls_per_second,
        "mean_calls_in_flight": round(in_flight, 2),
        "completed": sum(r["status"] == "completed" for r in records),
        "status": dict(Counter(r["status"] for r in records)),
        "failure_reasons": dict(Counter(r["failure_reason"] for r in records
                                        if r.get("failure_reason"))),
        "pacing_late_ms_p99_worst_call": round(max(pacing, default=0.0), 2),
        "pacing_late_ms_p99_median_call": round(float(np.median(pacing)), 2) if pacing else None,
        "loop_lag_ms_p99_worst_call": round(max(lag, default=0.0), 2),
        "reply_late_rate": generator["reply_late_rate"],
        "replies": generator["replies"],
        # the 700 ms personas' own replies, and when replies were in hand after the agent's end
        "reply_late_rate_fast_personas": late_rate(
            [r for r in records if reply_after_ms(r["persona"]) <= FAST_REPLY_MS]),
        "reply_ready_ms": generator["reply_ready_ms"],
        "latency_ms_p50": _pct([v for r in records for v in
                               (r.get("metrics") or {}).get("response_latency_ms", [])], 50),
        "host_cpu_cores_busy": round(busy_cores, 3),
        # which stage takes the core: % of a core per thread group over the level (see
        # one_host.run_on_one_host), largest first
        "host_cpu_pct_by_thread": cpu_by_thread(run["cpu_s_by_thread"], run["wall_s"]),
        "cpu_pct_of_core_per_caller": round(100 * busy_cores / max(in_flight, 1.0), 1),
        "host_rss_mb_idle": round(idle, 1),
        "host_rss_mb_peak": round(peak, 1),
        "rss_mb_per_caller": round((peak - idle) / level, 1),
        "agent_cpu_cores_busy": round((agent1 - agent0) / (t1 - t0), 3),
        # --stt service: the speech service's CPU over the level (on the agent's core)
        # (--stt serve: core 1's busy share less the agent's)
        "service_cpu_cores_busy": (round((service1 - service0) / (t1 - t0), 3)
                                   if service_pid else None),
        "serve_threads_repinned": serve_repinned if pinning is not None else None,
        # each core's busy share over the level, whoever ran there (the host is pinned to
        # core 0, the agent to core 1; Ray's own processes, the driver and others float)
        "core_busy": {f"core{c}": round((cores1[c][0] - cores0[c][0])
                                        / max(1, cores1[c][1] - cores0[c][1]), 3)
                      for c in sorted(cores1)},
        "stages": stage_ms(records),
        "tts_cache_hit_rate": generator["tts_cache"]["hit_rate"],
        # the host's batcher as the last call saw it: batch sizes, decode and queue times
        "stt_batcher": max((r["speech"]["batcher"] for r in records
                            if (r.get("speech") or {}).get("batcher")),
                           key=lambda b: b["segments"], default=None),
        "stt_in_records": backends,
        "host_threads_repinned": run.get("host_threads_repinned"),
        "wall_s": round(run["wall_s"], 1),
        "other_benchmarks_running": others,
    }
    if stt == "serve":
        core1 = result["core_busy"][f"core{AGENT_CORE}"]
        result["service_cpu_cores_busy"] = round(core1 - result["agent_cpu_cores_busy"], 3)
    result["gives_way"] = [what for what, failed in (
        ("calls", result["completed"] != level * rounds),
        ("pacing", result["pacing_late_ms_p99_worst_call"] > PACING_LIMIT_MS),
        ("replies", (result["reply_late_rate"] or 0.0) > REPLY_LATE_LIMIT),
        ("700 ms replies", (result["reply_late_rate_fast_personas"] or 0.0) > REPLY_LATE_LIMIT),
    ) if failed]
    result["sustains"] = not result["gives_way"]
    return result


# What runs in each of a host's thread groups.
THREAD_WORK = {"AsyncIO Thread: default": "the event loop (a Ray async actor's): aiortc RTP and "
                                          "SRTP, Opus encode (encode_inline), VAD, pacing, "
                                          "the call sessions",
               "speech-native": "CTranslate2's Whisper decode (and onnxruntime's) threads",
               "stt-batch": "Whisper's Python side (stt: batched): features, tokens",
               "stt": "Whisper's Python side (stt: local)", "tts": "Piper with espeak-ng",
               "audio-decoder": "aiortc Opus decode, one thread per call",
               "asyncio": "noise beds, audio files (to_thread); before encode_inline, aiortc's "
                          "Opus encode",
               "native": "Ray's own threads"}


def cpu_by_thread(cpu_s: dict[str, float], wall_s: float) -> dict[str, float]:
    top = sorted(cpu_s.items(), key=lambda kv: -kv[1])
    return {name: round(100 * s / wall_s, 1) for name, s in top if s >= 0.01 * wall_s}


def reply_after_ms(persona_id: str) -> float:
    return resolve_persona(persona_id).temperament.reply_after_ms


def late_rate(records: list[dict]) -> float | None:
    return summarize(records, run_id="fast", target="-")["generator"]["reply_late_rate"]


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


async def pin_serve_processes(done: asyncio.Event) -> int:
    """--stt serve: pin Ray Serve's processes (the speech replicas, the controller) to the
    agent's core as they appear, every 0.2 s until done; returns how many threads moved after
    the first pin of their process."""
    pinned: set[int] = set()
    moved = 0
    while not done.is_set():
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if not f.read(64).startswith(b"ray::Serve"):
                        continue
                n = pin_process(int(pid), {AGENT_CORE})
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(pid) in pinned:
                moved += n
            pinned.add(int(pid))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 0.2)
    return moved


@contextlib.contextmanager
def speech_service(stt: str):
    """--stt service: benchmarks/speech_server.py pinned to the agent's core; yields (pid, url),
    or None for in-process speech."""
    if stt != "service":
        yield None
        return
    proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "speech_server.py")],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        pin_process(proc.pid, {AGENT_CORE})
        line = proc.stdout.readline()  # "ready URL" once Whisper and Piper are loaded
        if not line.startswith("ready "):
            raise SystemExit(f"speech_server.py did not start (exit {proc.poll()})")
        yield proc.pid, line.split()[1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def run_levels(levels: list[int], stt: str, agent_nice: int, rounds: int,
                     arrivals: str, runs_dir: Path | None) -> tuple[list[dict], dict]:
    results = []
    with reference_agent_process("--lean") as (agent, base_url), speech_service(stt) as service:
        pin_process(agent.pid, {AGENT_CORE})
        for tid in os.listdir(f"/proc/{agent.pid}/task"):
            os.setpriority(os.PRIO_PROCESS, int(tid), agent_nice)
        for level in levels:
            if runs_dir is not None:  # kept: records and recordings to look into
                run_dir = runs_dir / f"{stt}-{level}"
                run_dir.mkdir(parents=True, exist_ok=True)
                result = await measure(level, stt, base_url, agent.pid, run_dir, rounds,
                                       arrivals, service)
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    result = await measure(level, stt, base_url, agent.pid, Path(tmp), rounds,
                                           arrivals, service)
            result["agent_threads_repinned"] = pin_process(agent.pid, {AGENT_CORE})
            if service:
                result["service_threads_repinned"] = pin_process(service[0], {AGENT_CORE})
            print(json.dumps(result), flush=True)
            results.append(result)
    return results, {"pid": agent.pid, "core": AGENT_CORE, "nice": agent_nice}


COLUMNS = [  # (header, key, format)
    ("callers", "concurrent_callers", "{}"), ("done", "completed", "{}"),
    ("in flight", "mean_calls_in_flight", "{:.1f}"),
    ("pace p99", "pacing_late_ms_p99_worst_call", "{:.1f}"),
    ("lag p99", "loop_lag_ms_p99_worst_call", "{:.1f}"),
    ("late", "reply_late_rate", "{:.1%}"), ("late 700ms", "reply_late_rate_fast_personas", "{:.1%}"),
    ("lat p50", "latency_ms_p50", "{:.0f}"),
    ("host cores", "host_cpu_cores_busy", "{:.2f}"),
    ("%core/caller", "cpu_pct_of_core_per_caller", "{:.1f}"),
    ("MB/caller", "rss_mb_per_caller", "{:.1f}"),
    ("agent cores", "agent_cpu_cores_busy", "{:.2f}"),
    ("service cores", "service_cpu_cores_busy", "{:.2f}"), ("sustains", "sustains", "{}"),
]


def table(results: list[dict]) -> str:
    def cell(fmt: str, value) -> str:
        return "-" if value is None else fmt.format(value)

    rows = [[h for h, _, _ in COLUMNS]] + [[cell(f, r.get(k)) for _, k, f in COLUMNS]
                                           for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows)


def merged(stt: str, entry: dict) -> dict:
    """capacity.json with this backend's entry replaced (the others kept); a file in the old
    layout (one backend, top-level "levels") is replaced."""
    path = RESULTS / "capacity.json"
    try:
        old = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        old = {}
    backends = dict(old.get("backends") or {})
    backends[stt] = entry
    return {
        "about": ("full callers (WebRTC + VAD + STT + TTS + scripted brain) on one CallerHost "
                  "pinned to core 0, against a lean reference agent (--lean: no Whisper, "
                  "pre-rendered prompts) pinned to core 1; per caller STT backend "
                  "(speech: {stt: ...}; service: STT and TTS on a loopback OpenAI-compatible "
                  "speech service pinned to core 1 too; serve: on the run's Ray Serve "
                  "deployments, pinned to core 1 too). A level sustains when every call "
                  f"completed, the worst call's pacing p99 <= {PACING_LIMIT_MS:g} ms and the "
                  "reply-late rate <= "
                  f"{REPLY_LATE_LIMIT:.0%}, for all personas and for the 700 ms ones alone."),
        "callers_per_core_sustained": {name: b["callers_per_core_sustained"]
                                       for name, b in sorted(backends.items())},
        "backends": dict(sorted(backends.items())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("levels", nargs="*", type=int, help="concurrent callers per level")
    parser.add_argument("--stt", choices=["local", "batched", "service", "serve"],
                        default="local",
                        help="the callers' speech.stt (service: STT and TTS on a loopback "
                             "OpenAI-compatible speech service beside the agent; serve: on "
                             "the run's Ray Serve deployments, beside the agent)")
    parser.add_argument("--agent-nice", type=int, default=0,
                        help="niceness of the agent process (pinned to its own core anyway)")
    parser.add_argument("--arrivals", choices=["steady", "burst"], default="steady",
                        help="steady: calls start evenly over one call's length; burst: 4 a "
                             "second (see the module's doc)")
    parser.add_argument("--rounds", type=int,
                        help="calls per level = level x rounds (default: 3 steady, 1 burst; "
                             "more than 1: the level is held "
                             "as calls end and new ones start, past the first burst)")
    parser.add_argument("--note", default="", help="added to this backend's notes")
    parser.add_argument("--runs-dir", type=Path,
                        help="keep each level's run directory under this one")
    args = parser.parse_args()
    levels = args.levels or DEFAULT_LEVELS[args.stt]
    rounds = args.rounds or (3 if args.arrivals == "steady" else 1)
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("capacity.py needs 2 cores: the host on core 0, the agent on core 1")
    os.environ.setdefault(SERVICE_KEY_ENV, "loopback")  # before Ray: its workers inherit it
    start_ray()
    results, agent = asyncio.run(run_levels(levels, args.stt, args.agent_nice, rounds,
                                            args.arrivals, args.runs_dir))
    ray.shutdown()
    print(f"\nstt {args.stt}:\n{table(results)}\n", flush=True)
    sustained = [r["concurrent_callers"] for r in results if r["sustains"]]
    others = sorted({o for r in results for o in r["other_benchmarks_running"]})
    notes = [n for n in [args.note] if n]
    if others:
        notes.append("other benchmarks ran during this measurement (their load shares the "
                     "cores; see each level's core_busy): " + "; ".join(others))
    entry = {
        "command": f"benchmarks/capacity.py --stt {args.stt} "
                   f"{' '.join(map(str, levels))}"
                   + f" --arrivals {args.arrivals} --rounds {rounds}"
                   + (f" --agent-nice {args.agent_nice}" if args.agent_nice else ""),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "stt": args.stt,
        "arrivals": args.arrivals,
        "host_core": HOST_CORE,
        "agent": {"kind": "lean", **{k: v for k, v in agent.items() if k != "pid"}},
        "host_thread_groups": THREAD_WORK,
        "levels": results,
        "callers_per_core_sustained": max(sustained, default=0),
        "notes": notes,
    }
    write_result("capacity", merged(args.stt, entry))


if __name__ == "__main__":
    main()
