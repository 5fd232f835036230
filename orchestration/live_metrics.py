"""Live metrics of a run: Prometheus served by the driver while it goes, and/or pushed over
OTLP/HTTP to an OpenTelemetry collector (orchestration/otlp_metrics.py); off unless asked.

The Fleet tells `LiveMetrics` when it places a call, when a call's host returns, and each
graded record; a scrape reads the run's own CollectorRegistry (never the process-global one,
so tests and repeated runs in one process never collide). Each metric is defined once, here:
with OTLP on, every update goes to its Prometheus metric and to an OpenTelemetry instrument of
the same name, labels and buckets (a counter, an up-down counter for a gauge moved by inc/dec,
a gauge, an observable gauge for one read by a function, a histogram); with it off, nothing of
OpenTelemetry is created or imported.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from callers.errors import ConfigError
from evaluation.summary import SATURATED_PACING_MS

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from orchestration.otlp_metrics import OtlpMetricsExport, OtlpMetricsSettings
    from orchestration.scheduler import SchedulerStats

# Seconds. Response latency: a good agent answers in 0.3-1 s, dead air starts at 3 s.
LATENCY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0,
                   5.0, 7.5, 10.0)
# Barge-in stop: past 2 s the agent did not stop (counted apart, never observed here).
BARGE_IN_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0)
# Turn-taking counts of a graded record's `metrics`, as `callfleet_turn_taking_events_total`.
TURN_TAKING = ("talk_over", "false_yield", "premature_cutoff", "dead_air",
               "barge_in_not_stopped", "backchannels")


class _Metric:
    """One metric (or one labelled child of it): a Prometheus metric, and the OpenTelemetry
    instrument of the same name when OTLP is on (None: off). Its methods update both."""

    __slots__ = ("name", "prom", "otel", "labelnames", "attributes")

    def __init__(self, name: str, prom, otel=None, labelnames: tuple[str, ...] = (),
                 attributes: dict[str, str] | None = None) -> None:
        self.name = name
        self.prom = prom
        self.otel = otel
        self.labelnames = labelnames
        self.attributes = attributes or {}

    def labels(self, *values: object) -> _Metric:
        return _Metric(self.name, self.prom.labels(*values), self.otel, (),
                       dict(zip(self.labelnames, map(str, values), strict=True)))

    def inc(self, amount: float = 1) -> None:
        self.prom.inc(amount)
        if self.otel is not None:
            self.otel.add(amount, self.attributes)

    def dec(self, amount: float = 1) -> None:
        self.prom.dec(amount)
        if self.otel is not None:
            self.otel.add(-amount, self.attributes)

    def set(self, value: float) -> None:
        self.prom.set(value)
        if self.otel is not None:
            self.otel.set(value, self.attributes)

    def observe(self, value: float) -> None:
        self.prom.observe(value)
        if self.otel is not None:
            self.otel.record(value, self.attributes)


class LiveMetrics:
    """The run's metrics, one registry; `serve` exposes them over HTTP until `close`.
    otlp: also push them to that OTLP/HTTP collector (every interval, and once at `close`)."""

    def __init__(self, otlp: OtlpMetricsSettings | None = None) -> None:
        self.registry = CollectorRegistry()
        self.otlp: OtlpMetricsExport | None = None
        if otlp is not None:
            from orchestration.otlp_metrics import OtlpMetricsExport

            self.otlp = OtlpMetricsExport(otlp)
        self._functions: dict[str, Callable[[], float]] = {}  # the gauges read at collection
        self.started = self._counter("callfleet_calls_started", "Calls placed on a caller host.")
        self.finished = self._counter(
            "callfleet_calls_finished",
            "Calls ended, by status and failure reason (none: completed).", ["status", "reason"])
        self.active = self._gauge("callfleet_active_calls", "Calls in progress, per caller host.",
                                  ["host"], moved=True)
        self.target = self._gauge("callfleet_target_concurrency",
                                  "Concurrency the load profile asks for now.", read=True)
        self.planned = self._gauge("callfleet_calls_planned", "Calls the run plans to place.",
                                   read=True)
        self.latency = self._histogram(
            "callfleet_response_latency_seconds",
            "Agent response latency per caller turn, as the caller heard it.", LATENCY_BUCKETS)
        self.barge_in = self._histogram(
            "callfleet_barge_in_stop_seconds",
            "How long the agent kept talking after the caller barged in.", BARGE_IN_BUCKETS)
        self.turn_taking = self._counter("callfleet_turn_taking_events",
                                         "Turn-taking findings of graded calls, by kind.",
                                         ["kind"])
        self.understanding = self._counter(
            "callfleet_understanding",
            "Graded facts, by fact and whether the agent got it right.", ["fact", "correct"])
        self.not_observed = self._counter("callfleet_understanding_not_observed",
                                          "Facts the caller gave that no source showed, by fact.",
                                          ["fact"])
        self.task = self._counter("callfleet_task", "Graded calls by task success.", ["success"])
        self.pacing = self._gauge("callfleet_generator_pacing_late_p99_seconds",
                                  "p99 lateness of outgoing 20 ms frames in the host's last call.",
                                  ["host"])
        self.loop_lag = self._gauge("callfleet_generator_loop_lag_p99_seconds",
                                    "p99 event-loop lag of the host during its last call.",
                                    ["host"])
        self.late_calls = self._counter(
            "callfleet_generator_saturated_calls",
            f"Calls whose pacing p99 exceeded {SATURATED_PACING_MS:g} ms: "
            "their latency figures are not to be trusted.", ["host"])
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    # --- the metrics, each defined once for both Prometheus and OTLP ------------------------

    @property
    def _meter(self):
        return self.otlp.meter if self.otlp is not None else None

    @staticmethod
    def _unit(name: str) -> str:
        return "s" if name.endswith("_seconds") else ""

    def _counter(self, name: str, doc: str, labels: list[str] | None = None) -> _Metric:
        prom = Counter(name, doc, labels or (), registry=self.registry)
        meter = self._meter
        otel = meter.create_counter(name, self._unit(name), doc) if meter else None
        return _Metric(name, prom, otel, tuple(labels or ()))

    def _gauge(self, name: str, doc: str, labels: list[str] | None = None, *,
               moved: bool = False, read: bool = False) -> _Metric:
        """moved: changed by inc/dec (OTLP: an up-down counter); read: by a function given to
        `track` (OTLP: an observable gauge calling it); else set (OTLP: a gauge)."""
        prom = Gauge(name, doc, labels or (), registry=self.registry)
        meter, otel = self._meter, None
        if meter is not None:
            unit = self._unit(name)
            if moved:
                otel = meter.create_up_down_counter(name, unit, doc)
            elif read:
                meter.create_observable_gauge(name, [self._reader(name)], unit, doc)
            else:
                otel = meter.create_gauge(name, unit, doc)
        return _Metric(name, prom, otel, tuple(labels or ()))

    def _reader(self, name: str):
        def read(options):
            from opentelemetry.metrics import Observation

            function = self._functions.get(name)
            return [Observation(float(function()))] if function is not None else []
        return read

    def _histogram(self, name: str, doc: str, buckets: tuple[float, ...]) -> _Metric:
        prom = Histogram(name, doc, buckets=buckets, registry=self.registry)
        meter = self._meter
        otel = (meter.create_histogram(name, self._unit(name), doc,
                                       explicit_bucket_boundaries_advisory=list(buckets))
                if meter else None)
        return _Metric(name, prom, otel)

    # --- serving -------------------------------------------------------------------------

    def serve(self, port: int, host: str = "127.0.0.1", where: str = "--metrics-port") -> int:
        """Listen on host:port (0: any free port) in a daemon thread; returns the port.

        Called before any call is placed, so a busy port is a usage error (naming `where` the
        port was asked for), not a lost run."""
        try:
            self._server, self._thread = start_http_server(port, addr=host,
                                                           registry=self.registry)
        except OSError as e:  # in use, not allowed, or no such address
            raise ConfigError(f"{where} {port}: cannot listen on {host}:{port} "
                              f"({e.strerror or e})") from None
        return int(self._server.server_address[1])

    def close(self) -> None:
        """Stop serving, and push to the OTLP collector a last time (the counters stay
        readable in `registry`)."""
        if self.otlp is not None:
            self.otlp.shutdown()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LiveMetrics:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- what the Fleet reports ----------------------------------------------------------

    def track(self, stats: SchedulerStats) -> None:
        """Read the scheduler's plan and target concurrency at each scrape."""
        for metric, function in ((self.planned, lambda: stats.planned),
                                 (self.target, lambda: stats.target)):
            metric.prom.set_function(function)
            self._functions[metric.name] = function

    def call_started(self, host: str) -> None:
        self.started.inc()
        self.active.labels(host).inc()

    def call_ended(self, host: str) -> None:
        """The host returned (a record, or the driver gave up on it)."""
        self.active.labels(host).dec()

    def observe(self, record: dict[str, Any], host: str | None = None) -> None:
        """One finished, graded record: its outcome, per-turn figures and generator health."""
        status = str(record.get("status") or "failed")
        reason = record.get("failure_reason") or ("none" if status == "completed" else "unknown")
        self.finished.labels(status, str(reason)).inc()
        metrics = record.get("metrics") or {}
        for ms in metrics.get("response_latency_ms") or ():
            self.latency.observe(float(ms) / 1000)
        for ms in metrics.get("barge_in_stop_ms") or ():
            self.barge_in.observe(float(ms) / 1000)
        for kind in TURN_TAKING:
            if metrics.get(kind):
                self.turn_taking.labels(kind).inc(int(metrics[kind]))
        understanding = record.get("understanding") or {}
        for fact, correct in (understanding.get("correct") or {}).items():
            self.understanding.labels(fact, "true" if correct else "false").inc()
        for fact in understanding.get("not_observed") or ():
            self.not_observed.labels(fact).inc()
        task = record.get("task") or {}
        if "success" in task:
            self.task.labels("true" if task["success"] else "false").inc()
        self._generator(record.get("generator") or {}, host)

    def _generator(self, generator: dict[str, Any], host: str | None) -> None:
        if host is None:  # not placed by this driver's pool: the host's process id names it
            pid = generator.get("host_pid")
            host = f"pid-{pid}" if pid is not None else None
        if host is None:
            return
        pacing = generator.get("pacing_late_ms_p99")
        if pacing is not None:
            self.pacing.labels(host).set(float(pacing) / 1000)
            if float(pacing) > SATURATED_PACING_MS:
                self.late_calls.labels(host).inc()
        lag = generator.get("loop_lag_ms_p99")
        if lag is not None:
            self.loop_lag.labels(host).set(float(lag) / 1000)
