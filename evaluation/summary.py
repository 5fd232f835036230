"""Run aggregates (summary.json per DESIGN.md's output contract) from CallRecord dicts."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

import numpy as np

Cache = dict[int, list[float]]
SATURATED_PACING_MS = 20.0  # generator p99 lateness above which its own latency numbers lie
# Replies ready after their planned time: above this share the callers were overloaded (a
# caller has its reply within ~0.5 s of the agent's end when it has the CPU it needs).
OVERLOADED_REPLY_LATE_RATE = 0.05
KNEE_LATENCY_FACTOR = 2.0  # knee: p95 latency above this multiple of the lowest level's...
KNEE_COMPLETION_DROP = 0.05  # ...or completion more than this many (5) points below it
# Packet loss (%) from which a call's misunderstood facts may be the network's, not the agent's
# (a bad line, not the background loss of a healthy one).
NETWORK_DEGRADED_LOSS_PCT = 5.0


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile rounded to 0.1, or None when there are no values."""
    if not values:
        return None
    return round(float(np.percentile(values, q, method="linear")), 1)


def mean(values: list[float], ndigits: int = 1) -> float | None:
    """Rounded mean, or None when there are no values."""
    return round(sum(values) / len(values), ndigits) if values else None


def _rate(num: float, den: float) -> float | None:
    return round(num / den, 4) if den else None


def _number(value: Any) -> float | None:
    """A finite number or None: NaN/inf from a broken stat must not poison the aggregate."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _numbers(values: Any) -> list[float]:
    # Fast path for the common case (plain finite floats): this runs for every latency.
    out = []
    for x in values or ():
        if type(x) is float:
            if x - x == 0.0:  # finite: inf - inf and nan - nan are nan
                out.append(x)
        else:
            v = _number(x)
            if v is not None:
                out.append(v)
    return out


def _metric(record: dict[str, Any], name: str) -> Any:
    return (record.get("metrics") or {}).get(name)


def _latencies(records: list[dict[str, Any]], cache: Cache | None = None) -> list[float]:
    """Every response latency of these calls, pooled; `cache` memoises per-record extraction
    within one summarize() call, which slices the same records five ways."""
    if cache is None:
        return [v for r in records for v in _numbers(_metric(r, "response_latency_ms"))]
    out: list[float] = []
    for r in records:
        values = cache.get(id(r))
        if values is None:
            values = cache[id(r)] = _numbers(_metric(r, "response_latency_ms"))
        out.extend(values)
    return out


def _calls(records: list[dict[str, Any]], planned: int | None) -> dict[str, Any]:
    started = len(records)
    completed = sum(1 for r in records if r.get("status") == "completed")
    planned = started if planned is None else planned
    reasons = Counter(
        r.get("failure_reason") or "unknown" for r in records if r.get("status") != "completed"
    )
    return {
        "planned": planned,
        "started": started,
        "completed": completed,
        "failed": started - completed,
        "not_started": max(planned - started, 0),
        "failure_reasons": dict(sorted(reasons.items())),
    }


def _completion(records: list[dict[str, Any]], planned: int | None) -> dict[str, Any]:
    """Completion over the calls placed (a time-boxed phase may end before every planned call
    was placed: those are counted apart, as not placed); task completion also needs every
    observed fact understood (DESIGN.md)."""
    n = len(records)
    completed = [r for r in records if r.get("status") == "completed"]
    return {
        "rate": _rate(len(completed), n),
        "task_rate": _rate(sum(1 for r in completed if _all_correct(r)), n),
        "n": n,
        "not_placed": max((planned or 0) - n, 0),
    }


def _latency(records: list[dict[str, Any]], cache: Cache | None = None) -> dict[str, Any]:
    values = _latencies(records, cache)
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "mean": mean(values),
        "n": len(values),
    }


def _barge_in(records: list[dict[str, Any]]) -> dict[str, Any]:
    values = [v for r in records for v in _numbers(_metric(r, "barge_in_stop_ms"))]
    not_stopped = sum(int(_metric(r, "barge_in_not_stopped") or 0) for r in records)
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "n": len(values),
        "not_stopped": not_stopped,
    }


def _understanding(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Rates over observed facts only: a fact the agent never confirmed nor reported is counted
    as not observed, never as misunderstood."""
    graded = [u for u in (r.get("understanding") for r in records) if u and "correct" in u]
    by_entity: dict[str, list[bool]] = defaultdict(list)
    unseen: Counter[str] = Counter()
    for u in graded:
        for name, ok in (u.get("correct") or {}).items():
            by_entity[name].append(bool(ok))
        unseen.update(u.get("not_observed") or ())
    scored = [u["correct"] for u in graded if u.get("correct")]  # at least one fact observed
    observed = sum(len(oks) for oks in by_entity.values())
    return {
        "by_entity": {
            name: {"rate": _rate(sum(by_entity[name]), len(by_entity[name])),
                   "n": len(by_entity[name]), "not_observed": unseen[name],
                   "expected": len(by_entity[name]) + unseen[name]}
            for name in sorted({*by_entity, *unseen})
        },
        "all_correct_rate": _rate(sum(all(c.values()) for c in scored), len(scored)),
        "n": len(scored),
        # Every observed fact of every call pooled: the run's understanding in one figure.
        "facts_rate": _rate(sum(sum(oks) for oks in by_entity.values()), observed),
        "facts_observed": observed,
        "facts_expected": observed + sum(unseen.values()),
    }


