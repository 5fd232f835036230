"""How a caller reaches an agent: one CallTransport interface (base), and its implementations:
WebRTC (webrtc), Twilio Media Streams (twilio_ws), raw PCM over a WebSocket (pcm_ws) and SIP
with G.711 RTP (sip)."""

from __future__ import annotations

from callers.transports.base import CallTransport, TransportEvents

TRANSPORTS = ("webrtc", "twilio-ws", "pcm-ws", "sip")


def make_transport(target, clock, outgoing, events: TransportEvents, *,
                   codec: str | None = None) -> CallTransport:
    """The transport target.transport names (ConfigError for an unknown one)."""
    from callers.errors import ConfigError

    if target.transport == "webrtc":
        from callers.transports.webrtc import WebRtcTransport

        return WebRtcTransport(target, clock, outgoing, events, codec=codec or target.codec)
    if target.transport == "pcm-ws":
        from callers.transports.pcm_ws import PcmWsTransport

        return PcmWsTransport(target, clock, outgoing, events)
    if target.transport == "twilio-ws":
        from callers.transports.twilio_ws import TwilioWsTransport

        return TwilioWsTransport(target, clock, outgoing, events)
    if target.transport == "sip":
        from callers.transports.sip import SipTransport

        return SipTransport(target, clock, outgoing, events)
    raise ConfigError(f"target.transport: expected one of {', '.join(TRANSPORTS)}, "
                      f"got {target.transport!r}")


__all__ = ["TRANSPORTS", "CallTransport", "TransportEvents", "make_transport"]
