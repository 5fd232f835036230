"""Soak without leaks (issue 13, point 4): many short calls, one after another, through ONE
CallerHost against a lean reference agent (`--lean`: no Whisper, pre-rendered prompts) on the
same machine. A host lives for hours in a long run: whatever a call leaves behind (memory,
sockets, tasks, threads) adds up, and so does any cost that grows with the calls made.

Each call is as short as a real call can be: the agent's opening ("Hello, thanks for calling
Acme Bank. How can I help you today?"), one scripted caller line after it, the caller hangs
up. The callers speak a script with `speech: {stt: none}` (a scenario this benchmark writes
to a temporary folder), so what runs per call is the transport, 20 ms pacing, VAD, Piper and
the record. The calls are placed one at a time on the host actor the fleet would start
(HostPool), with the specs the fleet would plan (plan_specs). After a warm-up, and then after
every block of calls, the host reports (CallerHost.resources, between calls, once idle) its
RSS, open fds, asyncio tasks, Python and native threads and live objects; each block's
per-call CPU and wall time come from the differences.

Holds when, after warm-up: RSS grows <= 50 MB; at the end, open fds within +2 of the
post-warm-up baseline, asyncio tasks and Python threads exactly equal to it; the last block's
per-call CPU within 25 % of the first block's; every call completed.

    .venv/bin/python benchmarks/soak.py [--calls 1000] [--block 100] [--warmup 50]
                                        [--transport pcm-ws]

Progress on stderr, one line per block. Writes benchmarks/results/soak.json; exits 0 when
every limit holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

import ray

from orchestration.config import RunConfig
from orchestration.fleet import HostPool, plan_specs, start_ray
from orchestration.local_agent import reference_agent_process
from results_file import write_result

RSS_GROWTH_LIMIT_MB = 50.0
FDS_TOLERANCE = 2  # open fds at the end: at most this many above the post-warm-up baseline
CPU_GROWTH_LIMIT = 0.25  # last block's per-call CPU at most 25 % above the first block's
SETTLE_S = 0.5  # idle time before a probe: a closed call's last callbacks have run
MAX_CALL_S = 30.0  # a call here lasts ~5 s
CALL_GRACE_S = 60.0
TIMEOUTS_IN_A_ROW = 3  # the host is stuck: stop

SCENARIO = """\
# Written by benchmarks/soak.py: the shortest whole call against the lean agent's card flow.
id: soak-short-call
goal: Answer the agent's opening with one line and hang up.
flow: card_dispute
script:
  - {say: "Hi, goodbye.", after_agent_ms: 200}
"""


def config_for(transport: str, calls: int, scenario: Path) -> RunConfig:
    return RunConfig.model_validate({
        "name": f"soak-{transport}", "seed": 13,
        "target": {"url": "reference", "transport": transport},
        "personas": {"cooperative-john": 1},  # no noise, no line, no behaviours
        "scenarios": {str(scenario): 1},
        "speech": {"stt": "none"},
        "load": {"total_calls": calls, "max_concurrency": 1, "calls_per_second": 1000},
        "fleet": {"hosts": 1, "max_call_s": MAX_CALL_S, "audio": False},
        "evaluation": {"audio_quality": False},
    })


def drain(stream, keep: deque[str]) -> None:
    """Read a child's pipe to its end (a full pipe would stall the agent); keep the tail."""
    for line in stream:
        keep.append(line.rstrip())


def thread_names(pid: int) -> dict[str, int]:
    """A process's native threads counted by name (/proc/PID/task/*/comm)."""
    names: Counter[str] = Counter()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                names[f.read().strip()] += 1
        except OSError:
            pass  # it ended meanwhile
    return dict(names.most_common())


def process_usage(pid: int) -> dict[str, float]:
    """Another process's RSS and open fds (the agent's: reported, not judged)."""
    with open(f"/proc/{pid}/statm") as f:
        rss_mb = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return {"rss_mb": round(rss_mb, 1), "fds": len(os.listdir(f"/proc/{pid}/fd"))}