def _agent_hearing(records: list[dict[str, Any]]) -> dict[str, Any]:
    """How well the agent heard the callers, by its own transcripts (agents that report them)."""
    wers = _numbers(t.get("wer") for r in records for t in _metric(r, "agent_hearing") or ())
    offsets = [v for r in records for v in _numbers(_metric(r, "agent_reported_onset_offset_ms"))]
    return {"wer_mean": mean(wers, 4), "turns": len(wers),
            "reported_onset_offset_ms": {"p50": percentile(offsets, 50),
                                         "p95": percentile(offsets, 95), "n": len(offsets)}}


def _turn_taking(records: list[dict[str, Any]]) -> dict[str, Any]:
    # Calls that failed before any audio have no metrics; averaging them in would flatter the agent.
    measured = [r for r in records if r.get("metrics")]

    def total(name: str) -> int:
        return sum(int(_metric(r, name) or 0) for r in measured)

    n = len(measured)
    return {
        "talk_over_per_call": _rate(total("talk_over"), n),
        "false_yield_rate": _rate(total("false_yield"), total("backchannels")),
        "premature_cutoff_per_call": _rate(total("premature_cutoff"), n),
        "dead_air_per_call": _rate(total("dead_air"), n),
        "false_yields": total("false_yield"),
        "backchannels": total("backchannels"),
        "calls_measured": n,
    }


