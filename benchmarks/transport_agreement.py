"""Do the transports measure the same agent the same? Issue 11, point 5.

Two reference agents on 127.0.0.1, one clean and one with a planted --response-delay-ms 1000,
both logging their own turns (--turn-log). The same calls (persona, seed) are placed to each
over every transport, one call at a time. Per transport and agent: the median response
latency callfleet measured, the median of latency minus the agent's own gap for the same
turn (the media path both ways, after each transport's stated receive delay is subtracted),
and the median of the agent's gap. The claims checked:

- agreement: the medians of response latency differ across transports by <= 40 ms;
- the planted change: each transport's median moves by 1000 ms +- 20 ms.

    .venv/bin/python benchmarks/transport_agreement.py [--calls 2] [--transports webrtc sip]

Writes benchmarks/results/transport_agreement.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results_file import write_result  # noqa: E402
from callers.session import load_caller_models  # noqa: E402
from callers.transports import TRANSPORTS  # noqa: E402
from evaluation.latency_check import CHECK_CALLS, place_and_pair  # noqa: E402
from orchestration.config import TargetConfig  # noqa: E402
from orchestration.local_agent import reference_agent  # noqa: E402

PLANTED_MS = 1000
AGREE_MS = 40.0
SHIFT_TOLERANCE_MS = 20.0


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


async def _measure(urls: dict[str, str], logs: dict[str, Path], transports: list[str],
                   calls) -> dict:
    models = await load_caller_models()
    out: dict = {}
    for transport in transports:
        out[transport] = {}
        for agent, url in urls.items():
            target = TargetConfig(transport=transport).to_target(url)
            began = time.monotonic()
            pairs, per_call = await place_and_pair(url, str(logs[agent]), calls, models,
                                                   target=target)
            trusted = {c["call_id"] for c in per_call if c["trusted"]}
            used = [p for p in pairs if p.call_id in trusted] or pairs
            out[transport][agent] = {
                "turns": len(pairs), "trusted_turns": len([p for p in pairs
                                                           if p.call_id in trusted]),
                "latency_ms_median": _median([p.latency_ms for p in used]),
                "latency_minus_gap_ms_median": _median([p.error_ms for p in used]),
                "agent_gap_ms_median": _median([p.gap_ms for p in used]),
                "wall_s": round(time.monotonic() - began, 1),
                "calls": [{k: c[k] for k in ("call_id", "status", "failure_reason", "paired",
                                             "trusted", "caller_pacing_late_ms_p99",
                                             "agent_pacing_late_ms_p99")}
                          | {"receive_buffer_ms": (c["network"] or {}).get("receive_buffer_ms")}
                          for c in per_call]}
            print(f"{transport:10s} {agent:5s} {out[transport][agent]['latency_ms_median']} ms "
                  f"over {len(pairs)} turns", flush=True)
    return out


def _verdict(by_transport: dict) -> dict:
    verdict: dict = {}
    for agent in ("clean", "slow"):
        medians = {t: v[agent]["latency_ms_median"] for t, v in by_transport.items()
                   if v[agent]["latency_ms_median"] is not None}
        spread = max(medians.values()) - min(medians.values()) if medians else None
        verdict[f"{agent}_latency_spread_across_transports_ms"] = (
            round(spread, 1) if spread is not None else None)
        path = {t: v[agent]["latency_minus_gap_ms_median"] for t, v in by_transport.items()
                if v[agent]["latency_minus_gap_ms_median"] is not None}
        verdict[f"{agent}_media_path_spread_across_transports_ms"] = (
            round(max(path.values()) - min(path.values()), 1) if path else None)
    shifts = {}
    for t, v in by_transport.items():
        clean, slow = v["clean"]["latency_ms_median"], v["slow"]["latency_ms_median"]
        shifts[t] = round(slow - clean, 1) if clean is not None and slow is not None else None
    verdict["planted_shift_ms"] = shifts
    spreads = [verdict["clean_latency_spread_across_transports_ms"],
               verdict["slow_latency_spread_across_transports_ms"]]
    verdict["agree_within_40_ms"] = all(s is not None and s <= AGREE_MS for s in spreads)
    verdict["shift_within_20_ms_of_1000"] = all(
        s is not None and abs(s - PLANTED_MS) <= SHIFT_TOLERANCE_MS for s in shifts.values())
    return verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2, help="calls per transport and agent")
    parser.add_argument("--transports", nargs="+", choices=TRANSPORTS, default=list(TRANSPORTS))
    args = parser.parse_args()
    calls = [CHECK_CALLS[i % len(CHECK_CALLS)][0:1] + (i + 1,) for i in range(args.calls)]
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        logs = {"clean": Path(tmp) / "clean.jsonl", "slow": Path(tmp) / "slow.jsonl"}
        urls = {"clean": stack.enter_context(reference_agent("--turn-log", str(logs["clean"]))),
                "slow": stack.enter_context(reference_agent(
                    "--turn-log", str(logs["slow"]), "--response-delay-ms", str(PLANTED_MS)))}
        by_transport = asyncio.run(_measure(urls, logs, args.transports, calls))
    write_result("transport_agreement", {
        "about": ("the same calls over each transport to a clean reference agent and one "
                  f"with --response-delay-ms {PLANTED_MS}; medians over the turns of calls "
                  "whose caller and agent both paced on time (all turns when none did); "
                  "latency_minus_gap: callfleet's latency minus the agent's own gap for the "
                  "same turn (the media path)"),
        "command": "benchmarks/transport_agreement.py " + " ".join(sys.argv[1:]),
        "calls": [f"{p}-{s}" for p, s in calls],
        **_verdict(by_transport),
        "by_transport": by_transport,
        "wall_s": round(time.monotonic() - started, 1),
    })


if __name__ == "__main__":
    main()