class Soak:
    """Places the calls one at a time on one host and samples it between blocks."""

    def __init__(self, host, host_pid: int, specs: list[dict[str, Any]], agent_pid: int,
                 warmup: int, block: int) -> None:
        self.host, self.host_pid, self.specs, self.agent_pid = host, host_pid, specs, agent_pid
        self._types: dict[str, int] = {}  # live objects per type at the baseline
        self.warmup, self.block = warmup, block
        self.status: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.samples: list[dict[str, Any]] = []
        self._block_calls: list[tuple[float, float]] = []  # (wall s, call duration s)
        self._block_failed = 0

    async def run(self) -> None:
        timeouts = 0
        for i, spec in enumerate(self.specs, start=1):
            t0 = time.monotonic()
            try:
                record = await asyncio.wait_for(self.host.place.remote(spec),
                                                MAX_CALL_S + CALL_GRACE_S)
                timeouts = 0
            except TimeoutError:
                timeouts += 1
                record = {"status": "failed", "failure_reason": "no_result_from_host",
                          "duration_s": None}
            self._count(record, time.monotonic() - t0)
            if i == self.warmup or (i > self.warmup and (
                    (i - self.warmup) % self.block == 0 or i == len(self.specs))):
                await self._sample(i)
            if timeouts >= TIMEOUTS_IN_A_ROW:
                print(f"soak: {timeouts} calls in a row without a result: stopping",
                      file=sys.stderr, flush=True)
                await self._sample(i)
                break

    def _count(self, record: dict[str, Any], wall_s: float) -> None:
        self.status[record["status"]] += 1
        if record["status"] != "completed":
            self._block_failed += 1
            self.failures[record.get("failure_reason") or "unknown"] += 1
        self._block_calls.append((wall_s, record.get("duration_s") or 0.0))

    async def _sample(self, calls_done: int) -> None:
        await asyncio.sleep(SETTLE_S)
        t = time.monotonic()
        res = await self.host.resources.remote(by_type=True)
        types = res.pop("gc_objects_by_type")
        sample: dict[str, Any] = {
            "calls_done": calls_done, "t": t,
            "rss_mb": round(res["rss_mb"], 1), "cpu_s": res["cpu_s"], "active": res["active"],
            **{k: res[k] for k in ("fds", "tasks", "threads", "native_threads", "gc_objects")},
            "agent": process_usage(self.agent_pid),
            "load_1min": round(os.getloadavg()[0], 2),  # the machine's other work
            "native_threads_by_name": thread_names(self.host_pid),
        }
        if not self.samples:
            self._types = types
        else:  # evidence for a leak: the object types that grew most since the baseline
            sample["gc_objects_grown_by_type"] = dict(Counter(
                {k: n - self._types.get(k, 0) for k, n in types.items()}).most_common(8))
        if self.samples:  # a block: the calls since the previous sample
            prev, n = self.samples[-1], len(self._block_calls)
            sample["block_calls"] = n
            sample["failed"] = self._block_failed
            sample["cpu_ms_per_call"] = round(1000 * (res["cpu_s"] - prev["cpu_s"]) / n, 1)
            sample["wall_s_per_call"] = round((t - prev["t"]) / n, 3)
            sample["call_duration_s_mean"] = round(
                sum(d for _, d in self._block_calls) / n, 3)
            label = f"calls {prev['calls_done'] + 1}-{calls_done}"
        else:
            label = f"warm-up ({calls_done} calls): baseline"
        self.samples.append(sample)
        self._block_calls, self._block_failed = [], 0
        print(f"soak: {label}: rss {sample['rss_mb']} MB, fds {sample['fds']}, tasks "
              f"{sample['tasks']}, threads {sample['threads']}/{sample['native_threads']}, "
              + (f"cpu {sample['cpu_ms_per_call']} ms/call, wall {sample['wall_s_per_call']} "
                 f"s/call, failed {sample['failed']}" if "block_calls" in sample else
                 f"agent rss {sample['agent']['rss_mb']} MB"),
              file=sys.stderr, flush=True)


