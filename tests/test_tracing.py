"""Traces that join the agent's: the spans built from a finished record, a real OTLP/HTTP export
to a collector on 127.0.0.1, the traceparent each transport sends the agent, and nothing of
OpenTelemetry's SDK loaded or exported when tracing is off.

Calls here fail before any media (their speech models are never touched); the agents are tiny
servers on 127.0.0.1 that note what they were sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from callers.errors import ConfigError
from callers.persona import resolve_persona
from callers.record import CallRecord
from callers.session import CallerModels, CallSession
from callers.trace_context import TraceContext, with_traceparent
from callers.transport import Target
from callers.transports.sip.message import parse, response
from evaluation.metrics import call_metrics
from orchestration.config import RunConfig, TracingConfig
from orchestration.tracing import RecordTracer, record_tracer, tracing_settings

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")
STARTED_AT = 1_790_000_000.25  # epoch seconds


@pytest.fixture(scope="module")
def persona():
    return resolve_persona("cooperative-john")


def traced_record(**overrides) -> dict:
    """A completed call's record: two answered caller turns (450 and 820 ms), one caller turn
    the agent talked over, and the caller's STT, brain and TTS work."""
    context = TraceContext.new()
    events = [
        {"kind": "connected", "t_ms": 120.0},
        {"kind": "agent_speech_start", "t_ms": 300.0},
        {"kind": "agent_speech_end", "t_ms": 2100.0},
        {"kind": "caller_speech_start", "t_ms": 2900.0, "mode": "turn"},
        {"kind": "caller_speech_end", "t_ms": 3600.0, "mode": "turn"},
        {"kind": "caller_turn_end", "t_ms": 3600.0},
        {"kind": "agent_speech_start", "t_ms": 4050.0},
        {"kind": "agent_speech_end", "t_ms": 5200.0},
        {"kind": "caller_speech_start", "t_ms": 6000.0, "mode": "turn"},
        {"kind": "caller_speech_end", "t_ms": 6800.0, "mode": "turn"},
        {"kind": "caller_turn_end", "t_ms": 6800.0},
        {"kind": "agent_speech_start", "t_ms": 7620.0},
        {"kind": "agent_speech_end", "t_ms": 9000.0},
        # The agent starts before this caller turn ends: talk-over, not a response.
        {"kind": "caller_speech_start", "t_ms": 9800.0, "mode": "turn"},
        {"kind": "agent_speech_start", "t_ms": 10100.0},
        {"kind": "caller_speech_end", "t_ms": 10400.0, "mode": "turn"},
        {"kind": "caller_turn_end", "t_ms": 10400.0},
        {"kind": "agent_speech_end", "t_ms": 11000.0},
    ]
    stages = [{"stage": "stt", "start_ms": 2150.0, "end_ms": 2390.5},
              {"stage": "brain", "start_ms": 2391.0, "end_ms": 2402.0},
              {"stage": "tts", "start_ms": 2402.0, "end_ms": 2480.0}]
    record = CallRecord(
        call_id="c00003-cooperative-john", persona="cooperative-john", seed=3,
        scenario="card-dispute", status="completed", started_at=STARTED_AT, duration_s=11.5,
        events=events, metrics=call_metrics(events), stages=stages,
        transport={"kind": "webrtc", "agent_call_id": "agent-77"},
        trace_id=context.trace_id, span_id=context.span_id,
    ).to_dict()
    return {**record, **overrides}


def spans_of(record: dict) -> list:
    exporter = InMemorySpanExporter()
    RecordTracer(exporter, "callfleet-test", batch=False).export(record)
    return list(exporter.get_finished_spans())


# --- the spans --------------------------------------------------------------------------


