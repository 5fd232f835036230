"""Understanding errors put down to the network: only calls at >= 5 % packet loss, and only when
they did worse than the rest; the report and the terminal say so, escaped."""

from evaluation.report_html import call_flags, render_report
from evaluation.summary import NETWORK_DEGRADED_LOSS_PCT, loss_pct, network_degraded, summarize
from orchestration import console as console_mod


def call(call_id, correct, loss=None, **kw):
    record = {"call_id": call_id, "persona": "p", "seed": 1, "status": "completed",
              "concurrency_at_start": 1, "turns": [], "events": [], "metrics": {},
              "understanding": {"expected": {k: "x" for k in correct},
                                "understood": {k: "x" if ok else "y" for k, ok in correct.items()},
                                "correct": correct, "source": "agent-state"}, **kw}
    if loss is not None or "network" not in kw:
        record["network"] = {"jitter_ms": 3.0, "packet_loss_pct": loss, "rtt_ms": 40.0}
    return record


def attribution(records):
    return summarize(records, run_id="r", target="t")["understanding"]["network_attribution"]


def test_lossy_calls_with_wrong_facts_are_put_down_to_the_network():
    records = [call("l1", {"a": False, "b": True}, loss=10.0),
               call("l2", {"a": False, "b": False}, loss=5.0),  # exactly 5 % counts
               call("l3", {"a": True, "b": True}, loss=7.5),
               *[call(f"c{i}", {"a": True, "b": True}, loss=0.5) for i in range(4)],
               call("c4", {"a": False, "b": True}, loss=4.9)]
    block = attribution(records)
    assert block["loss_threshold_pct"] == NETWORK_DEGRADED_LOSS_PCT == 5.0
    assert block["lossy"] == {"calls": 3, "scored": 3, "with_errors": 2,
                              "facts_wrong_rate": 0.5, "facts_observed": 6}
    assert block["clean"] == {"calls": 5, "scored": 5, "with_errors": 1,
                              "facts_wrong_rate": 0.1, "facts_observed": 10}
    assert block["attributed"] == 2
    assert block["verdict"] == (
        "understanding degraded on 2 of 3 calls with >= 5 % packet loss (facts wrong 50 % vs "
        "10 % on the other calls): likely the network, not the agent")


def test_every_call_lossy_is_attributed_without_a_comparison():
    block = attribution([call("l1", {"a": False}, loss=12.0), call("l2", {"a": True}, loss=9.0)])
    assert block["attributed"] == 1 and block["clean"]["facts_wrong_rate"] is None
    assert block["verdict"] == (
        "understanding degraded on 1 of 2 calls with >= 5 % packet loss (facts wrong 50 %; "
        "no other graded call to compare with): likely the network")


def test_lossy_calls_all_correct_or_no_worse_are_not_blamed():
    correct = attribution([call("l1", {"a": True}, loss=10.0), call("c1", {"a": False}, loss=0.0)])
    assert correct["attributed"] == 0 and correct["lossy"]["with_errors"] == 0
    assert correct["verdict"] == ("the 1 call with >= 5 % packet loss understood every observed "
                                  "fact: nothing is attributed to the network")
    # As many facts wrong on the lossy calls as on the others: the agent, not the network.
    even = attribution([call("l1", {"a": False, "b": True}, loss=10.0),
                        call("c1", {"a": True, "b": False}, loss=1.0)])
    assert even["attributed"] == 0 and even["lossy"]["with_errors"] == 1
    assert even["verdict"] == ("the 1 call with >= 5 % packet loss was not worse than the "
                               "others (facts wrong 50 % vs 50 %): their errors are not "
                               "attributed to the network")


def test_no_lossy_call_attributes_nothing():
    block = attribution([call("c1", {"a": False}, loss=1.0), call("c2", {"a": True}, loss=4.99)])
    assert block["lossy"]["calls"] == 0 and block["attributed"] == 0
    assert block["verdict"] == ("no call had >= 5 % packet loss: no understanding error is "
                                "attributed to the network")
    empty = attribution([])
    assert empty["lossy"]["calls"] == empty["clean"]["calls"] == 0 and empty["attributed"] == 0


