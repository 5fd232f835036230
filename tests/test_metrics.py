"""Per-call metric definitions pinned on synthetic timelines with known answers."""

from evaluation.metrics import call_metrics, intervals


def ev(kind, t, **extra):
    return {"kind": kind, "t_ms": t, **extra}


def agent(start, end=None):
    out = [ev("agent_speech_start", start)]
    return out + ([ev("agent_speech_end", end)] if end is not None else [])


def caller(start, end, mode=None, cte=True):
    extra = {"mode": mode} if mode else {}
    out = [ev("caller_speech_start", start, **extra), ev("caller_speech_end", end)]
    return out + ([ev("caller_turn_end", end)] if cte else [])


def hangup(t, by="caller"):
    return [ev("hangup", t, by=by)]


def test_all_fields_present_on_an_empty_timeline():
    m = call_metrics([])
    assert m == {
        "response_latency_ms": [],
        "barge_in_stop_ms": [],
        "barge_in_not_stopped": 0,
        "talk_over": 0,
        "false_yield": 0,
        "premature_cutoff": 0,
        "dead_air": 0,
        "backchannels": 0,
    }


def test_response_latency_is_first_agent_start_after_cte_minus_cte():
    events = agent(0, 2000) + caller(2500, 4000) + agent(4730, 6000) + agent(6400, 7000)
    events += caller(7500, 8200) + agent(8300, 9000) + hangup(9500)
    assert call_metrics(events)["response_latency_ms"] == [730.0, 100.0]


def test_events_out_of_order_give_the_same_answer():
    events = agent(0, 2000) + caller(2500, 4000) + agent(4730, 6000) + hangup(6500)
    assert call_metrics(list(reversed(events)))["response_latency_ms"] == [730.0]


def test_agent_start_exactly_at_cte_is_zero_latency_not_talk_over():
    m = call_metrics(caller(1000, 2000) + agent(2000, 3000) + hangup(3500))
    assert m["response_latency_ms"] == [0.0]
    assert m["talk_over"] == 0


def test_agent_start_just_before_cte_is_talk_over_not_negative_latency():
    m = call_metrics(caller(1000, 2000) + agent(1980, 3000) + hangup(3500))
    assert m["response_latency_ms"] == []
    assert m["talk_over"] == 1


def test_talk_over_that_stops_then_a_real_response_gets_a_latency():
    events = caller(1000, 3000) + agent(1500, 1700) + agent(3400, 5000) + hangup(5500)
    m = call_metrics(events)
    assert m["talk_over"] == 1
    assert m["response_latency_ms"] == [400.0]


def test_no_agent_speech_after_cte_gives_no_latency():
    m = call_metrics(agent(0, 1000) + caller(1500, 2500) + hangup(3000))
    assert m["response_latency_ms"] == []


def test_agent_answer_after_the_caller_spoke_again_belongs_to_the_later_turn():
    events = caller(0, 1000) + caller(2000, 2500) + agent(2900, 4000) + hangup(4500)
    assert call_metrics(events)["response_latency_ms"] == [400.0]


def test_barge_in_stop_latency_counts_until_agent_silence():
    events = agent(0, 1350) + caller(1000, 1800, mode="barge_in") + agent(2300, 3000)
    m = call_metrics(events + hangup(3500))
    assert m["barge_in_stop_ms"] == [350.0]
    assert m["barge_in_not_stopped"] == 0
    # The agent stopped: its next start answers the barge-in turn.
    assert m["response_latency_ms"] == [500.0]


def test_barge_in_not_stopped_after_two_seconds():
    events = agent(0, 3100) + caller(1000, 1600, mode="barge_in") + hangup(4000)
    m = call_metrics(events)
    assert m["barge_in_stop_ms"] == []
    assert m["barge_in_not_stopped"] == 1


def test_barge_in_stopping_at_exactly_two_seconds_is_still_stopped():
    m = call_metrics(agent(0, 3000) + caller(1000, 1600, mode="barge_in") + hangup(4000))
    assert m["barge_in_stop_ms"] == [2000.0]
    assert m["barge_in_not_stopped"] == 0


def test_barge_in_when_the_call_ends_within_two_seconds_is_undecided():
    m = call_metrics(agent(0) + caller(1000, 1500, mode="barge_in") + hangup(1800))
    assert m["barge_in_stop_ms"] == []
    assert m["barge_in_not_stopped"] == 0


def test_unterminated_agent_speech_past_two_seconds_is_not_stopped():
    m = call_metrics(agent(0) + caller(1000, 1500, mode="barge_in") + hangup(3500))
    assert m["barge_in_not_stopped"] == 1


def test_caller_turn_starting_over_agent_speech_is_measured_as_a_barge_in():
    m = call_metrics(agent(0, 1200) + caller(1000, 1800) + hangup(2500))
    assert m["barge_in_stop_ms"] == [200.0]