def test_call_span_carries_the_records_trace_ids_and_the_call_attributes():
    record = traced_record()
    spans = spans_of(record)
    calls = [s for s in spans if s.parent is None]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "callfleet.call" and call.kind == SpanKind.CLIENT
    # The span the agent was told is its parent is this one, in the record's trace.
    sent = TraceContext(record["trace_id"], record["span_id"]).traceparent
    assert TRACEPARENT.match(sent).groups() == (f"{call.context.trace_id:032x}",
                                                f"{call.context.span_id:016x}")
    assert call.start_time == round(STARTED_AT * 1e9)
    assert call.end_time - call.start_time == 11_500_000_000
    assert call.status.status_code == StatusCode.OK
    assert call.resource.attributes["service.name"] == "callfleet-test"
    attrs = dict(call.attributes)
    assert {k: attrs[k] for k in ("callfleet.persona", "callfleet.scenario",
                                  "callfleet.transport", "callfleet.agent_call_id",
                                  "callfleet.call_id", "callfleet.status")} == {
        "callfleet.persona": "cooperative-john", "callfleet.scenario": "card-dispute",
        "callfleet.transport": "webrtc", "callfleet.agent_call_id": "agent-77",
        "callfleet.call_id": "c00003-cooperative-john", "callfleet.status": "completed"}
    assert "callfleet.failure_reason" not in attrs  # no null attributes
    for span in spans:  # every span of the call is in its trace, under the call span
        assert span.context.trace_id == int(record["trace_id"], 16)
        if span is not call:
            assert span.parent.span_id == call.context.span_id


def test_a_response_span_per_answered_turn_lasts_the_graded_response_latency():
    record = traced_record()
    responses = [s for s in spans_of(record) if s.name == "callfleet.response"]
    assert record["metrics"]["response_latency_ms"] == [450.0, 820.0]
    assert len(responses) == 2  # the talked-over turn is no response
    responses.sort(key=lambda s: s.start_time)
    for span, turn_end_ms, latency_ms in zip(responses, (3600.0, 6800.0), (450.0, 820.0),
                                             strict=True):
        assert span.start_time == round(STARTED_AT * 1e9) + round(turn_end_ms * 1e6)
        assert span.end_time - span.start_time == round(latency_ms * 1e6)
        assert span.attributes["callfleet.response_latency_ms"] == latency_ms
    assert [s.attributes["callfleet.turn"] for s in responses] == [1, 2]


def test_a_span_per_caller_stage_at_its_recorded_times():
    stages = {s.name: s for s in spans_of(traced_record())
              if s.name in ("callfleet.stt", "callfleet.brain", "callfleet.tts")}
    assert set(stages) == {"callfleet.stt", "callfleet.brain", "callfleet.tts"}
    stt = stages["callfleet.stt"]
    assert stt.start_time == round(STARTED_AT * 1e9) + 2_150_000_000
    assert stt.end_time - stt.start_time == 240_500_000
    assert stages["callfleet.brain"].end_time - stages["callfleet.brain"].start_time == 11_000_000


def test_a_failed_call_span_is_an_error_naming_its_reason():
    record = traced_record(status="failed", failure_reason="signaling_http_503",
                           failure_detail="Service Unavailable")
    call = next(s for s in spans_of(record) if s.parent is None)
    assert call.status.status_code == StatusCode.ERROR
    assert call.status.description == "signaling_http_503"
    assert call.attributes["callfleet.failure_reason"] == "signaling_http_503"


def test_a_record_without_trace_ids_gets_them_before_it_is_stored():
    record = traced_record(trace_id=None, span_id=None, started_at=0.0, events=[], stages=[])
    spans = spans_of(record)  # a lost host's record: no ids, never started
    assert len(spans) == 1
    assert f"{spans[0].context.trace_id:032x}" == record["trace_id"]
    assert f"{spans[0].context.span_id:016x}" == record["span_id"]


