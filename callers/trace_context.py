"""A call's W3C trace context (https://www.w3.org/TR/trace-context/): the ids the agent is
told with the call, and the record keeps, so that its traces and ours join.

The ids are always made (16 + 8 random bytes: nothing to configure, nothing imported) and sent
unless target.traceparent is off, so an agent's logs can be matched to a record even when no
collector is configured; spans are exported only when one is (orchestration/tracing.py builds
them from the finished record, off the call's hot path). No OpenTelemetry import here.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

HEADER = "traceparent"  # the HTTP / WebSocket handshake / SIP header, and the Twilio parameter


@dataclass(frozen=True)
class TraceContext:
    """trace_id (32 hex digits) and span_id (16): the call span's, the agent's parent."""

    trace_id: str
    span_id: str

    @classmethod
    def new(cls) -> TraceContext:
        # All-zero ids are invalid (W3C): at 2^-128 and 2^-64, drawn again rather than sent.
        while True:
            trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
            if int(trace_id, 16) and int(span_id, 16):
                return cls(trace_id, span_id)

    @property
    def traceparent(self) -> str:
        """version 00, sampled (flags 01): the agent should record its side of the call."""
        return f"00-{self.trace_id}-{self.span_id}-01"


def with_traceparent(pairs: dict[str, str], traceparent: str | None) -> dict[str, str]:
    """pairs (headers, parameters) with ours as the only traceparent, whatever its case: the
    record's trace id must be the one the agent got."""
    if traceparent is None:
        return pairs
    return {**{k: v for k, v in pairs.items() if k.lower() != HEADER}, HEADER: traceparent}
