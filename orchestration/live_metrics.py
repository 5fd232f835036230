"""Live Prometheus metrics of a run, served by the driver while it goes (off unless asked).

The Fleet tells `LiveMetrics` when it places a call, when a call's host returns, and each
graded record; a scrape reads the run's own CollectorRegistry (never the process-global one,
so tests and repeated runs in one process never collide).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from callers.errors import ConfigError
from evaluation.summary import SATURATED_PACING_MS

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from orchestration.scheduler import SchedulerStats

# Seconds. Response latency: a good agent answers in 0.3-1 s, dead air starts at 3 s.
LATENCY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0,
                   5.0, 7.5, 10.0)
# Barge-in stop: past 2 s the agent did not stop (counted apart, never observed here).
BARGE_IN_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0)
# Turn-taking counts of a graded record's `metrics`, as `callfleet_turn_taking_events_total`.
TURN_TAKING = ("talk_over", "false_yield", "premature_cutoff", "dead_air",
               "barge_in_not_stopped", "backchannels")


class LiveMetrics:
    """The run's metrics, one registry; `serve` exposes them over HTTP until `close`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.started = Counter("callfleet_calls_started", "Calls placed on a caller host.",
                               registry=r)
        self.finished = Counter("callfleet_calls_finished",
                                "Calls ended, by status and failure reason (none: completed).",
                                ["status", "reason"], registry=r)
        self.active = Gauge("callfleet_active_calls", "Calls in progress, per caller host.",
                            ["host"], registry=r)
        self.target = Gauge("callfleet_target_concurrency",
                            "Concurrency the load profile asks for now.", registry=r)
        self.planned = Gauge("callfleet_calls_planned", "Calls the run plans to place.",
                             registry=r)
        self.latency = Histogram("callfleet_response_latency_seconds",
                                 "Agent response latency per caller turn, as the caller heard it.",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.barge_in = Histogram("callfleet_barge_in_stop_seconds",
                                  "How long the agent kept talking after the caller barged in.",
                                  buckets=BARGE_IN_BUCKETS, registry=r)
        self.turn_taking = Counter("callfleet_turn_taking_events",
                                   "Turn-taking findings of graded calls, by kind.",
                                   ["kind"], registry=r)
        self.understanding = Counter("callfleet_understanding",
                                     "Graded facts, by fact and whether the agent got it right.",
                                     ["fact", "correct"], registry=r)
        self.not_observed = Counter("callfleet_understanding_not_observed",
                                    "Facts the caller gave that no source showed, by fact.",
                                    ["fact"], registry=r)
        self.task = Counter("callfleet_task", "Graded calls by task success.", ["success"],
                            registry=r)
        self.pacing = Gauge("callfleet_generator_pacing_late_p99_seconds",
                            "p99 lateness of outgoing 20 ms frames in the host's last call.",
                            ["host"], registry=r)
        self.loop_lag = Gauge("callfleet_generator_loop_lag_p99_seconds",
                              "p99 event-loop lag of the host during its last call.",
                              ["host"], registry=r)
        self.late_calls = Counter("callfleet_generator_saturated_calls",
                                  f"Calls whose pacing p99 exceeded {SATURATED_PACING_MS:g} ms: "
                                  "their latency figures are not to be trusted.",
                                  ["host"], registry=r)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

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
        """Stop serving (the counters stay readable in `registry`)."""
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
        self.planned.set_function(lambda: stats.planned)
        self.target.set_function(lambda: stats.target)

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