async def test_a_real_sessions_record_times_its_stages_and_traces_its_responses(
        persona, monkeypatch):
    """A whole conversation with a fake agent (tests/fake_transport.py): the session times its
    STT, brain and TTS work, hands the transport its traceparent, and the record's trace has a
    response span per graded response latency."""
    import callers.session as session_module
    from evaluation.scoring import score_call
    from tests.fake_transport import FakeAgentTransport, FakeSTT, FakeTTS

    script = ["How can I help you today?", "What is your first name?",
              "Thank you, that is all done. Goodbye."]
    stt, made = FakeSTT(), []

    def fake_transport(target, clock, outgoing, events, codec=None):
        made.append(FakeAgentTransport(target, clock, outgoing, events, script=script, stt=stt))
        return made[-1]

    monkeypatch.setattr(session_module, "make_transport", fake_transport)
    quick = persona.model_copy(update={"temperament": persona.temperament.model_copy(
        update={"reply_after_ms": 200})})
    session = CallSession(quick, 1, Target("fake://agent"), CallerModels(stt, FakeTTS()),
                          call_id="fake")
    record = (await session.run()).to_dict()
    assert record["failure_reason"] in (None, "goal_not_met")  # a short flow: the agent hung up
    sent_matches(CallRecord.from_dict(record), made[0].traceparent)
    kinds = [s["stage"] for s in record["stages"]]
    assert kinds.count("stt") >= len(script) and "brain" in kinds and "tts" in kinds
    for stage in record["stages"]:  # duration_s is rounded to the ms, stages to 0.1 ms
        assert 0 <= stage["start_ms"] <= stage["end_ms"] <= record["duration_s"] * 1000 + 1
    score_call(record)
    spans = spans_of(record)
    responses = [s for s in spans if s.name == "callfleet.response"]
    assert len(responses) == len(record["metrics"]["response_latency_ms"]) >= 1
    assert sorted((s.end_time - s.start_time) / 1e6 for s in responses) == pytest.approx(
        sorted(record["metrics"]["response_latency_ms"]), abs=0.01)
    assert len([s for s in spans if s.name == "callfleet.stt"]) == kinds.count("stt")


# --- OTLP/HTTP to a collector -------------------------------------------------------------


