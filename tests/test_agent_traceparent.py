"""The reference agent records the W3C traceparent each call brings (reference_agent/
received_trace.py): the real caller transports (pcm-ws, twilio-ws, sip) reach an in-process
agent on 127.0.0.1 with stub speech models, and its turn log holds that exact traceparent for
that call; a malformed one is recorded as absent and never echoed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import aiohttp
import pytest

from callers.media import Clock, OutgoingAudioTrack, Playout
from callers.trace_context import TraceContext
from callers.transport import Target
from callers.transports import TransportEvents, make_transport
from reference_agent.call import AgentKnobs, SpeechModels
from reference_agent.received_trace import record_call_start, valid_traceparent
from reference_agent.server import AgentServer, serve
from reference_agent.sip_media import SipListener, bind_ports
from reference_agent.turn_log import TurnLog, read_turn_log
from tests.fake_transport import FakeSTT, FakeTTS

MALFORMED = "00-NOT-A-TRACE-ID-SECRET-LOOKING-VALUE-0123456789abcdef-01"


@contextlib.asynccontextmanager
async def agent(tmp_path):
    """The reference agent (HTTP + SIP) on 127.0.0.1 with a turn log; yields (http, sip, path)."""
    path = tmp_path / "turns.jsonl"
    turn_log = TurnLog(path)
    server = AgentServer(SpeechModels(FakeSTT(), FakeTTS()), AgentKnobs(), turn_log=turn_log)
    http_port, sip_socket = bind_ports("127.0.0.1", 0, None)
    runner, port = await serve(server, "127.0.0.1", http_port)
    sip = await SipListener.start(server, sip_socket)
    try:
        yield f"127.0.0.1:{port}", f"sip:agent@127.0.0.1:{sip.address[1]}", path
    finally:
        await runner.cleanup()
        sip.close()
        turn_log.close()


async def call_start(path, *, count: int = 1, timeout_s: float = 5.0) -> list[dict]:
    """The turn log's call_start entries, once there are count of them."""
    async with asyncio.timeout(timeout_s):
        while True:
            found = [e for e in read_turn_log(path) if e.get("kind") == "call_start"]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.02)


async def place_call(target: Target, traceparent: str) -> str:
    """Connect the real transport with traceparent, hold the call briefly, hang up; returns the
    agent's call id as the transport learned it."""
    clock = Clock()
    track = OutgoingAudioTrack(Playout(), clock)
    transport = make_transport(target, clock, track, TransportEvents(
        message=lambda label, m: None, end=lambda kind, **detail: None))
    transport.traceparent = traceparent
    await transport.connect(5.0)
    try:
        await asyncio.sleep(0.2)
        return transport.agent_call_id
    finally:
        track.stop()
        await transport.close()


@pytest.mark.parametrize("kind", ["pcm-ws", "twilio-ws", "sip"])
async def test_each_transports_traceparent_is_in_the_agents_turn_log_for_its_call(
        tmp_path, kind, caplog):
    caplog.set_level(logging.INFO, logger="reference_agent.received_trace")
    sent = TraceContext.new().traceparent
    async with agent(tmp_path) as (http, sip, path):
        url = {"pcm-ws": f"ws://{http}/pcm", "twilio-ws": f"ws://{http}/twilio",
               "sip": sip}[kind]
        agent_call_id = await place_call(Target(url, transport=kind, codec="pcmu"), sent)
        (entry,) = await call_start(path)
    assert entry["traceparent"] == sent
    assert entry["transport"] == {"pcm-ws": "pcm", "twilio-ws": "twilio", "sip": "sip"}[kind]
    if kind != "twilio-ws":  # the Twilio caller's id for the call is its own CallSid
        assert entry["call_id"] == agent_call_id[:40]
    assert sent in caplog.text


async def test_twilio_start_parameter_is_taken_without_any_handshake_header(tmp_path):
    sent = TraceContext.new().traceparent
    async with agent(tmp_path) as (http, _, path):
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"ws://{http}/twilio") as ws:
                call_id = ws._response.headers["X-Call-Id"]
                await ws.send_str(json.dumps({"event": "connected", "protocol": "Call"}))
                await ws.send_str(json.dumps({"event": "start", "streamSid": "MZ1", "start": {
                    "streamSid": "MZ1", "customParameters": {"traceparent": sent}}}))
                (entry,) = await call_start(path)
                await ws.send_str(json.dumps({"event": "stop", "streamSid": "MZ1"}))
    assert entry == {"kind": "call_start", "call_id": call_id, "transport": "twilio",
                     "traceparent": sent}


@pytest.mark.parametrize("headers", [
    {"traceparent": MALFORMED},
    {"traceparent": "00-" + "0" * 32 + "-" + "1" * 16 + "-01"},  # all-zero trace id
    {"traceparent": "ff-" + "a" * 32 + "-" + "b" * 16 + "-01"},  # not version 00
    {"traceparent": "00-" + "A" * 32 + "-" + "b" * 16 + "-01"},  # uppercase
    {},
])
async def test_a_malformed_or_missing_traceparent_is_recorded_as_absent_never_echoed(
        tmp_path, headers, caplog):
    caplog.set_level(logging.DEBUG)
    async with agent(tmp_path) as (http, _, path):
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"ws://{http}/pcm", headers=headers) as ws:
                call_id = ws._response.headers["X-Call-Id"]
                (entry,) = await call_start(path)
                await ws.send_str(json.dumps({"type": "hangup"}))
    assert entry == {"kind": "call_start", "call_id": call_id, "transport": "pcm",
                     "traceparent": None}
    for value in headers.values():
        assert value not in path.read_text()
        assert value not in caplog.text


async def test_a_malformed_sip_traceparent_is_absent(tmp_path, caplog):
    """A SIP INVITE whose traceparent header is malformed: the call goes on, nothing echoed."""
    caplog.set_level(logging.DEBUG)
    async with agent(tmp_path) as (_, sip, path):
        # The real transport sends whatever traceparent it is given: hand it a malformed one.
        await place_call(Target(sip, transport="sip", codec="pcmu"), MALFORMED)
        (entry,) = await call_start(path)
    assert entry["traceparent"] is None and entry["transport"] == "sip"
    assert MALFORMED not in path.read_text() and MALFORMED not in caplog.text


def test_the_shape_is_w3c_version_00_exactly():
    good = TraceContext.new().traceparent
    assert valid_traceparent(good) == good
    assert valid_traceparent(good[:-1] + "0") == good[:-1] + "0"  # not sampled: still valid
    for bad in (None, 42, "", good + "-extra", " " + good, good.replace("-", "_"),
                "00-" + "a" * 32 + "-" + "0" * 16 + "-01", MALFORMED):
        assert valid_traceparent(bad) is None


def test_two_values_are_absent_and_the_first_source_with_any_decides(tmp_path):
    one, two = TraceContext.new().traceparent, TraceContext.new().traceparent
    assert record_call_start(None, "c", "pcm", [one, two]) is None
    assert record_call_start(None, "c", "twilio", [], [one]) == one
    assert record_call_start(None, "c", "twilio", [two], [one]) == two
    assert record_call_start(None, "c", "twilio", ["bad"], [one]) is None
