"""One OpenTelemetry trace per call, built from its finished record in the driver and exported
over OTLP/HTTP: off the calls' hot path, and nothing at all unless a collector is configured.

Spans (explicit times: record.started_at plus the events' t_ms on the call's one clock):
  callfleet.call      the whole call (CLIENT); its span id is the parent the agent was sent in
                      the call's traceparent (callers.trace_context), so the agent's spans nest
                      under it; attributes callfleet.* (persona, scenario, transport, call ids,
                      status, failure_reason); status ERROR for a failed call
  callfleet.response  per caller turn end answered by the agent: from the turn end to the
                      agent's speech start (its duration is the response latency, as graded)
  callfleet.stt / callfleet.brain / callfleet.tts   the caller's own work (record.stages)

The OpenTelemetry SDK is imported only when tracing is on (pip install 'callfleet[tracing]').
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from callers.errors import ConfigError
from callers.inputs import check_url
from callers.trace_context import TraceContext
from evaluation.metrics import timeline_findings

if TYPE_CHECKING:
    from orchestration.config import TracingConfig

TRACES_PATH = "/v1/traces"
SCOPE = "callfleet"


@dataclass(frozen=True)
class TracingSettings:
    endpoint: str  # the collector's full traces URL
    service_name: str


def tracing_settings(config: TracingConfig | None,
                     env: Mapping[str, str] = os.environ) -> TracingSettings | None:
    """Where to export, from the run config's tracing section, else the standard
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT; None: tracing is off
    (also when OTEL_SDK_DISABLED=true). ConfigError for a variable that is not a URL."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    service = env.get("OTEL_SERVICE_NAME") or "callfleet"
    if config is not None:
        return TracingSettings(traces_url(config.otlp_endpoint), config.service_name)
    url = otlp_url_from_env(env, "TRACES", traces_url)
    return TracingSettings(url, service) if url else None