@contextlib.contextmanager
def collector():
    """An OTLP/HTTP collector on 127.0.0.1: yields its base URL and the requests it got."""
    got: list[tuple[str, str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            got.append((self.path, self.headers.get("Content-Type", ""), body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", got
    finally:
        server.shutdown()
        server.server_close()


def exported_spans(got) -> list:
    spans = []
    for path, content_type, body in got:
        assert path == "/v1/traces" and content_type == "application/x-protobuf"
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                spans.extend(scope_spans.spans)
    return spans


def test_spans_reach_an_otlp_http_collector_from_the_run_config():
    record, second = traced_record(), traced_record(call_id="c00004-cooperative-john")
    with collector() as (url, got):
        tracer = record_tracer(TracingConfig(otlp_endpoint=url), env={})
        tracer.export(record)
        tracer.export(second)
        tracer.shutdown()  # flushes the batch
    spans = exported_spans(got)
    # Per call: the call, two responses, three stages.
    assert len(spans) == 12
    calls = [s for s in spans if s.name == "callfleet.call"]
    assert {s.trace_id.hex() for s in calls} == {record["trace_id"], second["trace_id"]}
    first = next(s for s in calls if s.trace_id.hex() == record["trace_id"])
    assert first.span_id.hex() == record["span_id"]
    attrs = {a.key: a.value.string_value for a in first.attributes}
    assert attrs["callfleet.agent_call_id"] == "agent-77"
    assert attrs["callfleet.persona"] == "cooperative-john"


def test_the_driver_traces_each_record_it_stores(tmp_path, monkeypatch):
    """Fleet._keep: a record is exported, and one whose host was lost (no ids) is stored with
    the trace ids its spans got."""
    from orchestration.fleet import Fleet
    from orchestration.store import RunStore

    for name in ("OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME"):
        monkeypatch.delenv(name, raising=False)
    lost = {"call_id": "c00009-cooperative-john", "persona": "cooperative-john", "seed": 9,
            "status": "failed", "failure_reason": "caller_host_lost"}
    with collector() as (url, got):
        config = RunConfig.model_validate({
            "target": {"url": "http://127.0.0.1:9/never"},
            "personas": {"cooperative-john": 1}, "tracing": {"otlp_endpoint": url},
            "load": {"total_calls": 2, "max_concurrency": 1, "calls_per_second": 1}})
        with RunStore(tmp_path / "run") as store:
            fleet = Fleet(config, config.target.to_target(), store)
            fleet._keep(traced_record())
            fleet._keep(lost)
        fleet.tracer.shutdown()
    spans = exported_spans(got)
    assert len(spans) == 7
    stored = [json.loads(line) for line in (tmp_path / "run" / "calls.jsonl").open()]
    assert stored[1]["trace_id"] and stored[1]["trace_id"] in {s.trace_id.hex() for s in spans}
    failed = next(s for s in spans if s.trace_id.hex() == stored[1]["trace_id"])
    assert failed.status.message == "caller_host_lost"


def test_the_standard_endpoint_variable_turns_tracing_on(monkeypatch):
    with collector() as (url, got):
        tracer = record_tracer(None, env={"OTEL_EXPORTER_OTLP_ENDPOINT": url + "/",
                                          "OTEL_SERVICE_NAME": "qa-fleet"})
        assert tracer is not None
        tracer.export(traced_record())
        tracer.shutdown()
    assert len(exported_spans(got)) == 6
    request = ExportTraceServiceRequest()
    request.ParseFromString(got[0][2])
    resource = {a.key: a.value.string_value
                for a in request.resource_spans[0].resource.attributes}
    assert resource["service.name"] == "qa-fleet"


def test_tracing_endpoints_are_checked_before_any_call(tmp_path):
    assert tracing_settings(None, env={}) is None
    assert tracing_settings(TracingConfig(otlp_endpoint="http://127.0.0.1:4318"),
                            env={"OTEL_SDK_DISABLED": "true"}) is None
    settings = tracing_settings(TracingConfig(otlp_endpoint="http://127.0.0.1:4318/"), env={})
    assert settings.endpoint == "http://127.0.0.1:4318/v1/traces"
    full = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://collector.example/custom/path"}
    assert tracing_settings(None, env=full).endpoint == "https://collector.example/custom/path"
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_ENDPOINT"):
        tracing_settings(None, env={"OTEL_EXPORTER_OTLP_ENDPOINT": "127.0.0.1:4318"})
    config = tmp_path / "run.yaml"
    config.write_text("personas: {cooperative-john: 1}\n"
                      "load: {total_calls: 1, max_concurrency: 1, calls_per_second: 1}\n"
                      "tracing: {otlp_endpoint: 'grpc://127.0.0.1:4317'}\n")
    from orchestration.config import load_run_config

    with pytest.raises(ConfigError, match="tracing"):
        load_run_config(config)
    config.write_text(config.read_text().replace("grpc://127.0.0.1:4317",
                                                 "http://127.0.0.1:4318"))
    assert load_run_config(config).tracing.service_name == "callfleet"


# --- the traceparent each transport sends ---------------------------------------------------


@contextlib.asynccontextmanager
async def serve(handler, method: str, path: str):
    app = web.Application()
    app.router.add_route(method, path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def place(persona, target: Target) -> CallRecord:
    session = CallSession(persona, 5, target, CallerModels(stt=None, tts=None), call_id="t")
    async with asyncio.timeout(30):
        return await session.run()


def sent_matches(record: CallRecord, traceparent: str | None) -> None:
    """The agent got the record's own trace context."""
    assert traceparent is not None, "no traceparent sent"
    assert TRACEPARENT.match(traceparent).groups() == (record.trace_id, record.span_id)


@pytest.mark.parametrize("signaling", ["json-offer", "whip"])
async def test_webrtc_signaling_sends_the_calls_traceparent_header(persona, signaling):
    seen = []

    async def handler(request):
        seen.append(request.headers.get("traceparent"))
        return web.Response(status=500)

    async with serve(handler, "POST", "/offer") as port:
        record = await place(persona, Target(f"http://127.0.0.1:{port}/offer",
                                             signaling=signaling))
    assert record.failure_reason == "signaling_http_500"
    assert len(seen) == 1
    sent_matches(record, seen[0])
    assert record.to_dict()["trace_id"] == record.trace_id  # in calls.jsonl


async def test_no_traceparent_when_the_target_turns_it_off(persona):
    seen = []

    async def handler(request):
        seen.append(request.headers.get("traceparent"))
        return web.Response(status=500)

    async with serve(handler, "POST", "/offer") as port:
        record = await place(persona, Target(f"http://127.0.0.1:{port}/offer",
                                             traceparent=False))
    assert seen == [None]
    assert TRACEPARENT.match(TraceContext(record.trace_id, record.span_id).traceparent)


async def test_websocket_handshake_sends_the_calls_traceparent_header(persona):
    seen = []

    async def handler(request):
        seen.append(request.headers.getall("traceparent", []))
        return web.Response(status=403)  # refuses the upgrade: the header has arrived

    async with serve(handler, "GET", "/pcm") as port:
        # A traceparent configured among the headers is replaced: the record must match.
        record = await place(persona, Target(
            f"ws://127.0.0.1:{port}/pcm", transport="pcm-ws",
            headers=(("TraceParent", "00-" + "1" * 32 + "-" + "2" * 16 + "-01"),
                     ("X-Tenant", "qa"))))
    assert record.failure_reason == "ws_handshake_http_403"
    assert len(seen) == 1 and len(seen[0]) == 1
    sent_matches(record, seen[0][0])


async def test_twilio_start_message_carries_the_traceparent_parameter(persona):
    starts = []

    async def handler(request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async with asyncio.timeout(5):
            async for msg in ws:
                message = json.loads(msg.data)
                if message.get("event") == "start":
                    starts.append(message["start"])
                    break
        await ws.close()  # the bot hangs up before saying anything
        return ws

    async with serve(handler, "GET", "/twilio") as port:
        record = await place(persona, Target(
            f"ws://127.0.0.1:{port}/twilio", transport="twilio-ws",
            custom_parameters=(("tenant", "qa"),)))
    assert record.failure_reason == "ws_closed_early"
    (start,) = starts
    assert start["customParameters"]["tenant"] == "qa"
    sent_matches(record, start["customParameters"].get("traceparent"))


class SipPeer(asyncio.DatagramProtocol):
    """Answers every INVITE 486 Busy Here and keeps it."""

    def __init__(self) -> None:
        self.invites = []
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        message = parse(data)
        if message.is_request and message.method == "INVITE":
            self.invites.append(message)
            self.transport.sendto(response(message, 486, "Busy Here").to_bytes(), addr)


async def test_sip_invite_carries_the_traceparent_header(persona):
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(SipPeer,
                                                          local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        record = await place(persona, Target(f"sip:agent@127.0.0.1:{port}", transport="sip",
                                             codec="pcmu"))
    finally:
        transport.close()
    assert record.failure_reason == "sip_486"
    assert peer.invites
    sent_matches(record, peer.invites[0].header("traceparent"))


def test_with_traceparent_replaces_any_case_and_keeps_the_rest():
    pairs = {"TRACEPARENT": "old", "x": "1"}
    assert with_traceparent(pairs, "new") == {"x": "1", "traceparent": "new"}
    assert with_traceparent(pairs, None) is pairs


# --- off --------------------------------------------------------------------------------


def test_with_tracing_off_the_sdk_is_never_imported_and_nothing_is_exported(tmp_path):
    """Configured off (no section, no variable): the driver makes no tracer and neither it
    nor the caller's hot path loads the OpenTelemetry SDK or an exporter."""
    code = f"""
import os, sys
for name in list(os.environ):
    if name.startswith("OTEL_"):
        del os.environ[name]
from orchestration.config import RunConfig
from orchestration.fleet import Fleet
from orchestration.store import RunStore
import callers.session, callers.transports.webrtc, callers.transports.twilio_ws
import callers.transports.pcm_ws, callers.transports.sip
config = RunConfig.model_validate({{
    "target": {{"url": "http://127.0.0.1:9/never"}}, "personas": {{"cooperative-john": 1}},
    "load": {{"total_calls": 1, "max_concurrency": 1, "calls_per_second": 1}}}})
with RunStore(__import__("pathlib").Path({str(tmp_path)!r}) / "run") as store:
    fleet = Fleet(config, config.target.to_target(), store)
    fleet._keep({{"call_id": "c1", "persona": "p", "seed": 1, "status": "failed"}})
print(fleet.tracer is None)
print(sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk",
                                                     "opentelemetry.exporter"))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:2] == ["True", "[]"]
    stored = (tmp_path / "run" / "calls.jsonl").read_text()
    assert '"trace_id"' not in stored  # nothing was traced, nothing added


def test_run_config_without_a_tracing_section_is_off():
    config = RunConfig.model_validate({
        "personas": {"cooperative-john": 1},
        "load": {"total_calls": 1, "max_concurrency": 1, "calls_per_second": 1}})
    assert config.tracing is None
    assert record_tracer(config.tracing, env={}) is None
    assert config.target.to_target("http://127.0.0.1:1").traceparent is True
