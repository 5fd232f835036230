"""The transport seam: everything a call needs from the wire, and nothing of the conversation.

A CallTransport connects to the target, delivers the agent's audio as 20 ms frames of 16 kHz
mono int16 stamped on the caller's clock (when that audio was heard), sends the caller's
audio by pulling paced frames from the one OutgoingAudioTrack (callers.media: the 20 ms
deadline pacing, the recording of what was sent and its lateness live there, once), reports
the agent's own messages and the end of the call through TransportEvents, gives its network
figures, and closes within a bounded time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from callers.media import Clock, OutgoingAudioTrack


@dataclass
class TransportEvents:
    """What a transport tells the call, as it happens.

    message(label, message): a message from the agent outside the audio (a WebRTC data
    channel's, a WebSocket text event the protocol does not define), read by
    callers.agent_messages (its state, a hang-up message).
    end(kind, **detail): the call is over from the agent's or the network's side (a
    timeline event kind: "hangup" by the agent, "connection_closed", "agent_track_ended").
    """

    message: Callable[[str, str | bytes], None]
    end: Callable[..., None]


class CallTransport(ABC):
    """One call's connection to the agent. connect() raises CallFailed with a named reason."""

    kind: str = ""
    # No agent audio for SessionLimits.media_timeout_s ends the call as media_timeout: only
    # for transports whose agent side sends audio continuously (WebRTC sends silence; a
    # WebSocket bot sends only speech, and its closed socket says when it is gone).
    continuous_media: bool = False

    def __init__(self, target, clock: Clock, outgoing: OutgoingAudioTrack,
                 events: TransportEvents) -> None:
        self.target = target
        self.clock = clock
        self.outgoing = outgoing
        self.events = events
        self.agent_call_id: str | None = None  # the agent's (or our) id for the call
        # The call's W3C traceparent, sent to the agent when set (CallSession sets it).
        self.traceparent: str | None = None

    @abstractmethod
    async def connect(self, timeout_s: float) -> None:
        """Connect and start sending the outgoing frames; CallFailed if it cannot."""

    @abstractmethod
    def incoming(self) -> AsyncIterator[tuple[float, np.ndarray]]:
        """The agent's audio, (t_ms, 20 ms at 16 kHz), until its media ends."""

    def media_end(self) -> tuple[str, dict[str, Any]]:
        """The timeline event (kind, detail) for the agent's media having ended."""
        return "agent_track_ended", {}

    def closed_before_audio(self) -> bool:
        """The agent closed the connection before any of its audio arrived."""
        return False

    @abstractmethod
    async def close(self) -> None:
        """Release everything, within a bounded time; never raises."""

    async def network_stats(self) -> dict[str, Any]:
        """Per-call network figures for record.network (jitter, loss, RTT, receive path)."""
        return {}

    def describe(self) -> dict[str, Any]:
        """What record.transport says about this connection."""
        return {"kind": self.kind, "agent_call_id": self.agent_call_id}
