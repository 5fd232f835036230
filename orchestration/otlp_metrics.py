"""The run's live metrics (orchestration/live_metrics.py) pushed to an OpenTelemetry collector
over OTLP/HTTP (protobuf, POST .../v1/metrics): every 10 s while the run goes and once more as
it ends. Off unless a collector is configured, the same way as traces (orchestration/tracing.py):

  tracing: {otlp_endpoint: URL}           in the run config (its base URL; /v1/metrics is added,
                                          and a full .../v1/traces URL becomes .../v1/metrics)
  OTEL_EXPORTER_OTLP_METRICS_ENDPOINT     else: the full metrics URL (the OTLP spec)
  OTEL_EXPORTER_OTLP_ENDPOINT             else: a base URL
  OTEL_SDK_DISABLED=true or OTEL_METRICS_EXPORTER=none turns it off.

The exporter reads OTEL_EXPORTER_OTLP_(METRICS_)HEADERS itself (credentials go there, never in
the config); nothing here reads, logs or exports them. OTEL_METRIC_EXPORT_INTERVAL (ms)
overrides the 10 s. The OpenTelemetry SDK is imported only when this is on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from callers.errors import ConfigError
from orchestration.tracing import otlp_url_from_env

if TYPE_CHECKING:
    from orchestration.config import TracingConfig

log = logging.getLogger(__name__)

METRICS_PATH = "/v1/metrics"
TRACES_PATH = "/v1/traces"
SCOPE = "callfleet"
EXPORT_INTERVAL_S = 10.0


@dataclass(frozen=True)
class OtlpMetricsSettings:
    endpoint: str  # the collector's full metrics URL
    service_name: str = "callfleet"
    interval_s: float = EXPORT_INTERVAL_S


def otlp_metrics_settings(config: TracingConfig | None,
                          env: Mapping[str, str] = os.environ) -> OtlpMetricsSettings | None:
    """Where to export metrics, or None: off. ConfigError for a variable that is not a URL."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if env.get("OTEL_METRICS_EXPORTER", "").strip().lower() == "none":
        return None
    interval_s = EXPORT_INTERVAL_S
    raw = env.get("OTEL_METRIC_EXPORT_INTERVAL", "").strip()
    if raw:
        try:
            interval_s = float(raw) / 1000
        except ValueError:
            interval_s = -1.0
        if not 0 < interval_s <= 86_400:
            raise ConfigError("environment variable OTEL_METRIC_EXPORT_INTERVAL: expected "
                              "milliseconds (a number above 0)")
    if config is not None:
        return OtlpMetricsSettings(metrics_url(config.otlp_endpoint), config.service_name,
                                   interval_s)
    service = env.get("OTEL_SERVICE_NAME") or "callfleet"
    url = otlp_url_from_env(env, "METRICS", metrics_url)
    return OtlpMetricsSettings(url, service, interval_s) if url else None


def metrics_url(endpoint: str) -> str:
    """A collector's base URL (or its full traces URL) -> its OTLP/HTTP metrics URL."""
    endpoint = endpoint.rstrip("/")
    if endpoint.endswith(METRICS_PATH):
        return endpoint
    return endpoint.removesuffix(TRACES_PATH) + METRICS_PATH


def shown_url(url: str) -> str:
    """url without userinfo, query or fragment: what may be printed of an endpoint."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class OtlpMetricsExport:
    """A MeterProvider whose PeriodicExportingMetricReader pushes to the OTLP/HTTP exporter;
    `meter` makes the instruments. shutdown() exports once more, then stops."""

    def __init__(self, settings: OtlpMetricsSettings) -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
            from opentelemetry.sdk.resources import Resource
        except ModuleNotFoundError as e:
            raise ConfigError("OTLP metrics are configured but OpenTelemetry is not "
                              "installed: pip install 'callfleet[tracing]'") from e
        self.settings = settings
        self.exporter = OTLPMetricExporter(endpoint=settings.endpoint)
        self.reader = PeriodicExportingMetricReader(
            self.exporter, export_interval_millis=settings.interval_s * 1000)
        # Its own provider, never the global one: runs in one process (tests) never share it.
        self.provider = MeterProvider(
            metric_readers=[self.reader],
            resource=Resource.create({"service.name": settings.service_name}))
        self.meter = self.provider.get_meter(SCOPE)
        self._closed = False

    def shutdown(self, timeout_s: float = 15.0) -> None:
        """The last export (bounded), then stop the reader's thread; once."""
        if self._closed:
            return
        self._closed = True
        try:
            self.provider.shutdown(timeout_millis=timeout_s * 1000)
        except Exception as e:  # a metric export is a nice-to-have: never fail the run on it
            log.warning("OTLP metrics: the last export failed (%s)", type(e).__name__)
