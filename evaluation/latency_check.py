"""callfleet's per-turn response latency against the agent's own account of the same turn.

An agent that logs, on its own clock, when the caller's sound last reached it and when its
reply started (the reference agent's --turn-log) gives each turn's gap without any of
callfleet's measurement in it. callfleet's latency for that turn minus that gap is the media
path both ways (constant) plus callfleet's measurement error (what varies): its spread over
many turns says how far a single latency figure can be trusted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from evaluation.metrics import timeline_findings

PAIR_WITHIN_MS = 300.0  # an agent reply and the speech callfleet heard are this close at most


@dataclass(frozen=True)
class TurnPair:
    """One caller turn seen from both ends; times in ms on the caller's clock."""

    call_id: str
    turn: int
    latency_ms: float  # callfleet: agent speech start - caller turn end
    gap_ms: float  # the agent: its reply start - the last caller sound it received
    uplink_ms: float  # the last caller sound reaching the agent - callfleet's caller turn end
    downlink_ms: float  # callfleet's agent speech start - the agent's reply start

    @property
    def error_ms(self) -> float:
        """latency - gap: the media path both ways plus callfleet's measurement error."""
        return self.latency_ms - self.gap_ms


def pair_turns(record: dict[str, Any], agent_entries: list[dict[str, Any]],
               caller_t0_monotonic: float) -> list[TurnPair]:
    """Pair each response latency of one call record with the agent's log entry for it.

    agent_entries: the agent's turn-log lines ("kind": "turn") for this call. Both clocks are
    time.monotonic() based (same machine), which places the agent's times on the caller's
    clock exactly; a reply pairs with the agent speech callfleet heard within PAIR_WITHIN_MS.
    """
    responses = [f for f in timeline_findings(record["events"]) if f.kind == "response"]
    pairs: list[TurnPair] = []
    used: set[int] = set()
    for f in responses:
        heard_start = f.t_ms + f.ms
        best, best_dt = None, PAIR_WITHIN_MS
        for i, e in enumerate(agent_entries):
            if i in used or e.get("last_caller_sound_ms") is None:
                continue
            shift = (e["t0_monotonic"] - caller_t0_monotonic) * 1000
            dt = abs(e["reply_start_ms"] + shift - heard_start)
            if dt < best_dt:
                best, best_dt = i, dt
        if best is None:
            continue
        used.add(best)
        e = agent_entries[best]
        shift = (e["t0_monotonic"] - caller_t0_monotonic) * 1000
        pairs.append(TurnPair(
            call_id=record["call_id"], turn=int(e.get("turn", best + 1)),
            latency_ms=float(f.ms), gap_ms=float(e["gap_ms"]),
            uplink_ms=round(e["last_caller_sound_ms"] + shift - f.t_ms, 2),
            downlink_ms=round(heard_start - (e["reply_start_ms"] + shift), 2)))
    return pairs


def spread(values: list[float]) -> dict[str, float | int | None]:
    """p5, median, p95 and p95 - p5 of a list of ms figures."""
    if not values:
        return {"n": 0, "p5": None, "median": None, "p95": None, "spread_p95_p5": None}
    p5, p50, p95 = np.percentile(values, [5, 50, 95])
    return {"n": len(values), "p5": round(float(p5), 1), "median": round(float(p50), 1),
            "p95": round(float(p95), 1), "spread_p95_p5": round(float(p95 - p5), 1)}


GENERATOR_LATE_MS = 20.0  # a side whose pacing p99 is later than this is not to be trusted


def accuracy_summary(pairs: list[TurnPair], trusted_calls: set[str] | None = None
                     ) -> dict[str, Any]:
    """The spread of latency - gap over all pairs, and of each direction of the media path;
    with trusted_calls, the same over the pairs of those calls only ("trusted")."""
    out: dict[str, Any] = {}
    if trusted_calls is not None:
        trusted = [p for p in pairs if p.call_id in trusted_calls]
        out["trusted"] = {k: v for k, v in accuracy_summary(trusted).items() if k != "pairs"}
    return {
        **out,
        "turns": len(pairs),
        "error_ms": spread([p.error_ms for p in pairs]),
        "uplink_ms": spread([p.uplink_ms for p in pairs]),
        "downlink_ms": spread([p.downlink_ms for p in pairs]),
        "pairs": [asdict(p) | {"error_ms": round(p.error_ms, 2)} for p in pairs],
    }


# Calls for a check: clean lines (the caller's own speech is what it sent), several voices and
# speaking rates, one after another (on 2 cores, concurrent calls make both sides late).
CHECK_CALLS = (("cooperative-john", 1), ("fast-talker-emily", 2), ("rambler-robert", 3),
               ("corrector-david", 4), ("cooperative-john", 5))


async def place_and_pair(url: str, turn_log: str, calls=CHECK_CALLS, models=None, target=None
                         ) -> tuple[list[TurnPair], list[dict[str, Any]]]:
    """Call the agent at url once per (persona, seed), one call at a time, over target (a
    callers.transport.Target; default json-offer to url/offer), and pair every response
    latency with the agent's turn log. Returns the pairs and per call {call_id, status, turns
    paired, network, generator}."""
    import asyncio
    import json
    from pathlib import Path

    from callers.persona import resolve_persona
    from callers.session import CallSession, load_caller_models
    from callers.transport import Target

    def entries() -> list[dict[str, Any]]:
        path = Path(turn_log)
        text = path.read_text() if path.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line]

    models = models or await load_caller_models()
    target = target or Target(url + "/offer")
    pairs, calls_out = [], []
    for persona_id, seed in calls:
        # Calls run one at a time, so the log lines written since the last call are this
        # call's, whichever id each transport gives it; the agent writes its "call" line last,
        # as its side closes.
        seen = len(entries())
        session = CallSession(resolve_persona(persona_id), seed, target, models,
                              call_id=f"{persona_id}-{seed}")
        record = (await session.run()).to_dict()
        for _ in range(50):
            mine_all = entries()[seen:]
            if any(e.get("kind") == "call" for e in mine_all):
                break
            await asyncio.sleep(0.1)
        mine = [e for e in mine_all if e.get("kind") == "turn"]
        agent_call = next((e for e in mine_all if e.get("kind") == "call"), {})
        paired = pair_turns(record, mine, session.clock.t0)
        pairs += paired
        caller_late = (record.get("generator") or {}).get("pacing_late_ms_p99")
        agent_late = agent_call.get("pacing_late_ms_p99")
        calls_out.append({
            "call_id": record["call_id"], "agent_call_id": agent_call.get("call_id"),
            "transport": target.transport, "status": record["status"],
            "failure_reason": record["failure_reason"], "agent_turns": len(mine),
            "paired": len(paired),
            # both generators on time: otherwise the figures are not to be trusted (DESIGN.md)
            "trusted": (caller_late is not None and caller_late <= GENERATOR_LATE_MS
                        and agent_late is not None and agent_late <= GENERATOR_LATE_MS),
            "caller_pacing_late_ms_p99": caller_late, "agent_pacing_late_ms_p99": agent_late,
            "network": record.get("network"),
            "agent_receive": {k: v for k, v in agent_call.items() if k.startswith("receive")}})
    return pairs, calls_out
