"""Per-call turn-taking metrics from a call's timeline events (DESIGN.md definitions)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

Event = dict[str, Any]


@dataclass(frozen=True)
class Interval:
    """A half-open stretch [start, end) of one kind of activity on the caller's clock."""

    start: float
    end: float
    open: bool = False  # no end event: the call ended while this was still going
    info: dict[str, Any] = field(default_factory=dict, compare=False)

    def contains(self, t: float) -> bool:
        return self.start <= t < self.end


def sorted_events(events: Iterable[Event]) -> list[Event]:
    """Events ordered by time; the sort is stable so same-time events keep the session's order."""
    return sorted((e for e in events if "kind" in e and "t_ms" in e), key=lambda e: e["t_ms"])


def end_time(events: list[Event]) -> float:
    """The call's last known time: the latest event."""
    return max((float(e["t_ms"]) for e in events), default=0.0)


def intervals(events: list[Event], start_kind: str, end_kind: str) -> list[Interval]:
    """Pair start/end events into intervals; an unterminated one ends at the last event time."""
    out: list[Interval] = []
    current: Event | None = None
    for e in sorted_events(events):
        if e["kind"] == start_kind and current is None:
            current = e
        elif e["kind"] == end_kind and current is not None:
            out.append(Interval(float(current["t_ms"]), float(e["t_ms"]), info=current))
            current = None
        # A repeated start or an orphan end is a logging glitch: ignore rather than invent speech.
    if current is not None:
        out.append(Interval(float(current["t_ms"]), end_time(events), open=True, info=current))
    return out


def _mode(iv: Interval) -> str:
    return iv.info.get("mode") or "turn"


def _covering(segments: list[Interval], t: float) -> Interval | None:
    return next((s for s in segments if s.contains(t)), None)


@dataclass(frozen=True)
class Finding:
    """One graded moment of a call: what (a DESIGN.md metric), when, and how long if timed."""

    kind: str  # response | dead_air | barge_in | barge_in_not_stopped | talk_over |
    #            premature_cutoff | false_yield
    t_ms: float
    ms: float | None = None  # latency, barge-in stop time, or length of the silence


def _responses(
    ctes: list[float], agent: list[Interval], caller: list[Interval], call_end: float,
    dead_air_ms: float,
) -> list[Finding]:
    """A response latency and/or dead air, one look per caller turn end."""
    turn_starts = sorted(s.start for s in caller if _mode(s) != "backchannel")
    found: list[Finding] = []
    for cte in ctes:
        # Agent already talking at CTE: its response began before the caller finished (negative
        # latency), which is talk-over or a cut-off, never a latency.
        if any(a.start < cte < a.end for a in agent):
            continue
        # A response belongs to this CTE only until the caller starts another turn.
        next_turn = next((t for t in turn_starts if t > cte), None)
        window_end = call_end if next_turn is None else next_turn
        start = next((a.start for a in agent if cte <= a.start < window_end), None)
        if start is not None:
            found.append(Finding("response", cte, round(start - cte, 1)))
        # Silence lasts until the agent speaks, the caller speaks again, or the call ends.
        silence_end = min(x for x in (start, next_turn, call_end) if x is not None)
        if silence_end - cte > dead_air_ms:
            found.append(Finding("dead_air", cte, round(silence_end - cte, 1)))
    return found


def _barge_ins(
    agent: list[Interval], caller: list[Interval], not_stopped_ms: float
) -> list[Finding]:
    """How long barged-in agent speech went on, or that it kept talking past the limit."""
    found: list[Finding] = []
    barged: set[int] = set()
    for seg in caller:
        if _mode(seg) == "backchannel":
            continue
        a = _covering(agent, seg.start)
        # One measurement per agent segment: a second interruption of the same speech adds nothing.
        if a is None or id(a) in barged:
            continue
        barged.add(id(a))
        kept_talking = round(a.end - seg.start, 1)
        if kept_talking > not_stopped_ms:
            found.append(Finding("barge_in_not_stopped", seg.start, kept_talking))
        elif not a.open:  # a call that ended mid-speech tells nothing about stopping
            found.append(Finding("barge_in", seg.start, kept_talking))
    return found


def _false_yields(
    agent: list[Interval], backchannels: list[Interval], window_ms: float
) -> list[Finding]:
    """Backchannels during agent speech after which the agent fell silent within the window.

    The window runs from the backchannel's onset: an agent that yields reacts to the caller
    starting to talk, and a window from its end would also catch agents simply finishing
    their sentence just after a long "mm-hmm".
    """
    found: list[Finding] = []
    for bc in backchannels:
        a = _covering(agent, bc.start)
        if a is not None and not a.open and a.end <= bc.start + window_ms:
            found.append(Finding("false_yield", bc.start))
    return found


def _agent_starts(
    agent: list[Interval], caller: list[Interval], hesitations: list[Interval]
) -> list[Finding]:
    """Agent starts over a caller turn (talk-over) and inside a caller hesitation (cut-off)."""
    found: list[Finding] = []
    for a in agent:
        speaking = _covering(caller, a.start)
        # Speech over a backchannel is the agent keeping its turn; over caller speech that
        # itself began over the agent (a barge-in) it is judged by the barge-in metrics.
        barge_in = speaking is not None and _covering(agent, speaking.start) is not None
        if speaking is not None and _mode(speaking) == "turn" and not barge_in:
            found.append(Finding("talk_over", a.start))
        elif speaking is None and _covering(hesitations, a.start) is not None:
            found.append(Finding("premature_cutoff", a.start))
    return found


def timeline_findings(
    events: list[Event],
    *,
    dead_air_ms: float = 3000,
    not_stopped_ms: float = 2000,
    false_yield_ms: float = 500,
) -> list[Finding]:
    """Every graded moment of a call, in the order of the metric definitions."""
    events = sorted_events(events)
    agent = intervals(events, "agent_speech_start", "agent_speech_end")
    caller = intervals(events, "caller_speech_start", "caller_speech_end")
    hesitations = intervals(events, "hesitation_start", "hesitation_end")
    ctes = [float(e["t_ms"]) for e in events if e["kind"] == "caller_turn_end"]
    backchannels = [s for s in caller if _mode(s) == "backchannel"]
    return [
        *_responses(ctes, agent, caller, end_time(events), dead_air_ms),
        *_barge_ins(agent, caller, not_stopped_ms),
        *_agent_starts(agent, caller, hesitations),
        *_false_yields(agent, backchannels, false_yield_ms),
    ]


def call_metrics(
    events: list[Event],
    *,
    dead_air_ms: float = 3000,
    not_stopped_ms: float = 2000,
    false_yield_ms: float = 500,
) -> dict[str, Any]:
    """Compute the DESIGN.md per-call metrics (plus the backchannel count) from timeline events."""
    found = timeline_findings(events, dead_air_ms=dead_air_ms, not_stopped_ms=not_stopped_ms,
                              false_yield_ms=false_yield_ms)

    def timed(kind: str) -> list[float]:
        return [f.ms for f in found if f.kind == kind and f.ms is not None]

    def count(kind: str) -> int:
        return sum(1 for f in found if f.kind == kind)

    return {
        "response_latency_ms": timed("response"),
        "barge_in_stop_ms": timed("barge_in"),
        "barge_in_not_stopped": count("barge_in_not_stopped"),
        "talk_over": count("talk_over"),
        "false_yield": count("false_yield"),
        "premature_cutoff": count("premature_cutoff"),
        "dead_air": count("dead_air"),
        "backchannels": sum(1 for s in intervals(events, "caller_speech_start",
                                                 "caller_speech_end")
                            if _mode(s) == "backchannel"),
    }
