"""SIP over UDP with G.711 RTP: message (parsing, building, digest auth), sdp (offer/answer),
dialog (the outgoing call), rtp (packets, A-law, receive statistics, the UDP endpoint) and
transport (SipTransport, the CallTransport)."""

from callers.transports.sip.transport import SipTransport

__all__ = ["SipTransport"]
