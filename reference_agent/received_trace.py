"""The W3C traceparent a caller sends with each call (callers/trace_context.py), as the agent
receives it: the HTTP header on /offer and /whip, the WebSocket handshake header on /pcm and
/twilio (on /twilio the start message's customParameters.traceparent first), the SIP INVITE's
traceparent header.

Only the shape of version 00 is taken (00-<32 hex>-<16 hex>-<2 hex>, lowercase, ids not all
zero: https://www.w3.org/TR/trace-context/#traceparent-header); anything else, or more than one
value, is recorded as absent and never echoed: it is whatever a peer chose to send.

Each call's is logged at INFO and, with --turn-log, written as the call's first entry:
  {"kind": "call_start", "call_id", "transport", "traceparent"}  (traceparent null if absent)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from reference_agent.turn_log import TurnLog

log = logging.getLogger(__name__)

HEADER = "traceparent"
_SHAPE = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")


def valid_traceparent(value: object) -> str | None:
    """value if it is a well-formed version-00 traceparent, else None."""
    if not isinstance(value, str) or len(value) != 55:
        return None
    match = _SHAPE.fullmatch(value)
    if match is None or not int(match.group(1), 16) or not int(match.group(2), 16):
        return None
    return value


def parameter_values(parameters: object) -> list[object]:
    """The traceparent values among Twilio customParameters (any case of the name)."""
    if not isinstance(parameters, Mapping):
        return []
    return [v for k, v in parameters.items() if isinstance(k, str) and k.lower() == HEADER]


def record_call_start(turn_log: TurnLog | None, call_id: str | None, transport: str,
                      *sources: Iterable[object]) -> str | None:
    """Log (INFO) and turn-log the traceparent one call received; returns it (None: absent or
    malformed). sources: the values for it, in order of preference (e.g. a Twilio start
    message's parameters, then the handshake's headers); the first that has any decides, and
    it must hold exactly one well-formed value."""
    values: list[object] = []
    for source in sources:
        values = list(source)
        if values:
            break
    traceparent = valid_traceparent(values[0]) if len(values) == 1 else None
    if traceparent is not None:
        log.info("call %s (%s): traceparent %s", call_id, transport, traceparent)
    elif values:
        log.info("call %s (%s): malformed traceparent ignored (%d value(s))", call_id,
                 transport, len(values))
    else:
        log.info("call %s (%s): no traceparent", call_id, transport)
    if turn_log is not None:
        entry: dict[str, Any] = {"kind": "call_start", "call_id": call_id,
                                 "transport": transport, "traceparent": traceparent}
        turn_log.write(entry)
    return traceparent