def _network(records: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("jitter_ms", "packet_loss_pct", "rtt_ms"):
        values = _numbers((r.get("network") or {}).get(key) for r in records)
        out[key] = mean(values, 2)
    out["n"] = sum(1 for r in records if r.get("network"))
    return out


def loss_pct(record: dict[str, Any]) -> float | None:
    """A call's worst packet loss in %: what its transport measured (the agent's audio as the
    caller received it) or the persona's simulated line loss (the caller's audio as sent: what
    the agent had to understand); None when neither is known."""
    line = (record.get("transport") or {}).get("line")
    values = [v for v in (_number((record.get("network") or {}).get("packet_loss_pct")),
                          _number(line.get("packet_loss_pct") if isinstance(line, dict) else None))
              if v is not None]
    return max(values) if values else None


def network_degraded(record: dict[str, Any]) -> bool:
    """The call lost >= NETWORK_DEGRADED_LOSS_PCT of its packets (unknown loss: not lossy)."""
    loss = loss_pct(record)
    return loss is not None and loss >= NETWORK_DEGRADED_LOSS_PCT


def _loss_group(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Understanding errors of one side of the attribution: calls, those graded, those with a
    fact wrong, and the share of observed facts wrong."""
    graded = [c for c in ((r.get("understanding") or {}).get("correct") for r in records) if c]
    observed = sum(len(c) for c in graded)
    return {"calls": len(records), "scored": len(graded),
            "with_errors": sum(not all(c.values()) for c in graded),
            "facts_wrong_rate": _rate(sum(not ok for c in graded for ok in c.values()), observed),
            "facts_observed": observed}


def _share(rate: float) -> str:
    return f"{round(rate * 100, 1):g} %"


def _verdict(lossy: dict[str, Any], clean: dict[str, Any], blamed: bool) -> str:
    """One honest sentence: blame the network only when its lossy calls did worse."""
    at = f">= {NETWORK_DEGRADED_LOSS_PCT:g} % packet loss"
    n, wrong, base = lossy["scored"], lossy["facts_wrong_rate"], clean["facts_wrong_rate"]
    calls = f"call{'' if n == 1 else 's'} with {at}"
    if not lossy["calls"]:
        return f"no call had {at}: no understanding error is attributed to the network"
    if not n:
        return (f"{lossy['calls']} call{'' if lossy['calls'] == 1 else 's'} had {at} but none "
                "had a fact graded: nothing is attributed to the network")
    if blamed and base is None:
        return (f"understanding degraded on {lossy['with_errors']} of {n} {calls} (facts wrong "
                f"{_share(wrong)}; no other graded call to compare with): likely the network")
    if blamed:
        return (f"understanding degraded on {lossy['with_errors']} of {n} {calls} (facts wrong "
                f"{_share(wrong)} vs {_share(base)} on the other calls): likely the network, "
                "not the agent")
    if not lossy["with_errors"]:
        return (f"the {n} {calls} understood every observed fact: nothing is attributed to the "
                "network")
    return (f"the {n} {calls} {'was' if n == 1 else 'were'} not worse than the others (facts "
            f"wrong {_share(wrong)} vs {_share(base)}): their errors are not attributed to the "
            "network")


def _network_attribution(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether packet loss explains the misunderstandings: the calls at >= 5 % loss against the
    rest (under 5 % or not measured). Their errors are `attributed` to the network only when
    they did worse than the rest, or when there is no rest to compare with."""
    sides: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
    for r in records:
        sides[network_degraded(r)].append(r)  # [0]: the rest, [1]: the lossy calls
    clean, lossy = map(_loss_group, sides)
    wrong, base = lossy["facts_wrong_rate"], clean["facts_wrong_rate"]
    blamed = bool(lossy["with_errors"]) and (base is None or wrong > base)
    return {"loss_threshold_pct": NETWORK_DEGRADED_LOSS_PCT, "lossy": lossy, "clean": clean,
            "attributed": lossy["with_errors"] if blamed else 0,
            "verdict": _verdict(lossy, clean, blamed)}


def _mos(records: list[dict[str, Any]], key: str) -> list[float]:
    return _numbers(((r.get("audio_quality") or {}).get("dnsmos") or {}).get(key)
                    for r in records)


def _mos_at(values: list[float], q: float) -> float | None:
    """A MOS percentile to 0.01 (a 1-5 scale: 0.1 steps would hide a real change)."""
    return round(float(np.percentile(values, q, method="linear")), 2) if values else None


def _audio_quality(records: list[dict[str, Any]]) -> dict[str, Any]:
    """How the agent sounded: DNSMOS OVRL (p5: the worst calls; p50), SIG and BAK medians,
    PLCMOS over calls with packet loss, and why calls were not scored."""
    ovrl = _mos(records, "ovrl")
    plc = _numbers((r.get("audio_quality") or {}).get("plcmos") for r in records)
    blocks = [b for b in (r.get("audio_quality") for r in records) if isinstance(b, dict)]
    minutes = sum(_number(b.get("seconds_scored")) or 0.0 for b in blocks if b.get("dnsmos")) / 60
    cost = sum(_number(b.get("cost_s")) or 0.0 for b in blocks)
    return {
        "ovrl": {"p5": _mos_at(ovrl, 5), "p50": _mos_at(ovrl, 50), "n": len(ovrl)},
        "sig_p50": _mos_at(_mos(records, "sig"), 50),
        "bak_p50": _mos_at(_mos(records, "bak"), 50),
        "plcmos": {"p5": _mos_at(plc, 5), "p50": _mos_at(plc, 50), "n": len(plc)},
        "skipped": dict(Counter(str(b["skipped"]) for b in blocks if b.get("skipped"))),
        "cost_s_per_speech_minute": round(cost / minutes, 2) if minutes else None,
    }


def _concurrency(record: dict[str, Any]) -> int:
    value = _number(record.get("concurrency_at_start"))
    return int(value) if value is not None else 0


def _all_correct(record: dict[str, Any]) -> bool | None:
    """Whether every graded fact was understood; None for a call that was never scored."""
    correct = (record.get("understanding") or {}).get("correct")
    return all(correct.values()) if correct else None


def _group(records: list[dict[str, Any]], cache: Cache | None = None) -> dict[str, Any]:
    """The per-slice block (persona, phase): calls, completion, latency, understanding, with n."""
    latencies = _latencies(records, cache)
    completed = sum(1 for r in records if r.get("status") == "completed")
    scored = [ok for ok in map(_all_correct, records) if ok is not None]
    return {
        "calls": len(records),
        "completed": completed,
        "completion_rate": _rate(completed, len(records)),
        "latency_ms": {
            "p50": percentile(latencies, 50),
            "p95": percentile(latencies, 95),
            "p99": percentile(latencies, 99),
            "n": len(latencies),
        },
        "understanding": {"all_correct_rate": _rate(sum(scored), len(scored)), "n": len(scored)},
        "task_success_rate": _task(records)["success_rate"],
    }


def _grouped(records: list[dict[str, Any]], key: Any) -> dict[Any, list[dict[str, Any]]]:
    groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[key(r)].append(r)
    return groups


def _by(field: str, records: list[dict[str, Any]], cache: Cache | None = None
        ) -> dict[str, Any]:
    """The per-slice blocks of one record field (persona, scenario)."""
    groups = _grouped(records, lambda r: str(r.get(field) or "unknown"))
    return {name: _group(group, cache) for name, group in sorted(groups.items())}


def _task(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Task success by the scenarios' criteria, over calls that reached a conversation; the
    checks that failed, counted by name."""
    tasks = [t for t in (r.get("task") for r in records) if t and "success" in t]
    failed: Counter[str] = Counter(name for t in tasks
                                   for name, ok in (t.get("checks") or {}).items() if not ok)
    return {"success_rate": _rate(sum(bool(t["success"]) for t in tasks), len(tasks)),
            "n": len(tasks), "failed_checks": dict(failed.most_common())}


def _by_concurrency(records: list[dict[str, Any]], cache: Cache | None = None
                    ) -> list[dict[str, Any]]:
    rows = []
    for level, group in sorted(_grouped(records, _concurrency).items()):
        latencies = _latencies(group, cache)
        completed = sum(1 for r in group if r.get("status") == "completed")
        rows.append({
            "concurrency": level,
            "calls": len(group),
            "latency_p95_ms": percentile(latencies, 95),
            "completion_rate": _rate(completed, len(group)),
            "latency_p50_ms": percentile(latencies, 50),
            "latency_p99_ms": percentile(latencies, 99),
            "latency_n": len(latencies),
            "completed": completed,
            "mos_ovrl_p5": _mos_at(ovrl := _mos(group, "ovrl"), 5),
            "mos_ovrl_p50": _mos_at(ovrl, 50),
            "mos_n": len(ovrl),
        })
    return rows


def find_knee(curve: list[dict[str, Any]]) -> dict[str, Any]:
    """The first level past the lowest where p95 latency > 2x the lowest's, or completion is
    more than 5 points below it. Levels without latency data are judged on completion only."""
    if not curve:
        return {"baseline_concurrency": None, "knee": None, "reason": None}
    base = curve[0]
    base_p95, base_done = base.get("latency_p95_ms"), base.get("completion_rate")
    for row in curve[1:]:
        p95, done = row.get("latency_p95_ms"), row.get("completion_rate")
        if base_p95 is not None and p95 is not None and p95 > KNEE_LATENCY_FACTOR * base_p95:
            reason = (f"p95 latency {p95:g} ms > {KNEE_LATENCY_FACTOR:g}x baseline "
                      f"{base_p95:g} ms (concurrency {base['concurrency']})")
            return {"baseline_concurrency": base["concurrency"], "knee": row["concurrency"],
                    "reason": reason}
        # Rates are rounded to 4 places: compare with a hair of slack so 5.00 points is no knee.
        drop = None if base_done is None or done is None else base_done - done
        if drop is not None and drop > KNEE_COMPLETION_DROP + 1e-9:
            reason = (f"completion {done:.1%} is more than {KNEE_COMPLETION_DROP * 100:g} points "
                      f"below baseline {base_done:.1%} (concurrency {base['concurrency']})")
            return {"baseline_concurrency": base["concurrency"], "knee": row["concurrency"],
                    "reason": reason}
    return {"baseline_concurrency": base["concurrency"], "knee": None, "reason": None}


def _degradation(curve: list[dict[str, Any]]) -> dict[str, Any]:
    points = [
        {k: row[k] for k in ("concurrency", "calls", "latency_p95_ms", "completion_rate")}
        for row in curve
    ]
    return {"curve": points, **find_knee(points)}


def _phase(record: dict[str, Any]) -> str | None:
    phase = record.get("phase")
    return None if phase is None or phase == "" else str(phase)


def _generator(records: list[dict[str, Any]]) -> dict[str, Any]:
    def worst(key: str) -> float | None:
        values = _numbers((r.get("generator") or {}).get(key) for r in records)
        return round(max(values), 1) if values else None

    pacing = worst("pacing_late_ms_p99")
    replies = late = 0
    ready: list[float] = []
    ahead = Counter()
    for r in records:
        generator = r.get("generator") or {}
        replies += sum(1 for e in r.get("events") or () if e.get("kind") == "brain_reply")
        late += len(generator.get("reply_late_ms") or ())
        ready += _numbers(generator.get("reply_ready_ms"))
        spoken = generator.get("spoken_ahead")
        if isinstance(spoken, dict):
            ahead.update({k: int(_number(spoken.get(k)) or 0) for k in ("lines", "used")})
    late_rate = _rate(late, replies)
    return {
        "pacing_late_ms_p99": pacing,
        "loop_lag_ms_p99": worst("loop_lag_ms_p99"),
        "saturated": pacing is not None and pacing > SATURATED_PACING_MS,
        # Caller replies not ready at their planned time (an overloaded caller answers late).
        "reply_late_rate": late_rate,
        "replies": replies,
        "replies_overloaded": late_rate is not None and late_rate > OVERLOADED_REPLY_LATE_RATE,
        # From the end of the agent's turn to the caller's reply decided and synthesized.
        "reply_ready_ms": {"p50": percentile(ready, 50), "p95": percentile(ready, 95),
                           "n": len(ready)},
        # lines the callers synthesized ahead, and how many their replies then used
        "spoken_ahead": {"lines": ahead["lines"], "used": ahead["used"]},
        "tts_cache": _tts_cache(records),
    }


def generator_warnings(summary: dict[str, Any]) -> list[str]:
    """What says the callers, not the agent, limited this run's figures (report, terminal)."""
    generator = summary.get("generator") or {}
    out = []
    if generator.get("saturated"):
        out.append("the callers themselves were overloaded (pacing p99 > "
                   f"{SATURATED_PACING_MS:.0f} ms): latency figures from this run are not "
                   "trustworthy")
    if generator.get("replies_overloaded"):
        ready = (generator.get("reply_ready_ms") or {}).get("p95")
        out.append(f"{generator['reply_late_rate']:.0%} of the callers' replies were ready after "
                   "the persona's reply time (ready p95 "
                   f"{'-' if ready is None else f'{ready:.0f}'} ms after the agent's end): the "
                   "callers were overloaded, so their turn timing is later than the personas ask")
    return out


def _tts_cache(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The callers' speech served from the hosts' TTS caches, summed over calls."""
    hits = misses = 0
    for r in records:
        counts = (r.get("generator") or {}).get("tts_cache")
        if not isinstance(counts, dict):
            continue
        hits += int(_number(counts.get("hits")) or 0)
        misses += int(_number(counts.get("misses")) or 0)
    return {"hits": hits, "misses": misses, "hit_rate": _rate(hits, hits + misses)}


def _brain(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Who decided the callers' words: a run whose LLM kept failing must say so."""
    replies = llm = fallbacks = 0
    for r in records:
        for e in r.get("events") or ():
            kind = e.get("kind")
            if kind == "brain_reply":
                replies += 1
                llm += e.get("source") == "llm"
            elif kind == "brain_fallback":
                fallbacks += 1
    return {"replies": replies, "llm_replies": llm, "fallbacks": fallbacks,
            "fallback_rate": _rate(fallbacks, replies)}


def summarize(
    records: list[dict[str, Any]],
    *,
    run_id: str,
    target: str,
    planned: int | None = None,
    partial: bool = False,
) -> dict[str, Any]:
    """Build summary.json's dict from CallRecord dicts; gates are filled in later."""
    cache: Cache = {}  # id(record) -> its latencies, valid while `records` is alive
    by_concurrency = _by_concurrency(records, cache)
    degradation = _degradation(by_concurrency)
    by_phase: dict[str, Any] = {}
    if any(_phase(r) is not None for r in records):
        # Order phases as they first appear (ramp, then hold, then spike...), not alphabetically.
        phases = _grouped(records, lambda r: _phase(r) or "none")
        degradation["by_phase"] = {}
        for name, group in phases.items():
            rows = _by_concurrency(group, cache)
            by_phase[name] = {**_group(group, cache), "by_concurrency": rows}
            degradation["by_phase"][name] = _degradation(rows)
    return {
        "run_id": run_id,
        "target": target,
        "partial": bool(partial),
        "calls": _calls(records, planned),
        "completion": _completion(records, planned),
        "latency_ms": _latency(records, cache),
        "barge_in_stop_ms": _barge_in(records),
        "understanding": {**_understanding(records),
                          "network_attribution": _network_attribution(records)},
        "agent_hearing": _agent_hearing(records),
        "turn_taking": _turn_taking(records),
        "network": _network(records),
        "audio_quality": _audio_quality(records),
        "by_concurrency": by_concurrency,
        "by_persona": _by("persona", records, cache),
        "by_scenario": _by("scenario", records, cache),
        "task": _task(records),
        "by_phase": by_phase,
        "degradation": degradation,
        "gates": [],
        "generator": _generator(records),
        "brain": _brain(records),
    }