def test_two_interruptions_of_one_agent_segment_are_measured_once():
    events = agent(0, 5000) + caller(1000, 1400, mode="barge_in")
    events += caller(2000, 2400, mode="barge_in") + hangup(6000)
    assert call_metrics(events)["barge_in_not_stopped"] == 1


def test_agent_restarting_during_a_barge_in_is_not_talk_over():
    events = agent(0, 1300) + caller(1000, 2500, mode="barge_in") + agent(1800, 3000)
    m = call_metrics(events + hangup(3500))
    assert m["talk_over"] == 0
    assert m["barge_in_stop_ms"] == [300.0]


def test_false_yield_when_agent_stops_within_500ms_after_backchannel_onset():
    events = agent(0, 1500) + caller(1000, 1300, mode="backchannel", cte=False)
    m = call_metrics(events + hangup(2500))
    assert m["backchannels"] == 1
    assert m["false_yield"] == 1
    assert m["barge_in_stop_ms"] == []  # a backchannel is not a barge-in


def test_agent_stopping_during_the_backchannel_is_a_false_yield():
    events = agent(0, 1200) + caller(1000, 1300, mode="backchannel", cte=False)
    assert call_metrics(events + hangup(2500))["false_yield"] == 1


def test_no_false_yield_when_agent_stops_600ms_after_backchannel_onset():
    events = agent(0, 1600) + caller(1000, 1300, mode="backchannel", cte=False)
    m = call_metrics(events + hangup(2500))
    assert m["backchannels"] == 1
    assert m["false_yield"] == 0


def test_agent_resuming_over_a_backchannel_is_not_talk_over():
    events = agent(0, 1000) + caller(1100, 1500, mode="backchannel", cte=False)
    events += agent(1300, 3000) + hangup(3500)
    assert call_metrics(events)["talk_over"] == 0


def test_premature_cutoff_when_agent_starts_during_a_hesitation():
    events = [
        ev("caller_speech_start", 1000), ev("caller_speech_end", 2000),
        ev("hesitation_start", 2000), ev("hesitation_end", 3200),
        ev("caller_speech_start", 3200), ev("caller_speech_end", 4000),
        ev("caller_turn_end", 4000),
    ] + agent(2700, 5000) + hangup(5500)
    m = call_metrics(events)
    assert m["premature_cutoff"] == 1
    assert m["talk_over"] == 0
    assert m["response_latency_ms"] == []  # the agent was already talking at CTE


def test_agent_start_after_the_hesitation_resumes_is_talk_over_not_cutoff():
    events = [
        ev("caller_speech_start", 1000), ev("caller_speech_end", 2000),
        ev("hesitation_start", 2000), ev("hesitation_end", 3000),
        ev("caller_speech_start", 3000), ev("caller_speech_end", 4000),
        ev("caller_turn_end", 4000),
    ] + agent(3500, 4500) + hangup(5000)
    m = call_metrics(events)
    assert m["premature_cutoff"] == 0
    assert m["talk_over"] == 1


def test_dead_air_when_agent_silent_more_than_3s_after_cte():
    m = call_metrics(caller(0, 1000) + agent(4100, 5000) + hangup(5500))
    assert m["dead_air"] == 1
    assert m["response_latency_ms"] == [3100.0]


def test_no_dead_air_at_2900ms_or_exactly_3s():
    assert call_metrics(caller(0, 1000) + agent(3900, 5000))["dead_air"] == 0
    assert call_metrics(caller(0, 1000) + agent(4000, 5000))["dead_air"] == 0


def test_dead_air_threshold_is_configurable():
    assert call_metrics(caller(0, 1000) + agent(3900, 5000), dead_air_ms=2500)["dead_air"] == 1


def test_dead_air_when_agent_never_answers_and_call_drags_on():
    m = call_metrics(caller(0, 1000) + hangup(4500, by="caller"))
    assert m["dead_air"] == 1
    assert m["response_latency_ms"] == []


def test_caller_hanging_up_right_after_goodbye_is_not_dead_air():
    assert call_metrics(caller(0, 1000) + hangup(1500))["dead_air"] == 0


def test_caller_speaking_again_ends_the_silence():
    events = caller(0, 1000) + caller(3500, 4000) + agent(4200, 5000)
    m = call_metrics(events)
    assert m["dead_air"] == 0  # 2.5 s then 0.2 s: neither silence exceeds 3 s
    assert m["response_latency_ms"] == [200.0]


def test_intervals_close_an_unterminated_segment_at_the_last_event():
    events = agent(0, 500) + agent(800) + hangup(2000)
    got = intervals(events, "agent_speech_start", "agent_speech_end")
    assert [(i.start, i.end, i.open) for i in got] == [(0, 500, False), (800, 2000, True)]


def test_intervals_ignore_repeated_starts_and_orphan_ends():
    events = [ev("agent_speech_end", 10)] + agent(100) + agent(200, 300)
    got = intervals(events, "agent_speech_start", "agent_speech_end")
    assert [(i.start, i.end) for i in got] == [(100, 300)]