def test_lossy_calls_never_graded_attribute_nothing():
    failed = {**call("l1", {}, loss=20.0), "status": "failed", "understanding": {}}
    block = attribution([failed, call("c1", {"a": False}, loss=0.0)])
    assert block["lossy"] == {"calls": 1, "scored": 0, "with_errors": 0,
                              "facts_wrong_rate": None, "facts_observed": 0}
    assert block["attributed"] == 0 and "none had a fact graded" in block["verdict"]


def test_unknown_loss_is_not_lossy():
    no_block = call("a", {"x": False}, network={})
    missing = {k: v for k, v in call("b", {"x": False}).items() if k != "network"}
    none_loss = call("c", {"x": False}, network={"packet_loss_pct": None})
    broken = call("d", {"x": False}, network={"packet_loss_pct": float("nan")})
    flag = call("e", {"x": False}, network={"packet_loss_pct": True})  # a bool is no number
    for record in (no_block, missing, none_loss, broken, flag):
        assert loss_pct(record) is None and not network_degraded(record)
    block = attribution([no_block, missing, none_loss, broken, flag])
    assert block["lossy"]["calls"] == 0 and block["clean"]["calls"] == 5


def test_the_persona_line_loss_counts_as_the_calls_loss():
    line = call("a", {"x": False}, loss=0.2,
                transport={"line": {"noise": "none", "packet_loss_pct": 8, "frames_dropped": 40}})
    assert loss_pct(line) == 8.0 and network_degraded(line)
    assert loss_pct(call("b", {"x": True}, loss=6.0, transport={"line": "odd"})) == 6.0


def test_report_shows_the_sentence_and_flags_lossy_calls_with_errors():
    lossy = call("call-<lossy>", {"amount": False}, loss=12.34, persona="<b>p</b>")
    clean = call("call-clean", {"amount": True}, loss=0.0)
    lossy_right = call("call-lossy-right", {"amount": True}, loss=30.0)
    summary = summarize([lossy, clean, lossy_right], run_id="r", target="t")
    verdict = summary["understanding"]["network_attribution"]["verdict"]
    assert verdict.startswith("understanding degraded on 1 of 2 calls")
    page = render_report(summary, [lossy, clean, lossy_right])
    assert ('<p class="bad-text network-attribution">'
            + verdict.replace(">", "&gt;") + "</p>") in page
    assert '<li class="flag network-loss">network loss 12.3 %</li>' in page
    assert "<b>p</b>" not in page and "call-<lossy>" not in page
    assert [f["text"] for f in call_flags(lossy) if f["kind"] == "network-loss"] == [
        "network loss 12.3 %"]
    assert not [f for f in call_flags(lossy_right) if f["kind"] == "network-loss"]
    assert not [f for f in call_flags(clean) if f["kind"] == "network-loss"]


def test_report_says_nothing_of_the_network_without_lossy_calls():
    records = [call("a", {"amount": False}, loss=1.0)]
    page = render_report(summarize(records, run_id="r", target="t"), records)
    assert "network-attribution" not in page and "network loss" not in page


def test_terminal_summary_prints_the_verdict_only_with_lossy_calls(capsys, monkeypatch):
    from rich.console import Console

    monkeypatch.setattr(console_mod, "console", Console(width=200, highlight=False))
    lossy = [call("l", {"a": False}, loss=10.0), call("c", {"a": True}, loss=0.0)]
    console_mod.print_summary(summarize(lossy, run_id="r", target="t"), "runs/r")
    out = capsys.readouterr().out
    assert "understanding vs network: understanding degraded on 1 of 1 call with >= 5 %" in out
    console_mod.print_summary(summarize(lossy[1:], run_id="r", target="t"), "runs/r")
    assert "understanding vs network" not in capsys.readouterr().out