def judge(samples: list[dict[str, Any]], status: Counter, planned: int) -> dict[str, Any]:
    """Each limit with its value and whether it holds (after warm-up: samples[0])."""
    base, blocks = samples[0], samples[1:]
    last = blocks[-1]
    first_cpu = blocks[0]["cpu_ms_per_call"]
    checks = {
        "rss_growth_mb": {"value": round(last["rss_mb"] - base["rss_mb"], 1),
                          "max_over_blocks": round(max(b["rss_mb"] for b in blocks)
                                                   - base["rss_mb"], 1),
                          "limit": f"<= {RSS_GROWTH_LIMIT_MB:g}"},
        "fds_end_vs_baseline": {"value": last["fds"] - base["fds"],
                                "limit": f"<= +{FDS_TOLERANCE}"},
        "tasks_end_vs_baseline": {"value": last["tasks"] - base["tasks"], "limit": "== 0"},
        "threads_end_vs_baseline": {"value": last["threads"] - base["threads"],
                                    "limit": "== 0"},
        "cpu_per_call_last_vs_first_block": {
            "value": round(last["cpu_ms_per_call"] / first_cpu - 1, 3) if first_cpu else None,
            "first_ms": first_cpu, "last_ms": last["cpu_ms_per_call"],
            "limit": f"<= +{CPU_GROWTH_LIMIT:g}"},
        "calls_completed": {"value": status.get("completed", 0), "limit": f"== {planned}"},
    }
    checks["rss_growth_mb"]["holds"] = checks["rss_growth_mb"]["value"] <= RSS_GROWTH_LIMIT_MB
    checks["fds_end_vs_baseline"]["holds"] = checks["fds_end_vs_baseline"]["value"] \
        <= FDS_TOLERANCE
    checks["tasks_end_vs_baseline"]["holds"] = checks["tasks_end_vs_baseline"]["value"] == 0
    checks["threads_end_vs_baseline"]["holds"] = checks["threads_end_vs_baseline"]["value"] == 0
    cpu = checks["cpu_per_call_last_vs_first_block"]
    cpu["holds"] = cpu["value"] is not None and cpu["value"] <= CPU_GROWTH_LIMIT
    checks["calls_completed"]["holds"] = checks["calls_completed"]["value"] == planned
    # reported, not judged: native threads (Ray's and onnxruntime's pools) and live objects
    checks["native_threads_end_vs_baseline"] = {
        "value": last["native_threads"] - base["native_threads"], "judged": False}
    checks["gc_objects_end_vs_baseline"] = {
        "value": last["gc_objects"] - base["gc_objects"], "judged": False}
    return checks


def table(samples: list[dict[str, Any]]) -> str:
    head = (f"{'calls':>11} {'rss MB':>7} {'fds':>4} {'tasks':>5} {'thr':>4} {'native':>6} "
            f"{'objects':>8} {'cpu ms/call':>11} {'wall s/call':>11} {'failed':>6} "
            f"{'agent MB':>8}")
    rows = [head]
    for i, s in enumerate(samples):
        calls = (f"warm-up {s['calls_done']}" if i == 0 else
                 f"{samples[i - 1]['calls_done'] + 1}-{s['calls_done']}")
        rows.append(f"{calls:>11} {s['rss_mb']:>7} {s['fds']:>4} {s['tasks']:>5} "
                    f"{s['threads']:>4} {s['native_threads']:>6} {s['gc_objects']:>8} "
                    f"{s.get('cpu_ms_per_call', '-'):>11} {s.get('wall_s_per_call', '-'):>11} "
                    f"{s.get('failed', '-'):>6} {s['agent']['rss_mb']:>8}")
    return "\n".join(rows)


