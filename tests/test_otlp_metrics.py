"""Live metrics pushed over OTLP/HTTP (orchestration/otlp_metrics.py): a collector on 127.0.0.1
(http.server in a thread) receives POST /v1/metrics; its protobuf bodies hold the same names,
labels and values as the Prometheus endpoint, and nothing of OpenTelemetry exists when no
collector is configured."""

from __future__ import annotations

import contextlib
import http.server
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from callers.errors import ConfigError
from orchestration.config import RunConfig
from orchestration.live_metrics import LATENCY_BUCKETS, LiveMetrics
from orchestration.otlp_metrics import (
    OtlpMetricsSettings,
    metrics_url,
    otlp_metrics_settings,
    shown_url,
)
from orchestration.run import _live_metrics
from tests.test_live_metrics import _config, graded, scrape, value

SECRET = "otlp-s3cret-token-5e1f"


class Collector:
    """POST /v1/metrics bodies (and their headers), decoded."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], ExportMetricsServiceRequest]] = []
        self.arrived = threading.Event()
        collector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = ExportMetricsServiceRequest()
                request.ParseFromString(body)
                headers = {k.lower(): v for k, v in self.headers.items()}
                collector.requests.append((self.path, headers, request))
                collector.arrived.set()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def latest(self) -> dict[str, list]:
        """Each metric's data points in the last request that held it (cumulative)."""
        found: dict[str, list] = {}
        for _, _, request in self.requests:
            for resource in request.resource_metrics:
                for scope in resource.scope_metrics:
                    for metric in scope.metrics:
                        kind = metric.WhichOneof("data")
                        data = getattr(metric, kind)
                        found[metric.name] = [kind, metric.unit, list(data.data_points), data]
        return found

    def service_names(self) -> set[str]:
        return {a.value.string_value for _, _, r in self.requests for rm in r.resource_metrics
                for a in rm.resource.attributes if a.key == "service.name"}


@pytest.fixture
def collector():
    c = Collector()
    yield c
    c.close()


def attrs(point) -> dict[str, str]:
    return {a.key: a.value.string_value for a in point.attributes}


def point_value(points, **labels):
    """A sum or gauge data point's value, by its attributes (None: no such point)."""
    for p in points:
        if attrs(p) == labels:
            return p.as_double if p.WhichOneof("value") == "as_double" else p.as_int
    return None


def record_a_few_calls(metrics: LiveMetrics) -> None:
    metrics.track(type("Stats", (), {"planned": 7, "target": 3})())
    for _ in range(3):
        metrics.call_started("host-0")
    metrics.call_started("host-1")
    metrics.call_ended("host-0")
    metrics.observe(graded("a", latencies=[250.0, 900.0], stops=[320.0],
                           correct={"amount": False, "last_name": True}),
                    "host-0")
    metrics.observe(graded("b", latencies=[3500.0], generator={"pacing_late_ms_p99": 25.0,
                                                                "loop_lag_ms_p99": 4.0}),
                    "host-1")
    metrics.observe({"call_id": "f1", "status": "failed", "failure_reason": "ice_timeout"})
    metrics.observe({"call_id": "f2", "status": "failed", "failure_reason": "ice_timeout"})


def test_recorded_calls_reach_the_collector_with_prometheus_names_and_values(collector):
    settings = OtlpMetricsSettings(metrics_url(collector.url), "callfleet-test", 3600)
    with LiveMetrics(otlp=settings) as metrics:
        port = metrics.serve(0)
        record_a_few_calls(metrics)
        prom = scrape(port)
    # close() pushed once at the end (the interval is an hour: no periodic export before)
    assert len(collector.requests) == 1
    path, headers, _ = collector.requests[0]
    assert path == "/v1/metrics" and headers["content-type"] == "application/x-protobuf"
    assert collector.service_names() == {"callfleet-test"}
    got = collector.latest()

    kind, _, points, data = got["callfleet_calls_started"]
    assert kind == "sum" and data.is_monotonic and point_value(points) == 4 == value(
        prom, "callfleet_calls_started_total")
    _, _, points, _ = got["callfleet_calls_finished"]
    assert point_value(points, status="completed", reason="none") == 2
    assert point_value(points, status="failed", reason="ice_timeout") == 2
    kind, _, points, data = got["callfleet_active_calls"]  # an up-down counter: inc and dec
    assert kind == "sum" and not data.is_monotonic
    assert point_value(points, host="host-0") == 2 and point_value(points, host="host-1") == 1
    kind, _, points, _ = got["callfleet_calls_planned"]
    assert kind == "gauge" and point_value(points) == 7
    assert point_value(got["callfleet_target_concurrency"][2]) == 3
    _, _, points, _ = got["callfleet_understanding"]
    assert point_value(points, fact="amount", correct="false") == 1
    assert point_value(points, fact="last_name", correct="true") == 1
    kind, unit, points, _ = got["callfleet_generator_pacing_late_p99_seconds"]
    assert kind == "gauge" and unit == "s"
    assert point_value(points, host="host-1") == pytest.approx(0.025)
    assert point_value(got["callfleet_generator_saturated_calls"][2], host="host-1") == 1

    kind, unit, (hist,), _ = got["callfleet_response_latency_seconds"]
    assert kind == "histogram" and unit == "s"
    assert list(hist.explicit_bounds) == list(LATENCY_BUCKETS)
    assert hist.count == 3 == value(prom, "callfleet_response_latency_seconds_count")
    assert hist.sum == pytest.approx(4.65)
    # the same buckets as the scrape's (cumulative there, per bucket here)
    running = 0
    for bound, count in zip([*LATENCY_BUCKETS, "+Inf"], hist.bucket_counts, strict=True):
        running += count
        le = bound if bound == "+Inf" else str(float(bound))
        assert value(prom, "callfleet_response_latency_seconds_bucket", le=le) == running
    (stop,) = got["callfleet_barge_in_stop_seconds"][2]
    assert stop.count == 1 and stop.sum == pytest.approx(0.32)


