"""report.html: self-contained, escaped, and working in a real headless Chromium (Debian's
`chromium` package): the transcript viewer lists every call, the persona filter works, and a
call's audio element loads its recording from the run directory."""

import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from callers.audio import write_stereo_wav
from evaluation.gates import apply_gates
from evaluation.report_html import call_flags, render_report, write_report
from evaluation.summary import summarize

CHROMIUM = "/usr/bin/chromium"
NO_NETWORK_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio",
]
needs_chromium = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"{CHROMIUM} not found: install Debian's chromium "
           "(apt-get install -y chromium chromium-driver) to run the browser tests",
)


def ev(kind, t, **kw):
    return {"kind": kind, "t_ms": t, **kw}


def turn(speaker, text, start, end):
    return {"speaker": speaker, "text": text, "start_ms": start, "end_ms": end}


def make_records():
    """Three personas, two outcomes, and one of each flag the viewer should show."""
    barge = {  # latency 800 ms, a barge-in the agent stops after 300 ms, then 4 s dead air
        "call_id": "call-0000-alice", "persona": "alice", "seed": 1, "status": "completed",
        "duration_s": 12.0, "concurrency_at_start": 1, "audio": "audio/call-0000-alice.wav",
        "turns": [turn("agent", "Hello, how can I help?", 0, 2000),
                  turn("caller", "About a <script>alert('x')</script> fee & more", 2200, 3000),
                  turn("agent", "Sure, what is your name?", 3800, 5300),
                  turn("caller", "Alice Smith", 5000, 6000),
                  turn("agent", "Thanks Alice.", 10000, 11000)],
        "events": [ev("agent_speech_start", 0), ev("agent_speech_end", 2000),
                   ev("caller_speech_start", 2200, mode="turn"), ev("caller_speech_end", 3000),
                   ev("caller_turn_end", 3000), ev("agent_speech_start", 3800),
                   ev("caller_speech_start", 5000, mode="turn"), ev("agent_speech_end", 5300),
                   ev("caller_speech_end", 6000), ev("caller_turn_end", 6000),
                   ev("agent_speech_start", 10000), ev("agent_speech_end", 11000)],
        "metrics": {"response_latency_ms": [800.0, 4000.0], "barge_in_stop_ms": [300.0],
                    "barge_in_not_stopped": 0, "talk_over": 0, "false_yield": 0,
                    "premature_cutoff": 0, "dead_air": 1, "backchannels": 0},
        "understanding": {"expected": {"first_name": "Alice", "amount": "75"},
                          "understood": {"first_name": "Alice", "amount": "57"},
                          "correct": {"first_name": True, "amount": False},
                          "source": "agent-state"},
        "generator": {"pacing_late_ms_p99": 4.0},
    }
    failed = {
        "call_id": "call-0001-bob", "persona": "bob", "seed": 2, "status": "failed",
        "failure_reason": "no_agent_audio", "failure_detail": "silence for 10 s",
        "duration_s": 10.0, "concurrency_at_start": 2, "audio": "audio/call-0001-bob.wav",
        "turns": [], "events": [], "metrics": {}, "understanding": {},
    }
    talk_over = {  # the agent starts while the caller is mid-turn
        "call_id": "call-0002-bob", "persona": "bob", "seed": 3, "status": "completed",
        "duration_s": 5.0, "concurrency_at_start": 2, "audio": None,
        "turns": [turn("caller", "I want to ask", 1000, 3000),
                  turn("agent", "Yes?", 2000, 2600)],
        "events": [ev("caller_speech_start", 1000, mode="turn"), ev("agent_speech_start", 2000),
                   ev("agent_speech_end", 2600), ev("caller_speech_end", 3000),
                   ev("caller_turn_end", 3000)],
        "metrics": {"response_latency_ms": [], "barge_in_stop_ms": [], "barge_in_not_stopped": 0,
                    "talk_over": 1, "false_yield": 0, "premature_cutoff": 0, "dead_air": 0,
                    "backchannels": 0},
        "understanding": {"expected": {"amount": "75"}, "understood": {"amount": "75"},
                          "correct": {"amount": True}, "source": "read-back"},
    }
    carol = {  # clean: answered 600 ms after the caller finished
        **talk_over, "call_id": "call-0003-carol", "persona": "carol", "seed": 4,
        "audio": "audio/call-0003-carol.wav", "concurrency_at_start": 4,
        "turns": [turn("caller", "I want to ask", 1000, 2000), turn("agent", "Yes?", 2600, 3000)],
        "events": [ev("caller_speech_start", 1000, mode="turn"), ev("caller_speech_end", 2000),
                   ev("caller_turn_end", 2000), ev("agent_speech_start", 2600),
                   ev("agent_speech_end", 3000)],
        "metrics": {**talk_over["metrics"], "response_latency_ms": [600.0], "talk_over": 0},
    }
    return [barge, failed, talk_over, carol]


