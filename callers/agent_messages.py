"""What the agent reports on its data channels: kept (bounded) and read in its own format.

Agents announce their state in their own way. `entities-json` is the reference agent's: JSON
objects with {"entities": {...}} and {"event": "hangup"}. `rtvi` is Pipecat's RTVI protocol:
{"label": "rtvi-ai", "type": ..., "data": ...} on whatever channel the client opened, with the
agent's transcript of the caller (`user-transcription`), what it says (`bot-output`,
`bot-transcription`) and its own speaking clock (`bot-started-speaking`,
`bot-stopped-speaking`), and SmallWebRTC's `peerLeft` before it closes. `auto` reads both.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

FORMATS = ("auto", "entities-json", "rtvi")
MAX_MESSAGES = 500  # per call: a chatty agent must not grow a record without bound
MAX_MESSAGE_CHARS = 2000  # longer messages are kept as a truncated string
MAX_TEXT_CHARS = 500  # transcripts taken into the timeline
MAX_DEPTH = 16  # JSON nested deeper is kept as text: it would recurse through every reader

RTVI_LABEL = "rtvi-ai"
_RTVI_SPEECH = {"bot-started-speaking": "start", "bot-stopped-speaking": "end"}
_RTVI_SAID = ("bot-output", "bot-transcription")  # sentences; bot-tts-text is word by word


@dataclass
class AgentReport:
    """What one message tells the call (every field optional)."""

    state: dict[str, Any] | None = None  # the agent's reported state, with "entities"
    hangup: bool = False
    speech: str | None = None  # "start" | "end": the agent says it started/stopped speaking
    heard: str | None = None  # a final transcript of the caller, as the agent heard it
    said: str | None = None  # text the agent says it spoke


class AgentMessages:
    """Keeps every message (bounded) and reads each one in the target's format."""

    def __init__(self, fmt: str = "auto") -> None:
        if fmt not in FORMATS:
            raise ValueError(f"agent_state.format: expected one of {FORMATS}, got {fmt!r}")
        self.format = fmt
        self.kept: list[dict[str, Any]] = []
        self.dropped = 0

    def receive(self, channel: str, message: str | bytes, t_ms: float) -> AgentReport:
        parsed = _parse(message)
        self._keep(channel, message, parsed, t_ms)
        if not isinstance(parsed, dict):
            return AgentReport()
        report = AgentReport()
        if self.format in ("auto", "rtvi"):
            if parsed.get("label") == RTVI_LABEL:
                report = _read_rtvi(parsed)
            report.hangup = _peer_left(parsed)
        if self.format in ("auto", "entities-json"):
            report.state = report.state or _entities_state(parsed)
            report.hangup = report.hangup or parsed.get("event") == "hangup"
        return report

    def _keep(self, channel: str, raw: str | bytes, parsed: Any, t_ms: float) -> None:
        if len(self.kept) >= MAX_MESSAGES:
            self.dropped += 1
            return
        entry: dict[str, Any] = {"t_ms": round(t_ms, 1), "channel": channel[:64]}
        if isinstance(raw, bytes):
            entry["bytes"] = len(raw)
        elif parsed is not None and len(raw) <= MAX_MESSAGE_CHARS:
            entry["message"] = parsed
        else:
            entry["message"] = raw[:MAX_MESSAGE_CHARS]
            entry["truncated"] = len(raw) > MAX_MESSAGE_CHARS
        self.kept.append(entry)


def client_ready() -> str:
    """The RTVI client's hello: RTVI agents may wait for it before they talk."""
    return json.dumps({"label": RTVI_LABEL, "type": "client-ready", "id": uuid.uuid4().hex[:8],
                       "data": {"version": "1.0.0", "about": {"library": "callfleet"}}})


def _parse(message: str | bytes) -> Any:
    """The message's JSON, or None (not text, too long, not JSON, nested too deep)."""
    if not isinstance(message, str) or len(message) > 64 * MAX_MESSAGE_CHARS:
        return None
    try:
        parsed = json.loads(message)
    except (ValueError, RecursionError):
        return None
    return parsed if _depth_at_most(parsed, MAX_DEPTH) else None


def _depth_at_most(value: Any, limit: int) -> bool:
    level = [value]
    for _ in range(limit + 1):
        level = [v for c in level if isinstance(c, dict | list)
                 for v in (c.values() if isinstance(c, dict) else c)]
        if not level:
            return True
    return False


def _entities_state(message: dict[str, Any]) -> dict[str, Any] | None:
    """A message that carries {"entities": {...}} (at the top or in "data") is agent state."""
    for candidate in (message, message.get("data")):
        if isinstance(candidate, dict) and isinstance(candidate.get("entities"), dict):
            return candidate
    return None


def _peer_left(message: dict[str, Any]) -> bool:
    """SmallWebRTC's goodbye before it closes: {"type": "signalling", "message": {"type":
    "peerLeft"}} (no RTVI label)."""
    inner = message.get("message")
    return (message.get("type") == "signalling" and isinstance(inner, dict)
            and inner.get("type") == "peerLeft")


def _read_rtvi(message: dict[str, Any]) -> AgentReport:
    kind = message.get("type")
    kind = kind if isinstance(kind, str) else None  # an agent's list or object names nothing
    data = message.get("data") if isinstance(message.get("data"), dict) else {}
    text = data.get("text")
    text = text.strip()[:MAX_TEXT_CHARS] if isinstance(text, str) else None
    report = AgentReport(speech=_RTVI_SPEECH.get(kind))
    if kind == "user-transcription" and data.get("final", True) and text:
        report.heard = text
    elif (kind in _RTVI_SAID and text and data.get("spoken", True) is not False
          and data.get("aggregated_by") != "word"):
        report.said = text
    return report