def test_exported_every_interval_while_the_run_goes(collector):
    settings = OtlpMetricsSettings(metrics_url(collector.url), interval_s=0.2)
    with LiveMetrics(otlp=settings) as metrics:
        metrics.call_started("host-0")
        assert collector.arrived.wait(5), "no periodic export"
        deadline = time.monotonic() + 5
        while len(collector.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        periodic = len(collector.requests)
        assert periodic >= 2
        assert point_value(collector.latest()["callfleet_calls_started"][2]) == 1
        metrics.call_started("host-0")
    assert len(collector.requests) > periodic  # and once more at the end
    assert point_value(collector.latest()["callfleet_calls_started"][2]) == 2


def test_headers_reach_the_collector_and_are_never_shown(collector, monkeypatch, caplog,
                                                         capsys):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization=Bearer {SECRET}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    config = RunConfig.model_validate(_config())
    with contextlib.ExitStack() as stack:
        live = _live_metrics(stack, config, None, "127.0.0.1")
        assert live is not None and live.otlp is not None and live._server is None
        live.call_started("host-0")
    ((_, headers, _),) = collector.requests
    assert headers["authorization"] == f"Bearer {SECRET}"
    out = capsys.readouterr()
    assert f"OTLP to {collector.url}/v1/metrics" in out.out
    assert SECRET not in out.out + out.err + caplog.text


def test_settings_follow_the_run_config_then_the_standard_variables():
    from orchestration.config import TracingConfig

    config = TracingConfig(otlp_endpoint="http://collector:4318/", service_name="qa")
    assert otlp_metrics_settings(config, {}) == OtlpMetricsSettings(
        "http://collector:4318/v1/metrics", "qa", 10.0)
    traces = TracingConfig(otlp_endpoint="http://collector:4318/v1/traces")
    assert otlp_metrics_settings(traces, {}).endpoint == "http://collector:4318/v1/metrics"
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://otel.example:4318",
           "OTEL_SERVICE_NAME": "fleet", "OTEL_METRIC_EXPORT_INTERVAL": "2500"}
    assert otlp_metrics_settings(None, env) == OtlpMetricsSettings(
        "https://otel.example:4318/v1/metrics", "fleet", 2.5)
    full = {**env, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://m:9/custom/path"}
    assert otlp_metrics_settings(None, full).endpoint == "http://m:9/custom/path"
    # traces alone turn traces on, not metrics
    assert otlp_metrics_settings(None, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:1"}) \
        is None
    assert otlp_metrics_settings(None, {}) is None
    assert otlp_metrics_settings(config, {"OTEL_SDK_DISABLED": "true"}) is None
    assert otlp_metrics_settings(config, {"OTEL_METRICS_EXPORTER": "none"}) is None
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_ENDPOINT"):
        otlp_metrics_settings(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"})
    with pytest.raises(ConfigError, match="OTEL_METRIC_EXPORT_INTERVAL"):
        otlp_metrics_settings(config, {"OTEL_METRIC_EXPORT_INTERVAL": "soon"})
    assert shown_url("https://user:pw@h:4318/v1/metrics?k=v") == "https://h:4318/v1/metrics"


def test_nothing_of_opentelemetry_without_a_collector(monkeypatch):
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    with LiveMetrics() as metrics:
        record_a_few_calls(metrics)
        assert metrics.otlp is None
        assert all(m.otel is None for m in (metrics.started, metrics.finished, metrics.active,
                                            metrics.latency, metrics.pacing))
    config = RunConfig.model_validate(_config())
    with contextlib.ExitStack() as stack:
        assert _live_metrics(stack, config, None, "127.0.0.1") is None
    # and the SDK is not even imported
    code = ("import sys\n"
            "from orchestration.live_metrics import LiveMetrics\n"
            "with LiveMetrics() as m:\n"
            "    m.call_started('h'); m.observe({'status': 'completed',"
            " 'metrics': {'response_latency_ms': [300]}})\n"
            "print(sorted(k for k in sys.modules if k.startswith('opentelemetry')))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], env=env, check=True)
    assert out.stdout.strip() == "[]"