async def soak(args, base_url: str, agent_pid: int, tmp: Path) -> Soak:
    scenario = tmp / "soak-short-call.yaml"
    scenario.write_text(SCENARIO)
    config = config_for(args.transport, args.calls, scenario)
    specs = plan_specs(config, config.target.to_target(base_url))
    pool = HostPool(str(tmp / "run"), None, stt="none")  # the actor the fleet would start
    (tmp / "run").mkdir()
    await pool.start(1)
    try:
        host = pool.hosts[0].actor
        host_pid = (await host.ready.remote())["pid"]  # same machine: its /proc is readable
        run = Soak(host, host_pid, specs, agent_pid, args.warmup, args.block)
        await run.run()
    finally:
        pool.shutdown()
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--block", type=int, default=100,
                        help="calls between two samples of the host")
    parser.add_argument("--warmup", type=int, default=None,
                        help="calls before the baseline sample (default: half a block)")
    parser.add_argument("--transport", default="pcm-ws",
                        choices=["webrtc", "twilio-ws", "pcm-ws", "sip"])
    args = parser.parse_args()
    args.warmup = args.block // 2 if args.warmup is None else args.warmup
    if args.warmup < 1 or args.block < 1 or args.calls < args.warmup + args.block:
        parser.error("need --warmup >= 1 and --calls >= --warmup + --block")
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    began = time.monotonic()
    # Its own local Ray unless RAY_ADDRESS says which: a bare ray.init() joins the cluster
    # named in /tmp/ray/ray_current_cluster, another run's on a shared machine.
    start_ray(os.environ.get("RAY_ADDRESS") or "local")
    agent_err: deque[str] = deque(maxlen=20)
    with (reference_agent_process("--lean") as (agent, base_url),
          tempfile.TemporaryDirectory() as tmp):
        for stream, keep in ((agent.stdout, deque(maxlen=20)), (agent.stderr, agent_err)):
            threading.Thread(target=drain, args=(stream, keep), daemon=True).start()
        run = asyncio.run(soak(args, base_url, agent.pid, Path(tmp)))
    ray.shutdown()
    samples = run.samples
    checks = judge(samples, run.status, args.calls) if len(samples) >= 2 else {}
    holds = bool(checks) and all(c["holds"] for c in checks.values() if "holds" in c)
    for s in samples:
        s.pop("t"), s.pop("cpu_s")  # absolute clocks: not figures
    write_result("soak", {
        "about": ("sequential short calls (agent opening, one scripted caller line, caller "
                  "hangs up) through ONE CallerHost against a lean reference agent on the same "
                  "machine; callers speak a script, no STT; the host sampled between calls "
                  "after warm-up and after every block"),
        "command": f"benchmarks/soak.py --calls {args.calls} --block {args.block} "
                   f"--warmup {args.warmup} --transport {args.transport}",
        "transport": args.transport,
        "calls": args.calls, "warmup_calls": args.warmup, "block_calls": args.block,
        "status": dict(run.status), "failure_reasons": dict(run.failures),
        "wall_s": round(time.monotonic() - began, 1),
        "limits": {"rss_growth_mb": RSS_GROWTH_LIMIT_MB, "fds_tolerance": FDS_TOLERANCE,
                   "tasks": "equal to baseline", "threads": "equal to baseline",
                   "cpu_per_call_growth": CPU_GROWTH_LIMIT, "calls": "all completed"},
        "samples": samples,  # [0]: after warm-up (baseline); then one per block
        "checks": checks,
        "agent_stderr_tail": list(agent_err),
        "holds": holds,
    })
    print(table(samples))
    print(f"soak: {'HOLDS' if holds else 'FAILS'}: "
          + ", ".join(f"{k} {c['value']}{'' if c['holds'] else ' (over the limit)'}"
                      for k, c in checks.items() if "holds" in c))
    return 0 if holds else 1


if __name__ == "__main__":
    sys.exit(main())
