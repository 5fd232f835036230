"""How well callfleet's per-turn response latency matches what the agent itself saw.

Starts the reference agent with --turn-log, places calls to it one at a time, pairs each
response latency with the agent's own gap for that turn (the last caller sound it received to
the first voiced sample of its reply, on its clock) and reports the spread p95 - p5 of
latency - gap: the media path both ways is constant, what varies is measurement error.

    .venv/bin/python benchmarks/latency_accuracy.py [--label after] [--calls 5]

Results are merged into benchmarks/results/latency_accuracy.json under the label, so a run
of an older checkout of the caller (against this checkout's agent) can be written next to
this one:

    git worktree add /tmp/old <commit>
    cp benchmarks/latency_accuracy.py /tmp/old/benchmarks/
    cp evaluation/latency_check.py /tmp/old/evaluation/
    .venv/bin/python /tmp/old/benchmarks/latency_accuracy.py --label before \\
        --agent-root . --results benchmarks/results/latency_accuracy.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's callers, not the installed one

from evaluation.latency_check import CHECK_CALLS, accuracy_summary, place_and_pair  # noqa: E402
from orchestration.local_agent import _wait_ready  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="after", help="key in the results file")
    parser.add_argument("--calls", type=int, default=len(CHECK_CALLS))
    parser.add_argument("--agent-root", type=Path, default=ROOT,
                        help="checkout whose reference agent answers (default: this one)")
    parser.add_argument("--results", type=Path,
                        default=ROOT / "benchmarks" / "results" / "latency_accuracy.json")
    args = parser.parse_args()
    calls = [CHECK_CALLS[i % len(CHECK_CALLS)][0:1] + (i + 1,) for i in range(args.calls)]

    with tempfile.TemporaryDirectory() as tmp:
        turn_log = Path(tmp) / "turns.jsonl"
        command = [sys.executable, "-m", "orchestration.cli", "agent", "--host", "127.0.0.1",
                   "--port", "0", "--turn-log", str(turn_log)]
        with open(Path(tmp) / "agent.err", "w") as err:
            agent = subprocess.Popen(command, cwd=args.agent_root, stdout=subprocess.PIPE,
                                     stderr=err, text=True)
            try:
                url = _wait_ready(agent, 90)
                started = time.monotonic()
                pairs, per_call = asyncio.run(place_and_pair(url, str(turn_log), calls))
                wall_s = time.monotonic() - started
            finally:
                agent.terminate()
                agent.wait(timeout=10)

    summary = accuracy_summary(pairs, {c["call_id"] for c in per_call if c["trusted"]})
    result = {
        "caller_checkout": _commit(ROOT),
        "agent_checkout": _commit(args.agent_root),
        "wall_s": round(wall_s, 1),
        "turns": summary["turns"],
        "spread_p95_p5_ms": summary["error_ms"]["spread_p95_p5"],
        "median_offset_ms": summary["error_ms"]["median"],
        "trusted_turns": summary["trusted"]["turns"],
        "trusted_spread_p95_p5_ms": summary["trusted"]["error_ms"]["spread_p95_p5"],
        "trusted_median_offset_ms": summary["trusted"]["error_ms"]["median"],
        **summary,
        "calls": per_call,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    results[args.label] = result
    results["about"] = ("latency - gap per turn: callfleet's response latency minus the "
                        "reference agent's own gap (--turn-log); spread_p95_p5_ms is the "
                        "measurement error, median_offset_ms the media path both ways; "
                        "trusted_*: only calls whose caller and agent both paced their audio "
                        "on time (pacing p99 <= 20 ms; the machine is shared, a loaded one "
                        "stalls both sides)")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    brief = {k: result[k] for k in ("turns", "spread_p95_p5_ms", "median_offset_ms",
                                    "trusted_turns", "trusted_spread_p95_p5_ms",
                                    "trusted_median_offset_ms", "wall_s")}
    print(json.dumps({args.label: brief, "error_ms": summary["error_ms"],
                      "uplink_ms": summary["uplink_ms"], "downlink_ms": summary["downlink_ms"],
                      "calls": [{k: c.get(k) for k in ("call_id", "trusted",
                                                       "caller_pacing_late_ms_p99",
                                                       "agent_pacing_late_ms_p99")}
                                | {"receive_buffer_ms": (c["network"] or {}).get(
                                    "receive_buffer_ms"),
                                   "agent_receive_buffer_ms": c["agent_receive"].get(
                                       "receive_buffer_ms")}
                                for c in per_call]}, indent=1))


def _commit(root: Path) -> str:
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "-uno", "--",
                                "callers", "reference_agent", "evaluation"],
                               capture_output=True, text=True).stdout.strip()
        return head + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    main()