def write_wav(path: Path, seconds: float = 1.0, rate: int = 16000) -> None:
    t = np.arange(int(seconds * rate)) / rate
    left = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    right = (np.sin(2 * np.pi * 220 * t) * 8000).astype(np.int16)
    write_stereo_wav(path, left, right, rate)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    (run / "audio").mkdir()
    records = make_records()
    for r in records:
        if r["audio"]:
            write_wav(run / r["audio"])
    summary = apply_gates(summarize(records, run_id="run-test", target="http://127.0.0.1:9/offer"))
    write_report(run, summary, records)
    return run


# --- without a browser ---------------------------------------------------------------------


def test_report_is_one_self_contained_file(run_dir):
    text = (run_dir / "report.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # no CDN, no network
    assert "<link" not in text and "<script src" not in text
    assert "<svg" in text and "<style>" in text
    for section in ("Gates", "Latency and completion vs concurrency", "Understanding by entity",
                    "Failure reasons", "Calls and transcripts"):
        assert section in text


def test_all_record_text_is_escaped(run_dir):
    text = (run_dir / "report.html").read_text()
    assert "<script>alert" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; fee &amp; more" in text
    hostile = {**make_records()[1], "persona": '"><img src=x onerror=alert(1)>',
               "failure_reason": "<b>x</b>"}
    page = render_report(summarize([hostile], run_id="<r>", target="t"), [hostile])
    assert "<img" not in page and "<b>x</b>" not in page and "<r>" not in page


def test_audio_src_is_relative_and_only_for_recordings_on_disk(run_dir):
    text = (run_dir / "report.html").read_text()
    assert '<audio controls preload="metadata" src="audio/call-0000-alice.wav">' in text
    assert text.count("<audio ") == 3  # call-0002 has no recording
    assert "No recording for this call." in text


def test_flags_follow_the_metric_definitions():
    barge, failed, talk_over, _ = make_records()
    kinds = [(f["kind"], f["t_ms"]) for f in call_flags(barge)]
    assert kinds == [("misunderstood", None), ("barge-in", 5000.0), ("dead-air", 6000.0)]
    texts = [f["text"] for f in call_flags(barge)]
    assert "misunderstood amount: expected 75, understood 57" in texts
    assert "barge-in: the agent stopped after 300 ms" in texts
    assert [f["kind"] for f in call_flags(talk_over)] == ["talk-over"]
    assert [f["text"] for f in call_flags(failed)] == ["failed: no_agent_audio (silence for 10 s)"]
    assert call_flags(make_records()[3]) == []


def test_not_stopped_barge_in_is_flagged():
    events = [ev("agent_speech_start", 0), ev("caller_speech_start", 1000, mode="turn"),
              ev("caller_speech_end", 1500), ev("agent_speech_end", 4000)]
    (flag,) = call_flags({"status": "completed", "events": events})
    assert flag["kind"] == "barge-in-not-stopped" and "3.0 s" in flag["text"]


def test_empty_run_renders():
    page = render_report(summarize([], run_id="r", target="t", planned=3), [])
    assert "No calls: nothing to plot." in page and "0 of 0 calls" in page


def test_untranscribed_agent_turns_say_so_and_empty_turns_otherwise_stay_empty():
    record = {"call_id": "lean-1", "persona": "p", "seed": 1, "status": "completed",
              "duration_s": 3.0, "speech": {"stt": "none"},
              "turns": [turn("agent", "", 0, 1000), turn("caller", "John.", 1500, 2000)],
              "events": [], "metrics": {}}
    page = render_report(summarize([record], run_id="r", target="t", planned=1), [record])
    assert page.count("(not transcribed: speech.stt none)") == 1
    heard = {**record, "call_id": "full-1", "speech": {}}
    page = render_report(summarize([heard], run_id="r", target="t", planned=1), [heard])
    assert "not transcribed" not in page


def test_viewer_caps_calls_and_lists_failures_first():
    records = make_records()
    page = render_report(summarize(records, run_id="r", target="t"), records, max_calls=1)
    assert page.count('class="call"') == 1 and 'data-call-id="call-0001-bob"' in page
    assert "Listing 1 of 4 calls" in page


# --- in a real headless Chromium -----------------------------------------------------------


def chromium(args, user_data_dir, timeout=90):
    return subprocess.run(
        [CHROMIUM, *NO_NETWORK_FLAGS, f"--user-data-dir={user_data_dir}", *args],
        capture_output=True, text=True, timeout=timeout, check=False)


@needs_chromium
def test_dump_dom_lists_every_call_after_the_script_ran(run_dir, tmp_path):
    url = (run_dir / "report.html").as_uri()
    out = chromium(["--dump-dom", url], tmp_path / "profile")
    assert out.returncode == 0, out.stderr[-2000:]
    dom = out.stdout
    ids = re.findall(r'<details class="call"[^>]*data-call-id="([^"]+)"', dom)
    assert ids == [r["call_id"] for r in make_records()]
    assert '<span id="shown-count" class="muted">4 of 4 calls</span>' in dom  # JS ran


@needs_chromium
def test_screenshot_renders_the_page(run_dir, tmp_path):
    shot = tmp_path / "report.png"
    url = (run_dir / "report.html").as_uri() + "#call-call-0000-alice"  # opens that call
    out = chromium([f"--screenshot={shot}", "--window-size=1280,2600", url], tmp_path / "p")
    assert out.returncode == 0, out.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    keep = os.environ.get("CALLFLEET_SCREENSHOT")  # to look at it: CALLFLEET_SCREENSHOT=x.png
    if keep:
        shutil.copy(shot, keep)


class DevTools:
    """A minimal Chrome DevTools Protocol client over aiohttp websockets (no playwright)."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0

    async def call(self, method, **params):
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            msg = await asyncio.wait_for(self.ws.receive_json(), 30)
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg["result"]

    async def js(self, expression):
        result = await self.call("Runtime.evaluate", expression=expression, awaitPromise=True,
                                 returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"JS failed: {result['exceptionDetails']}")
        return result["result"].get("value")


@pytest.fixture
async def page(run_dir, tmp_path):
    """The report open in headless Chromium, driven over the DevTools protocol."""
    async with open_in_chromium(run_dir / "report.html", tmp_path / "profile") as tools:
        yield tools


@contextlib.asynccontextmanager
async def open_in_chromium(report: Path, profile: Path):
    """report.html open in a headless Chromium we start, as a DevTools client; closed after."""
    import aiohttp

    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium chromium-driver")
    proc = subprocess.Popen(
        [CHROMIUM, *NO_NETWORK_FLAGS, f"--user-data-dir={profile}",
         "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
         report.as_uri()],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert proc.poll() is None, "chromium exited before opening its DevTools port"
            assert time.monotonic() < deadline, "chromium did not open a DevTools port in 30 s"
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                    targets = [t for t in await resp.json() if t.get("type") == "page"]
                if targets and targets[0]["url"].endswith("report.html"):
                    break
                await asyncio.sleep(0.1)
            async with http.ws_connect(targets[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                tools = DevTools(ws)
                # The target can report the URL while about:blank is still its document.
                loaded = ("location.href.endsWith('report.html') && "
                          "document.readyState === 'complete'")
                for _ in range(300):
                    if await tools.js(loaded):
                        break
                    await asyncio.sleep(0.1)
                assert await tools.js(loaded), "report.html did not load in 30 s"
                yield tools
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the group of the chromium we started
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


VISIBLE = ("JSON.stringify(Array.from(document.querySelectorAll('#calls .call'))"
           ".filter(e => !e.hidden && getComputedStyle(e).display !== 'none')"
           ".map(e => e.dataset.callId))")


def choose(select_id, value):
    return (f"(() => {{ const s = document.getElementById('{select_id}'); s.value = '{value}';"
            f" s.dispatchEvent(new Event('change', {{bubbles: true}})); return s.value; }})()")


@needs_chromium
async def test_persona_and_outcome_filters_show_only_matching_calls(page):
    everyone = [r["call_id"] for r in make_records()]
    assert json.loads(await page.js(VISIBLE)) == everyone
    assert await page.js(choose("persona-filter", "bob")) == "bob"
    assert json.loads(await page.js(VISIBLE)) == ["call-0001-bob", "call-0002-bob"]
    assert await page.js("document.getElementById('shown-count').textContent") == "2 of 4 calls"
    await page.js(choose("outcome-filter", "failed"))
    assert json.loads(await page.js(VISIBLE)) == ["call-0001-bob"]
    await page.js(choose("persona-filter", ""))
    await page.js(choose("outcome-filter", "completed"))
    assert json.loads(await page.js(VISIBLE)) == ["call-0000-alice", "call-0002-bob",
                                                  "call-0003-carol"]
    await page.js(choose("outcome-filter", "failed:no_agent_audio"))
    assert json.loads(await page.js(VISIBLE)) == ["call-0001-bob"]
    await page.js(choose("outcome-filter", ""))
    await page.js("(() => { const c = document.getElementById('flagged-filter'); c.click(); })()")
    assert json.loads(await page.js(VISIBLE)) == everyone[:3]  # carol's call is clean
    await page.js(choose("persona-filter", "bob"))
    await page.js(choose("outcome-filter", "completed"))
    assert json.loads(await page.js(VISIBLE)) == ["call-0002-bob"]
    # every persona is an option
    options = json.loads(await page.js(
        "JSON.stringify(Array.from(document.querySelectorAll('#persona-filter option'))"
        ".map(o => o.value))"))
    assert options == ["", "alice", "bob", "carol"]


@needs_chromium
async def test_audio_element_loads_the_recording_metadata(page):
    state = await page.js("""new Promise(resolve => {
        const details = document.getElementById('call-call-0000-alice');
        details.open = true;  // as a reader would
        const a = details.querySelector('audio');
        const done = () => resolve({ready: a.readyState, duration: a.duration,
                                    error: a.error && a.error.code, src: a.currentSrc});
        if (a.readyState >= 1) return done();
        a.addEventListener('loadedmetadata', done);
        a.addEventListener('error', done);
        setTimeout(done, 15000);
    })""")
    assert state["error"] is None, state
    assert state["ready"] >= 1, state
    assert abs(state["duration"] - 1.0) < 0.05, state
    assert state["src"].endswith("/audio/call-0000-alice.wav")


# --- finish_run / rebuild_report (orchestration/reporting.py) ------------------------------


def test_rebuild_report_writes_all_outputs_and_returns_the_gate_exit_code(tmp_path, capsys):
    import xml.etree.ElementTree as ET

    from orchestration.reporting import rebuild_report

    records = make_records()
    lines = [json.dumps(r) for r in records]
    lines.insert(2, lines[0][:40])  # a truncated line: reported and skipped
    (tmp_path / "calls.jsonl").write_text("\n".join(lines) + "\n")
    # default gates: latency p95 and understanding fail (amount, seen under 10 times, in the
    # pooled facts rate)
    assert rebuild_report(tmp_path) == 1
    assert "calls.jsonl:3: not valid JSON" in capsys.readouterr().err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["calls"]["started"] == 4
    failed = {g["name"] for g in summary["gates"] if not g["passed"]}
    assert failed == {"latency_p95_ms", "completion_rate", "understanding_facts_rate"}
    assert summary["gates_measured_only"] is True  # the defaults: only what the run measured
    assert 'data-call-id="call-0003-carol"' in (tmp_path / "report.html").read_text()
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite.get("failures") == "4"  # 3 gates + 1 failed call

    lenient = {"latency_p95_ms": {"max": 10_000}, "completion_rate": {"min": 0.5}}
    assert rebuild_report(tmp_path, gates=lenient) == 0
    # A later rebuild judges the run by the gates it was last judged by.
    assert rebuild_report(tmp_path) == 0
    assert len(json.loads((tmp_path / "summary.json").read_text())["gates"]) == 2


def test_finish_run_rejects_unknown_gates_before_writing_anything(tmp_path):
    from callers.errors import ConfigError
    from orchestration.reporting import finish_run
    from orchestration.store import RunStore

    with RunStore(tmp_path) as store, pytest.raises(ConfigError, match="unknown gate metric"):
        finish_run(store, make_records(), run_id="r", target="t", planned=4, partial=False,
                   gates={"latency_p95": {"max": 1}})
    assert not (tmp_path / "summary.json").exists()


def test_persona_behaviours_are_flagged_and_turn_modes_labelled():
    events = [ev("agent_speech_start", 0), ev("agent_speech_end", 2000),
              ev("caller_silence", 2500),
              ev("caller_speech_start", 9000, mode="turn"), ev("caller_speech_end", 9300),
              ev("hesitation_start", 9300), ev("hesitation_end", 9800),
              ev("caller_speech_start", 9800, mode="turn"), ev("caller_speech_end", 10500),
              ev("caller_turn_end", 10500), ev("agent_speech_start", 12500),
              ev("caller_correction", 13000, facts=["amount"])]
    record = {"status": "completed", "events": events, "call_id": "c1", "persona": "p",
              "turns": [{"speaker": "caller", "text": "Mm-hmm.", "start_ms": 1000,
                         "end_ms": 1300, "mode": "backchannel"}]}
    flags = [(f["kind"], f["t_ms"]) for f in call_flags(record)]
    assert flags == [("behaviour", 2500.0), ("behaviour", 9300.0), ("behaviour", 13000.0)]
    page = render_report(summarize([record], run_id="r", target="t"), [record])
    assert "caller (backchannel)" in page and "stayed silent on purpose" in page


def test_report_shows_facts_not_observed_the_agents_hearing_and_its_call_id():
    record = {**make_records()[3], "call_id": "call-0009-dan",
              "transport": {"agent_call_id": "pc-<b>7</b>"},
              "understanding": {"expected": {"first_name": "Dan", "amount": "75"},
                                "understood": {"amount": "75"}, "correct": {"amount": True},
                                "sources": {"amount": "read-back"}, "source": "read-back",
                                "not_observed": ["first_name"]}}
    record["metrics"] = {**record["metrics"], "agent_hearing": [
        {"start_ms": 1000, "said": "I want to ask", "heard": "I want <i>a</i> task", "wer": 0.5}]}
    summary = summarize([record], run_id="r", target="t")
    summary["agent_hearing"] = {"wer_mean": 0.5, "turns": 1}
    page = render_report(summary, [record])
    row = re.search(r'<tr class="unobserved"><td>first_name</td>.*?</tr>', page)
    assert row and "not observed" in row.group() and "✗" not in row.group()
    assert "not observed in 1 of 1" in page  # the by-entity bars say it too
    assert "agent hearing WER" in page and "I want &lt;i&gt;a&lt;/i&gt; task" in page
    assert "pc-&lt;b&gt;7&lt;/b&gt;" in page


# --- the call, visually: timeline per call and the latency histogram -----------------------


def timeline_record(audio=None):
    """One of each graded moment at a known time (asserted by metrics, then drawn):
    responses 640 ms at 3.5 s, 600 ms at 12.6 s and 3500 ms at 16.0 s (with dead air), a
    backchannel at 5.0 s, a barge-in at 7.0 s the agent stops at 8.0 s, a hesitation
    11.5-12.0 s the agent cuts into at 11.7 s, talk-over at 15.5 s, a false yield at 22.0 s."""
    events, turns = [], []

    def agent(a, b):
        events.extend([ev("agent_speech_start", a), ev("agent_speech_end", b)])
        turns.append(turn("agent", f"agent at {a}", a, b))

    def caller(a, b, mode="turn", turn_end=True, text=None):
        events.extend([ev("caller_speech_start", a, mode=mode), ev("caller_speech_end", b)])
        if turn_end:
            events.append(ev("caller_turn_end", b))
        if text is not None:
            turns.append({**turn("caller", text, a, b), "mode": mode})

    agent(0, 2000)
    caller(2500, 3500, text="<b>hostile</b> & caller")
    agent(4140, 8000)
    caller(5000, 5300, "backchannel", False, text="mm-hmm")
    caller(7000, 7800, "barge_in", text="wait")
    agent(9000, 10000)
    caller(11000, 11500, turn_end=False)  # one turn, split by the persona's hesitation
    events.extend([ev("hesitation_start", 11500), ev("hesitation_end", 12000)])
    turns.append(turn("caller", "my name is ... Alice", 11000, 12600))
    agent(11700, 11900)
    caller(12000, 12600)
    agent(13200, 14000)
    caller(15000, 16000, text="I want to ask")
    agent(15500, 15800)
    agent(19500, 20000)
    agent(21000, 22200)
    caller(22000, 22300, "backchannel", False, text="okay")
    from evaluation.metrics import call_metrics

    return {"call_id": "call-0007-tl", "persona": "tl", "seed": 7, "status": "completed",
            "duration_s": 24.0, "concurrency_at_start": 1, "audio": audio,
            "turns": sorted(turns, key=lambda t: t["start_ms"]), "events": events,
            "metrics": call_metrics(events), "understanding": {}}


def svg_of(page_html, call_id):
    call = re.search(rf'<details class="call" id="call-{call_id}".*?</details>', page_html, re.S)
    (svg,) = re.findall(r'<svg class="tl".*?</svg>', call.group(), re.S)
    return svg


def markers(svg):
    """(kind, data-t) of every graded-moment marker, in document order."""
    return re.findall(r'class="mk ([a-z-]+)"[^>]*data-t="([0-9.]+)"', svg)


def test_call_timeline_draws_every_turn_and_every_graded_moment():
    import evaluation.report_visuals as tl

    record = timeline_record()
    assert record["metrics"]["response_latency_ms"] == [640.0, 600.0, 3500.0]
    page = render_report(summarize([record], run_id="r", target="t"), [record])
    svg = svg_of(page, "call-0007-tl")
    assert len(re.findall(r'<rect class="b caller[ "]', svg)) == 6
    assert len(re.findall(r'<rect class="b caller bc"', svg)) == 2  # the two backchannels
    assert len(re.findall(r'<rect class="b agent"', svg)) == 8
    found = sorted(markers(svg), key=lambda m: (float(m[1]), m[0]))
    assert found == [("response", "3.500"), ("backchannel", "5.000"), ("barge-in", "7.000"),
                     ("stop", "8.000"), ("hesitation", "11.500"),
                     ("premature-cutoff", "11.700"), ("response", "12.600"),
                     ("talk-over", "15.500"), ("dead-air", "16.000"), ("response", "16.000"),
                     ("backchannel", "22.000"), ("false-yield", "22.000")]
    titles = re.findall(r"<title>([^<]*)</title>", svg)
    assert "response 640 ms: the caller ended at 3.5 s, the agent answered at 4.1 s" in titles
    assert "barge-in at 7.0 s: the agent stopped after 1000 ms" in titles
    assert "dead air 3.5 s after the caller&#x27;s turn at 16.0 s" in titles
    assert "caller 2.5–3.5 s: &lt;b&gt;hostile&lt;/b&gt; &amp; caller" in titles  # escaped
    # On the call clock: the 640 ms span is 640/24000 of the plot's width, from 3.5 s.
    span = re.search(r'class="mk response" x="([0-9.]+)" y="\d+" width="([0-9.]+)" '
                     r'height="\d+" data-t="3.500"', svg)
    plot_width = tl.W - tl.LEFT - tl.RIGHT
    assert abs(float(span.group(1)) - (tl.LEFT + 3500 / 24000 * plot_width)) < 0.1
    assert abs(float(span.group(2)) - 640 / 24000 * plot_width) < 0.1


def test_call_without_turns_or_moments_has_no_timeline():
    failed = make_records()[1]
    page = render_report(summarize([failed], run_id="r", target="t"), [failed])
    assert '<svg class="tl"' not in page


def histogram_counts(page_html):
    hist = re.search(r'<svg class="plot hist".*?</svg>', page_html, re.S).group()
    return [int(n) for n in re.findall(r'<rect class="hbar[^"]*"[^>]*data-n="(\d+)"', hist)]


def test_latency_histogram_counts_every_response_latency_of_the_run(run_dir):
    text = (run_dir / "report.html").read_text()
    summary = json.loads(json.dumps(summarize(make_records(), run_id="r", target="t")))
    counts = histogram_counts(text)
    assert sum(counts) == summary["latency_ms"]["n"] == 3  # 800, 4000 and 600 ms


def test_latency_histogram_bins_and_puts_the_far_tail_in_one_bar():
    from evaluation.report_visuals import latency_bins, latency_histogram_svg

    values = [float(v) for v in range(100, 1100, 5)] + [30_000.0, 45_000.0]  # 200 + 2 far out
    width, counts, over = latency_bins(values)
    # Bins of 100 ms up to the 99th percentile (1095 ms); the two far ones in one more bar.
    assert width == 100 and over == 2
    assert counts == [0] + [20] * 10  # 100-200 ms holds 100, 105, ..., 195
    page_svg = latency_histogram_svg(values + [math.nan, math.inf], {"p50": 600.0})
    bars = [int(n) for n in re.findall(r'data-n="(\d+)"', page_svg)]
    assert sum(bars) == len(values) and bars[-1] == 2  # NaN/inf are no latency
    assert "≥ " in page_svg and "p50 600 ms" in page_svg
    assert "No response latency was measured." in latency_histogram_svg([])


@needs_chromium
async def test_clicking_a_moment_or_a_turn_plays_the_recording_from_there(tmp_path):
    run = tmp_path / "run"
    (run / "audio").mkdir(parents=True)
    record = timeline_record(audio="audio/call-0007-tl.wav")
    write_wav(run / record["audio"], seconds=24.0)  # long enough to seek anywhere in the call
    write_report(run, summarize([record], run_id="r", target="t"), [record])
    async with open_in_chromium(run / "report.html", tmp_path / "profile") as page:
        # A real mouse click (the DevTools Input domain), where the marker is drawn.
        box = await page.js("""(() => {
            const d = document.getElementById('call-call-0007-tl'); d.open = true;
            const m = d.querySelector('.tl .mk.response[data-t="12.600"]');
            m.scrollIntoView({block: 'center'});
            const r = m.getBoundingClientRect();
            return {x: r.left + r.width / 2, y: r.top + r.height / 2};
        })()""")
        for kind in ("mousePressed", "mouseReleased"):
            await page.call("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"],
                            button="left", clickCount=1)
        now = await page.js("document.querySelector('#call-call-0007-tl audio').currentTime")
        assert 12.6 <= now < 13.2, now  # from the marker's moment (it may have started playing)

        def click(selector):
            return page.js(f"""(() => {{
                const d = document.getElementById('call-call-0007-tl');
                d.querySelector('{selector}').dispatchEvent(
                    new MouseEvent('click', {{bubbles: true}}));
                return d.querySelector('audio').currentTime;
            }})()""")

        assert await click('.tl .mk.stop') == 8.0  # when the agent stopped after the barge-in
        assert await click('.tl .b.caller.bc') == 5.0  # the caller's first backchannel's bar
        # A click elsewhere on the page leaves the recording where it was.
        assert await click('ol.timeline li') == 5.0
