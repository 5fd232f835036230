"""Real SIP calls on 127.0.0.1: against SIPp (Debian's sip-tester) as the answering side, and
against the reference agent's SIP listener with Whisper and Piper on both sides.

SIPp runs tests/sip/uas_play.xml: it answers with PCMA, plays /usr/share/sip-tester/g711a.pcap
(236 RTP packets, 7.05 s) and hangs up with BYE; its message trace and statistics are read
back. The SIPp call runs while the reference agent loads its models.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from callers.persona import resolve_persona
from callers.session import CallerModels, CallSession, load_caller_models
from callers.speech.stt import Transcript
from callers.transport import Target
from evaluation.scoring import score_call
from orchestration.config import TargetConfig
from orchestration.local_agent import reference_agent

pytestmark = pytest.mark.e2e

SCENARIO = Path(__file__).parent / "sip" / "uas_play.xml"
PCAP = Path("/usr/share/sip-tester/g711a.pcap")
PCAP_PACKETS = 236


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sipp:
    """SIPp running the answering scenario for one call, its traces in out/."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.port = _free_udp_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["sipp", "-sf", str(SCENARIO), "-i", "127.0.0.1", "-mi", "127.0.0.1",
             "-p", str(self.port), "-mp", str(_free_udp_port()), "-m", "1", "-nostdin",
             "-timeout", "30s", "-trace_msg", "-message_file", str(self.out / "messages.log"),
             "-trace_stat", "-stf", str(self.out / "stats.csv"), "-trace_err",
             "-error_file", str(self.out / "errors.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait_listening(self, timeout_s: float = 5.0) -> None:
        """SIPp's socket is bound (an OPTIONS-free check: the port is no longer free)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind(("127.0.0.1", self.port))
                except OSError:
                    return
            time.sleep(0.05)
        raise AssertionError("SIPp did not start listening")

    def finish(self) -> int:
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            return -9

    def exchange(self) -> list[str]:
        """The first line of each message in SIPp's trace, "INVITE" or "200 BYE" (as ours)."""
        text = (self.out / "messages.log").read_text(errors="replace")
        seen = []
        for block in re.split(r"^-{10,}.*$", text, flags=re.M):
            lines = [line.strip() for line in block.strip().splitlines() if line.strip()]
            lines = lines[next((i for i, line in enumerate(lines) if "SIP/2.0" in line),
                               len(lines)):]  # after SIPp's "UDP message sent" line
            if not lines:
                continue
            cseq = next((line.split()[-1] for line in lines if line.startswith("CSeq:")), "")
            first = lines[0].split()
            seen.append(f"{first[1]} {cseq}" if first[0] == "SIP/2.0" else first[0])
        return seen

    def stats(self) -> dict[str, str]:
        with open(self.out / "stats.csv", newline="") as f:
            rows = list(csv.DictReader(f, delimiter=";"))
        return rows[-1]


@pytest.fixture(scope="module")
def calls(tmp_path_factory) -> dict:
    if shutil.which("sipp") is None or not PCAP.exists():
        pytest.fail("SIPp (Debian's sip-tester) is not installed: make sipp")
    out = tmp_path_factory.mktemp("sip-e2e")
    began = time.monotonic()
    sipp = Sipp(out)
    with contextlib.ExitStack() as stack:
        placed = asyncio.run(_place_all(stack, sipp))
    placed["sipp_rc"] = sipp.finish()
    placed["sipp_exchange"] = sipp.exchange()
    placed["sipp_stats"] = sipp.stats()
    placed["total_s"] = round(time.monotonic() - began, 1)
    (out / "records.json").write_text(json.dumps(placed, indent=1, default=str))
    print(f"\nsip e2e records: {out / 'records.json'}")
    for name in ("sipp", "agent"):
        r = placed[name]
        print(f"{name}: {r['status']} {r['failure_reason']} {r['duration_s']:.1f} s, exchange "
              f"{r['transport']['sip_exchange']}, understanding {r.get('understanding')}, "
              f"network {r['network']}")
    print(f"module: {placed['total_s']} s")
    return placed


async def _place_all(stack: contextlib.ExitStack, sipp: Sipp) -> dict:
    # The agent loads its models in its own process while we load ours and call SIPp.
    agent = asyncio.ensure_future(asyncio.to_thread(stack.enter_context, reference_agent()))
    models = await load_caller_models()
    sipp.start()
    await asyncio.to_thread(sipp.wait_listening)
    # SIPp's recording asks nothing: the call ends with SIPp's BYE (a failed record, as the
    # caller's goal was never met); what matters here is the exchange and the media. Nothing
    # to transcribe either (Whisper would compete with the agent loading its models).
    placed = {"sipp": (await CallSession(
        resolve_persona("cooperative-john"), 3,
        Target(f"sip:sipp@127.0.0.1:{sipp.port}", transport="sip"),
        CallerModels(stt=_NothingHeard(), tts=models.tts), call_id="sipp").run()).to_dict()}
    base = await agent
    target = TargetConfig(transport="sip").to_target(base)  # `url: reference`, as a run has it
    began = time.monotonic()
    record = score_call((await CallSession(resolve_persona("cooperative-john"), 1, target,
                                           models, call_id="agent").run()).to_dict())
    record["wall_s"] = round(time.monotonic() - began, 1)
    placed["agent"] = record
    unknown = TargetConfig(transport="sip", url=target.url.replace("agent@", "no_flow@"))
    placed["agent_unknown_user"] = (await CallSession(
        resolve_persona("cooperative-john"), 1, unknown.to_target(), models,
        call_id="bad").run()).to_dict()
    return placed


class _NothingHeard:
    async def transcribe(self, audio, prompt=None):
        return Transcript(text="", seconds=0.0)


def test_sipp_answers_plays_audio_and_hangs_up_and_both_logs_agree(calls):
    record = calls["sipp"]
    ours = record["transport"]["sip_exchange"]
    assert ours == ["> INVITE", "< 100 INVITE", "< 180 INVITE", "< 200 INVITE", "> ACK",
                    "< BYE", "> 200 BYE"], ours
    # SIPp saw the same exchange, from its side
    assert calls["sipp_exchange"] == ["INVITE", "100 INVITE", "180 INVITE", "200 INVITE", "ACK",
                                      "BYE", "200 BYE"], calls["sipp_exchange"]
    stats = calls["sipp_stats"]
    assert calls["sipp_rc"] == 0
    assert stats["SuccessfulCall(C)"] == "1" and stats["FailedCall(C)"] == "0"
    assert stats["FailedUnexpectedMessage(C)"] == "0"
    assert record["transport"]["agent_call_id"] and record["transport"]["codec"] == "PCMA"
    assert any(e["kind"] == "hangup" and e.get("how") == "bye" for e in record["events"])
    network = record["network"]
    assert network["rtp_received"] == PCAP_PACKETS and network["rtp_lost"] == 0
    assert network["jitter_ms"] is not None and network["jitter_ms"] < 10
    assert network["rtp_sent"] > 300  # ours, 20 ms apart, for the 7 s SIPp listened


def test_real_call_to_the_reference_agent_over_sip_understands_every_fact(calls):
    record = calls["agent"]
    assert record["status"] == "completed", (record["failure_reason"], record["failure_detail"])
    assert record["transport"]["kind"] == "sip" and record["transport"]["url"].startswith("sip:")
    exchange = record["transport"]["sip_exchange"]
    assert exchange[:5] == ["> INVITE", "< 100 INVITE", "< 180 INVITE", "< 200 INVITE", "> ACK"]
    assert "< INFO" in exchange  # the agent's state, as SIP INFO
    understanding = record["understanding"]
    assert understanding["understood"] == understanding["expected"]
    assert understanding["correct"] and all(understanding["correct"].values())
    assert record["generator"]["pacing_late_ms_p99"] <= 20
    network = record["network"]
    assert network["rtp_received"] > 500 and network["packet_loss_pct"] == 0.0
    assert network["receive_buffer_ms"] == 0.0


def test_a_sip_user_the_agent_does_not_know_is_sip_404(calls):
    bad = calls["agent_unknown_user"]
    assert (bad["status"], bad["failure_reason"]) == ("failed", "sip_404")
