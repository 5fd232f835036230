"""Faults injected into real calls (issue 13): bad networks, a killed agent, an interrupted
driver, a killed CallerHost. Each fault is benchmarks/faults.py's own function, so the test and
the benchmark measure the same thing; here every fault runs at once, on short scripted calls
to lean reference agents on 127.0.0.1 (no Whisper anywhere), bounded by RUN_LIMIT_S.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import faults  # noqa: E402

pytestmark = pytest.mark.e2e

# Four caller lines, ~12 s a call: three response latencies each, mid-call at 5 s.
SCRIPT = {"id": "fault-card-dispute", "goal": "Start a card dispute, then hang up.",
          "flow": "card_dispute",
          "script": [{"say": "I want to dispute a charge on my card.", "after_agent_ms": 600},
                     {"say": "John.", "after_agent_ms": 600},
                     {"say": "Smith.", "after_agent_ms": 600},
                     {"say": "Sorry, I have to go. Goodbye.", "after_agent_ms": 600}]}
BLACKHOLE_AT_S = 5.0


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("faults")
    scenario = tmp / "fault-card-dispute.yaml"
    scenario.write_text(yaml.safe_dump(SCRIPT))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(faults, "SCENARIO", str(scenario))
        got = asyncio.run(_all(tmp))
    for r in got:
        print(f"\n{r['fault']}: {r['outcome']} ({r.get('wall_s')} s)\n  {faults.brief(r)}")
    return {r["fault"]: r for r in got}


async def _all(tmp: Path) -> list[dict]:
    caller = faults.Caller(tmp)
    await caller.host.ready()
    caller.barrier = asyncio.Barrier(6)  # the network calls start together: 3 loss, 2 delay, 1
    network = [faults.fault_loss(caller, tmp, 1), faults.fault_loss(caller, tmp, 5),
               faults.fault_loss(caller, tmp, 10),
               faults.fault_delay(caller, tmp, no_jitter_twin=False),
               faults.fault_blackhole(caller, tmp, start_s=BLACKHOLE_AT_S)]
    # Four calls, two at a time: two in flight when the fault strikes, two after it.
    process = [faults.fault_agent_killed(tmp, calls=4, transport="sip"),
               faults.fault_driver_signal(tmp, signal.SIGINT, calls=4),
               faults.fault_driver_signal(tmp, signal.SIGTERM, calls=4),
               faults.fault_host_killed(tmp, calls=4, concurrency=2)]
    names = ["loss_1", "loss_5", "loss_10", "delay", "blackhole", "agent_killed_sip",
             "driver_SIGINT", "driver_SIGTERM", "host_killed"]
    return list(await asyncio.gather(*(faults.guarded(name, coro, 2 * faults.RUN_LIMIT_S)
                                       for name, coro in zip(names, network + process,
                                                             strict=True))))


@pytest.mark.parametrize("pct", [1, 5, 10])
def test_lossy_calls_end_named_and_measure_the_loss_the_relay_made(results, pct):
    r = results[f"loss_{pct}"]
    m = r["measured"]
    assert m["status"] == "completed" or m["failure_reason"], r["outcome"]
    assert m["rtp_lost"] > 0  # loss happened, and the caller saw it
    assert abs(m["packet_loss_pct"] - r["relay"]["down_loss_pct"]) <= 1.0, faults.brief(r)


def test_delay_with_jitter_raises_latency_by_the_round_trip_and_jitter_is_reported(results):
    r = results["delay"]
    m = r["measured"]
    assert m["delayed"]["status"] == "completed", r["outcome"]
    assert abs(m["rise_paired_ms"] - 200) <= 40, (m["rise_paired_ms"], faults.brief(r))
    assert r["checks"]["jitter_reported"], faults.brief(r)
    # The jitter buffer put overtaken packets back: +-30 ms reorders about a fifth of them
    # (test_impair); late past its 60 ms hold were 0-2 on a quiet machine, 12 of 1,069 with
    # every fault's call and four Ray start-ups at once on 2 cores.
    assert m["delayed"]["rtp_late"] <= 0.03 * m["delayed"]["rtp_received"], faults.brief(r)


def test_a_blackhole_ends_the_call_as_media_timeout_and_keeps_what_came_before(results):
    r = results["blackhole"]
    m = r["measured"]
    assert m["failure_reason"] == "media_timeout", r["outcome"]
    assert 0 < m["ended_s_after_cut"] <= 45
    assert m["turns_before_cut"] >= 1 and m["events_before_cut"] >= 2


def test_a_killed_agent_fails_in_flight_calls_named_and_later_ones_fast(results):
    r = results["agent_killed_sip"]
    assert r["passed"], (r["checks"], r["outcome"])
    m = r["measured"]
    # No BYE, no RTP: a call the agent was talking to ends media_timeout. A call started just
    # before the kill (its slot freed as the agent logged the other in flight) may never have
    # heard the agent: no_agent_audio, also right (a clean-clone CI run saw one).
    reasons = m["in_flight_reasons"]
    assert reasons.get("media_timeout", 0) >= 1 and set(reasons) <= {"media_timeout",
                                                                       "no_agent_audio"}
    assert all(s <= 5.0 for s in m["later_calls_time_to_fail_s"])
    assert m["exit_code"] == 1  # the gate verdict (completion), not a crash


@pytest.mark.parametrize("name", ["driver_SIGINT", "driver_SIGTERM"])
def test_an_interrupted_run_exits_3_partial_and_report_rebuilds_it(results, name):
    r = results[name]
    assert r["passed"], (r["checks"], r["outcome"])
    m = r["measured"]
    assert m["exit_code"] == 3 and m["summary_partial"] is True
    assert m["recorded"] == m["unique_call_ids"] >= m["agent_saw_calls"]


def test_a_killed_caller_host_loses_its_calls_named_and_the_run_goes_on(results):
    r = results["host_killed"]
    assert r["passed"], (r["checks"], r["outcome"])
    statuses = r["measured"]["statuses"]
    assert statuses.get("failed:caller_host_lost", 0) >= 1
    assert statuses.get("completed:None", 0) >= 1  # the replacement host placed later calls