def otlp_url_from_env(env, signal: str, signal_url) -> str | None:
    """OTEL_EXPORTER_OTLP_<signal>_ENDPOINT (the whole URL, as the OTLP spec says), else
    signal_url(OTEL_EXPORTER_OTLP_ENDPOINT) (a base); None when neither is set."""
    for name, full in ((f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT", True),
                       ("OTEL_EXPORTER_OTLP_ENDPOINT", False)):
        value = env.get(name, "").strip()
        if value:
            try:
                check_url(value, ("http", "https"), name)
            except ValueError as e:
                raise ConfigError(f"environment variable {name}: {e}") from None
            return value if full else signal_url(value)
    return None


def traces_url(endpoint: str) -> str:
    """A collector's base URL -> its OTLP/HTTP traces URL (a full one is kept as it is)."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(TRACES_PATH) else endpoint + TRACES_PATH


class RecordTracer:
    """Turns finished CallRecords (dicts) into spans and hands them to an exporter, batched in
    the SDK's own thread (batch=False: exported at once, for tests)."""

    def __init__(self, exporter, service_name: str = "callfleet", *, batch: bool = True) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        self.resource = Resource.create({"service.name": service_name})
        self.processor = (BatchSpanProcessor(exporter) if batch
                          else SimpleSpanProcessor(exporter))
        self.calls = 0

    def export(self, record: dict[str, Any]) -> None:
        """Queue the call's spans. A record without trace ids (its host was lost before it
        returned one) gets new ones, written into it."""
        if not record.get("trace_id") or not record.get("span_id"):
            context = TraceContext.new()
            record["trace_id"], record["span_id"] = context.trace_id, context.span_id
        for span in call_spans(record, self.resource):
            self.processor.on_end(span)
        self.calls += 1

    def shutdown(self) -> None:
        """Export what is queued (bounded by the exporter's timeout) and stop."""
        self.processor.shutdown()


def record_tracer(config: TracingConfig | None,
                  env: Mapping[str, str] = os.environ) -> RecordTracer | None:
    """A tracer exporting to the configured collector, or None when tracing is off (then
    nothing of OpenTelemetry is imported)."""
    settings = tracing_settings(config, env)
    if settings is None:
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ModuleNotFoundError as e:
        raise ConfigError("tracing is configured but OpenTelemetry is not installed: "
                          "pip install 'callfleet[tracing]'") from e
    return RecordTracer(OTLPSpanExporter(endpoint=settings.endpoint), settings.service_name)


def call_spans(record: dict[str, Any], resource=None) -> list:
    """The call span, then its response and stage spans, as finished SDK spans."""
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

    trace_id = int(record["trace_id"], 16)
    scope = InstrumentationScope(SCOPE)
    duration_ns = int(round(float(record.get("duration_s") or 0.0) * 1e9))
    started_at = float(record.get("started_at") or 0.0)
    # A call that never started (its host was lost) ends now.
    start_ns = int(round(started_at * 1e9)) if started_at else time.time_ns() - duration_ns
    call = SpanContext(trace_id, int(record["span_id"], 16), is_remote=False,
                       trace_flags=TraceFlags(TraceFlags.SAMPLED))

    def at(t_ms: float) -> int:
        return start_ns + int(round(float(t_ms) * 1e6))

    def child(name: str, start: int, end: int, attributes: dict[str, Any]) -> ReadableSpan:
        context = SpanContext(trace_id, _span_id(), is_remote=False,
                              trace_flags=TraceFlags(TraceFlags.SAMPLED))
        return ReadableSpan(name, context, parent=call, resource=resource,
                            attributes=_clean(attributes), instrumentation_scope=scope,
                            kind=SpanKind.INTERNAL, start_time=start, end_time=max(start, end))

    failed = record.get("status") != "completed"
    reason = record.get("failure_reason")
    status = (Status(StatusCode.ERROR, reason or "failed") if failed
              else Status(StatusCode.OK))
    spans = [ReadableSpan("callfleet.call", call, parent=None, resource=resource,
                          attributes=_clean(call_attributes(record)),
                          instrumentation_scope=scope, kind=SpanKind.CLIENT, status=status,
                          start_time=start_ns, end_time=start_ns + duration_ns)]
    events = record.get("events") or []
    responses = [f for f in timeline_findings(events) if f.kind == "response"]
    for turn, found in enumerate(responses, 1):
        spans.append(child("callfleet.response", at(found.t_ms), at(found.t_ms + found.ms),
                           {"callfleet.turn": turn, "callfleet.response_latency_ms": found.ms}))
    for stage in record.get("stages") or []:
        spans.append(child(f"callfleet.{stage['stage']}", at(stage["start_ms"]),
                           at(stage["end_ms"]), {"callfleet.stage": stage["stage"]}))
    return spans


def call_attributes(record: dict[str, Any]) -> dict[str, Any]:
    """The call span's attributes: what a QA engineer filters traces by."""
    transport = record.get("transport") or {}
    metrics = record.get("metrics") or {}
    return {
        "callfleet.call_id": record.get("call_id"),
        "callfleet.persona": record.get("persona"),
        "callfleet.scenario": record.get("scenario"),
        "callfleet.transport": transport.get("kind"),
        "callfleet.agent_call_id": transport.get("agent_call_id"),
        "callfleet.status": record.get("status"),
        "callfleet.failure_reason": record.get("failure_reason"),
        "callfleet.failure_detail": (record.get("failure_detail") or "")[:300] or None,
        "callfleet.seed": record.get("seed"),
        "callfleet.phase": record.get("phase"),
        "callfleet.concurrency_at_start": record.get("concurrency_at_start"),
        "callfleet.responses": len(metrics.get("response_latency_ms") or []),
    }


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    """Attributes with a value (OpenTelemetry has no null)."""
    return {k: v for k, v in attributes.items() if v is not None}


def _span_id() -> int:
    return int(secrets.token_hex(8), 16) or 1
